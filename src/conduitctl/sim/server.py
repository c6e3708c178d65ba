"""The running simulator: asyncio listeners, clients, counters, periodic output, faults.

One event loop serves the client ports (TCP and UDP on each ``--listen`` address) and the
metrics endpoint, so a hang (``--hang-after``, SIGUSR1) can stop all of them at once while
the process stays alive. Stdlib only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import mmap
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO, cast

from . import cli_rules
from .config import Address, SimConfig, SimError
from .faults import CpuBurner, MemoryLeak, SessionMemory
from .keys import StationKey, load_or_create_key
from .metrics import http_response, render_metrics
from .ratelimit import TokenBucket, read_size
from .stats import Snapshot, stats_json, stats_line

BACKLOG = 4096
METRICS_REQUEST_LIMIT = 16 * 1024
METRICS_READ_TIMEOUT = 5.0
LEAK_TICK = 0.2
# Errors from accept() that mean "out of resources right now", not "the socket is broken".
_TRANSIENT_ACCEPT_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

Peer = tuple[str, int]
Handler = Callable[[socket.socket, Peer], Awaitable[None]]


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (thousands of clients need fds).

    Returns the soft limit in force afterwards; failure to raise is not fatal.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def bind_tcp(addr: Address) -> socket.socket:
    """A non-blocking listening TCP socket (SO_REUSEADDR, backlog 4096). Raises SimError."""
    sock = socket.socket(addr.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr.host, addr.port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise SimError(f"cannot listen on tcp {addr}: {exc.strerror or exc}") from None
    return sock


def bind_udp(addr: Address) -> socket.socket:
    """A non-blocking UDP socket bound to ``addr``. Raises SimError."""
    sock = socket.socket(addr.family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr.host, addr.port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise SimError(f"cannot listen on udp {addr}: {exc.strerror or exc}") from None
    return sock


@dataclass(frozen=True)
class Sockets:
    """Everything bound before the loop starts, so bind errors surface as exit 1 at once."""

    tcp: tuple[socket.socket, ...]
    udp: tuple[socket.socket, ...]
    metrics: socket.socket | None

    def close(self) -> None:
        for sock in (*self.tcp, *self.udp, *([self.metrics] if self.metrics else [])):
            sock.close()


def bind_all(config: SimConfig) -> Sockets:
    """Bind every listener in ``config``; on any failure close what was bound and raise."""
    tcp: list[socket.socket] = []
    udp: list[socket.socket] = []
    metrics: socket.socket | None = None
    try:
        for addr in config.listen:
            tcp.append(bind_tcp(addr))
            udp.append(bind_udp(addr))
        if config.metrics_addr is not None:
            metrics = bind_tcp(config.metrics_addr)
    except SimError:
        Sockets(tuple(tcp), tuple(udp), metrics).close()
        raise
    return Sockets(tuple(tcp), tuple(udp), metrics)


@dataclass
class UdpSession:
    bucket: TokenBucket
    last_seen: float
    memory: mmap.mmap | None = None  # --session-mb, released when the session expires


def _peer(addr: tuple[str, int] | tuple[str, int, int, int] | object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)


class Station:
    """One simulated Conduit station. Counters are touched only from the event loop."""

    def __init__(
        self,
        config: SimConfig,
        key: StationKey,
        sockets: Sockets,
        out: TextIO | None = None,
        err: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.wall_clock = wall_clock  # the reduced-hours window is in UTC
        self.key = key
        self.sockets = sockets
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.clock = clock
        self.greeting = f"CONDUIT-SIM {config.name} {key.station_id}\n".encode()
        self.busy = f"BUSY {config.name}\n".encode()
        self.started = clock()
        self.idle_since: float | None = self.started
        self.live = False
        self.hung = False
        self.tcp_clients = 0
        self.connecting = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.refused = 0
        self.udp_dropped = 0
        self.udp_sessions: dict[object, UdpSession] = {}
        self.leak = MemoryLeak(config.leak_mb_per_s) if config.leak_mb_per_s > 0 else None
        self.session_memory = SessionMemory(config.session_mb)
        self._tasks: set[asyncio.Task[None]] = set()
        self._accept_tasks: list[asyncio.Task[None]] = []
        self._transports: set[asyncio.WriteTransport] = set()
        self._udp_transports: list[asyncio.DatagramTransport] = []
        self._running = asyncio.Event()
        self._stop = asyncio.Event()
        self._burner: CpuBurner | None = None
        self._exit_code = 0

    # ----------------------------------------------------------------- state

    @property
    def connected(self) -> int:
        return self.tcp_clients + len(self.udp_sessions)

    def snapshot(self) -> Snapshot:
        now = self.clock()
        busy = self.connected + self.connecting
        live = self.live and not self.hung
        return Snapshot(
            is_live=live,
            connecting=self.connecting,
            connected=self.connected,
            # Conduit announces one request per free slot to the broker.
            announcing=max(0, self.max_clients - busy) if live else 0,
            bytes_up=self.bytes_up,
            bytes_down=self.bytes_down,
            uptime_seconds=round(now - self.started, 3),
            idle_seconds=round(now - self.idle_since, 3) if self.idle_since is not None else 0,
            max_clients=self.max_clients,
            max_personal_clients=self.config.max_personal_clients,
            bandwidth_bps=self.config.bandwidth_bps,
            refused=self.refused,
            udp_sessions=len(self.udp_sessions),
            udp_dropped=self.udp_dropped,
            leaked_bytes=self.leak.leaked_bytes if self.leak else 0,
            session_bytes=self.session_memory.held_bytes,
        )

    @property
    def max_clients(self) -> int:
        """The client slots now: the reduced-hours value inside its window (UTC)."""
        cfg = self.config
        if cfg.reduced_window is None or cfg.reduced_max_clients is None:
            return cfg.max_clients
        utc = time.gmtime(self.wall_clock())
        inside = cli_rules.in_window(cfg.reduced_window, utc.tm_hour * 60 + utc.tm_min)
        return cfg.reduced_max_clients if inside else cfg.max_clients

    def _full(self) -> bool:
        return self.connected + self.connecting >= self.max_clients

    def _counts_changed(self) -> None:
        if self.connected + self.connecting == 0:
            if self.idle_since is None:
                self.idle_since = self.clock()
        else:
            self.idle_since = None

    # ---------------------------------------------------------------- output

    def say(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(line, file=self.out, flush=True)

    def debug(self, line: str) -> None:
        if self.config.verbosity >= 1:
            self.say(f"[INFO] {line}")

    def warn(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(line, file=self.err, flush=True)

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code (0, or 1 after an internal error)."""
        loop = asyncio.get_running_loop()
        self._running.set()
        for signum, callback in (
            (signal.SIGTERM, self.request_stop),
            (signal.SIGINT, self.request_stop),
            (signal.SIGUSR1, self.hang),
            (signal.SIGUSR2, self.resume),
        ):
            loop.add_signal_handler(signum, callback)
        for udp_sock in self.sockets.udp:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpEcho(self), sock=udp_sock
            )
            self._udp_transports.append(transport)
        self._start_accepting()
        self.live = True
        self._spawn(self._stats_loop())
        if self._udp_transports:
            self._spawn(self._udp_sweeper())
        self._start_faults(loop)
        self.say("[OK] Connected to Psiphon network")
        await self._stop.wait()
        await self._shutdown()
        return self._exit_code

    def request_stop(self) -> None:
        self._stop.set()

    async def _shutdown(self) -> None:
        self.say("Shutting down...")
        self.live = False
        if self._burner is not None:
            self._burner.stop()
        self._stop_accepting()
        for transport in list(self._transports):
            transport.abort()
        for udp in self._udp_transports:
            udp.abort()
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        self.sockets.close()
        self._write_stats_file()
        self.say("Stopped.")

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        # A bug or a broken listener must not leave a half-working station: stop, exit 1.
        self.warn(f"[ERROR] conduit-sim: internal error: {task.exception()!r}; stopping")
        self._exit_code = 1
        self._stop.set()

    # ---------------------------------------------------------------- faults

    def _start_faults(self, loop: asyncio.AbstractEventLoop) -> None:
        cfg = self.config
        if cfg.crash_after is not None:
            loop.call_later(cfg.crash_after, self._crash)
        if cfg.hang_after is not None:
            loop.call_later(cfg.hang_after, self.hang)
        if self.leak is not None:
            self._spawn(self._leak_loop())
        if cfg.burn_cpu > 0:
            self._burner = CpuBurner(cfg.burn_cpu)
            self._burner.start()

    def _crash(self) -> None:
        self.warn(f"[ERROR] simulated crash after {self.config.crash_after:g}s (--crash-after)")
        with contextlib.suppress(Exception):
            self.out.flush()
        # A crash skips every cleanup on purpose: that is what is being simulated.
        os._exit(1)

    def hang(self) -> None:
        """Stop answering anything (accepts, reads, /metrics, [STATS]); stay alive."""
        if self.hung:
            return
        self.warn("[WARNING] simulated hang: no longer answering (--hang-after or SIGUSR1)")
        self.hung = True
        self._running.clear()
        self._stop_accepting()
        for transport in list(self._transports):
            with contextlib.suppress(Exception):
                cast(asyncio.Transport, transport).pause_reading()

    def resume(self) -> None:
        """Undo ``hang`` (SIGUSR2)."""
        if not self.hung:
            return
        self.warn("[INFO] resuming after simulated hang (SIGUSR2)")
        self.hung = False
        self._running.set()
        for transport in list(self._transports):
            with contextlib.suppress(Exception):
                cast(asyncio.Transport, transport).resume_reading()
        self._start_accepting()

    async def _leak_loop(self) -> None:
        assert self.leak is not None
        last = self.clock()
        while True:
            await asyncio.sleep(LEAK_TICK)
            now = self.clock()
            self.leak.tick(now - last)
            last = now

    # ------------------------------------------------------------- periodic

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.stats_interval)
            if self.hung:
                continue
            self.say(stats_line(self.snapshot(), datetime.now()))
            self._write_stats_file()

    def _write_stats_file(self) -> None:
        path = self.config.stats_file
        if path is None:
            return
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(stats_json(self.snapshot(), datetime.now().astimezone()))
            tmp.replace(path)
        except OSError as exc:
            if self.config.verbosity >= 1:
                self.say(f"[ERROR] Failed to write stats file: {exc}")

    async def _udp_sweeper(self) -> None:
        timeout = self.config.udp_idle_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = self.clock()
            expired = [a for a, s in self.udp_sessions.items() if now - s.last_seen > timeout]
            for addr in expired:
                self.session_memory.release(self.udp_sessions.pop(addr).memory)
                self.debug(f"udp client {_peer(addr)} expired (connected={self.connected})")
            if expired:
                self._counts_changed()

    # ------------------------------------------------------------- accepting

    def _start_accepting(self) -> None:
        for sock in self.sockets.tcp:
            self._accept_tasks.append(self._spawn(self._accept_loop(sock, self._serve_tcp)))
        if self.sockets.metrics is not None:
            metrics_sock = self.sockets.metrics
            self._accept_tasks.append(
                self._spawn(self._accept_loop(metrics_sock, self._serve_metrics))
            )

    def _stop_accepting(self) -> None:
        # Cancelling the accept leaves the listening socket open: new connections complete
        # in the kernel backlog and then get no answer, which is what a hung process looks like.
        for task in self._accept_tasks:
            task.cancel()
        self._accept_tasks.clear()

    async def _accept_loop(self, lsock: socket.socket, handler: Handler) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(lsock)
            except OSError as exc:
                if exc.errno in _TRANSIENT_ACCEPT_ERRORS:
                    self.warn(f"[ERROR] accept failed: {exc.strerror}; retrying")
                    await asyncio.sleep(0.1)
                    continue
                raise
            conn.setblocking(False)
            self._spawn(handler(conn, peer))

    # ------------------------------------------------------------------- TCP

    async def _serve_tcp(self, conn: socket.socket, peer: Peer) -> None:
        if self._full():
            self.refused += 1
            with contextlib.suppress(OSError):
                conn.send(self.busy)
            conn.close()
            self.debug(f"tcp client {_peer(peer)} refused: full ({self.max_clients})")
            return
        try:
            # Held from before the greeting, so a client that has read it knows it is held.
            memory = self.session_memory.acquire()
        except OSError as exc:
            self.warn(f"[ERROR] tcp client {_peer(peer)} dropped: --session-mb: {exc}")
            conn.close()
            return
        self.connecting += 1
        self._counts_changed()
        admitted = False
        writer: asyncio.StreamWriter | None = None
        try:
            rate = self.config.client_rate_bps
            reader, writer = await asyncio.open_connection(sock=conn)
            self._transports.add(writer.transport)
            if self.hung:
                cast(asyncio.Transport, writer.transport).pause_reading()
            writer.write(self.greeting)
            await writer.drain()
            self.bytes_down += len(self.greeting)
            self.connecting -= 1
            self.tcp_clients += 1
            admitted = True
            self._counts_changed()
            self.debug(f"tcp client {_peer(peer)} connected (connected={self.connected})")
            bucket = TokenBucket(rate, clock=self.clock)
            chunk = read_size(rate)
            while True:
                data = await reader.read(chunk)
                if not data:
                    break
                self.bytes_up += len(data)
                delay = bucket.take(len(data))
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._running.wait()  # a hung station never answers
                writer.write(data)
                await writer.drain()
                self.bytes_down += len(data)
        except OSError:
            pass  # the client went away; nothing to report
        finally:
            self.session_memory.release(memory)
            if admitted:
                self.tcp_clients -= 1
            else:
                self.connecting -= 1
            self._counts_changed()
            if writer is not None:
                self._transports.discard(writer.transport)
                writer.transport.abort()
            else:
                conn.close()
            if admitted:
                self.debug(f"tcp client {_peer(peer)} disconnected (connected={self.connected})")

    # --------------------------------------------------------------- metrics

    async def _serve_metrics(self, conn: socket.socket, peer: Peer) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=METRICS_REQUEST_LIMIT)
            self._transports.add(writer.transport)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), METRICS_READ_TIMEOUT)
            await self._running.wait()
            writer.write(http_response(head, lambda: render_metrics(self.snapshot())))
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            if writer is not None:
                self._transports.discard(writer.transport)
                writer.close()
            else:
                conn.close()

    # ------------------------------------------------------------------- UDP

    def on_datagram(self, transport: asyncio.DatagramTransport, data: bytes, addr: object) -> None:
        if self.hung:
            return
        self.bytes_up += len(data)
        now = self.clock()
        session = self.udp_sessions.get(addr)
        if session is None:
            if self._full():
                self.refused += 1
                self._send_udp(transport, self.busy, addr)
                self.debug(f"udp client {_peer(addr)} refused: full ({self.max_clients})")
                return
            rate = self.config.client_rate_bps
            try:
                memory = self.session_memory.acquire()
            except OSError as exc:
                self.warn(f"[ERROR] udp client {_peer(addr)} dropped: --session-mb: {exc}")
                return
            bucket = TokenBucket(rate, clock=self.clock)
            self.udp_sessions[addr] = UdpSession(bucket, now, memory)
            self._counts_changed()
            self._send_udp(transport, self.greeting, addr)
            self.debug(f"udp client {_peer(addr)} connected (connected={self.connected})")
            return
        session.last_seen = now
        # Datagrams cannot be held back like a stream; over the cap they are dropped.
        if session.bucket.try_take(len(data)):
            self._send_udp(transport, data, addr)
        else:
            self.udp_dropped += 1

    def _send_udp(self, transport: asyncio.DatagramTransport, data: bytes, addr: object) -> None:
        transport.sendto(data, addr)  # type: ignore[arg-type]
        self.bytes_down += len(data)


class _UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, station: Station) -> None:
        self.station = station
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if self.transport is not None:
            self.station.on_datagram(self.transport, data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable from a departed client: nothing to do


def active_faults(config: SimConfig) -> list[str]:
    """The fault options in force, spelled as their flags (``--session-mb 8``)."""
    values = {
        "--crash-after": config.crash_after,
        "--hang-after": config.hang_after,
        "--leak-mb-per-s": config.leak_mb_per_s or None,
        "--session-mb": config.session_mb or None,
        "--burn-cpu": config.burn_cpu or None,
    }
    return [f"{flag} {value:g}" for flag, value in values.items() if value is not None]


def startup_lines(config: SimConfig, key: StationKey, created: bool) -> list[str]:
    """What the simulator prints before serving (Conduit's banner plus the sim's details)."""
    bandwidth = "unlimited" if config.bandwidth_bps == 0 else f"{config.bandwidth_mbps:g} Mbps"
    lines = [
        f"Starting Psiphon Conduit (Max Clients: {config.max_clients}, Bandwidth: {bandwidth})",
    ]
    where = "New keys saved to" if created else "Loaded existing key from"
    if config.verbosity >= 1 or created:
        lines.append(f"{where} {config.key_path}")
    rate = config.client_rate_bps
    cap = "unlimited" if rate is None else f"{rate * 8 / 1000:g} kbps"
    detail = [f"conduit-sim {config.name} id={key.station_id}", f"client cap {cap}"]
    detail += [f"listen tcp+udp {addr}" for addr in config.listen]
    if config.metrics_addr is not None:
        detail.append(f"metrics http://{config.metrics_addr}/metrics")
    lines.append("[INFO] " + ", ".join(detail))
    faults = active_faults(config)
    if faults:
        # A fault may come from the image's environment: say so where `docker logs` shows it.
        lines.append("[WARNING] fault injection on: " + ", ".join(faults))
    return lines


def run_station(config: SimConfig, out: TextIO | None = None) -> int:
    """Set up (fd limit, key, sockets) and serve until a stop signal. Returns the exit code.

    Raises:
        SimError: the key file is corrupt or unwritable, or a listener cannot bind.
    """
    raise_nofile_limit()
    key, created = load_or_create_key(config.key_path)
    sockets = bind_all(config)
    stream = out or sys.stdout
    for line in startup_lines(config, key, created):
        print(line, file=stream, flush=True)

    async def serve() -> int:
        return await Station(config, key, sockets, out=stream).run()

    try:
        return asyncio.run(serve())
    finally:
        sockets.close()

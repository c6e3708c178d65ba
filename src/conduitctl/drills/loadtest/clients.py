"""The TCP and UDP clients: asyncio protocols driven by callbacks and timers, no task per
client once connected."""

from __future__ import annotations

import asyncio
import math
from typing import Any, cast

from conduitctl.drills.loadtest.report import ClientResult, DropReason, FailureReason, Outcome
from conduitctl.drills.loadtest.session import Client, ClientState, RunState
from conduitctl.drills.loadtest.wire import (
    SEQ_BYTES,
    GreetingKind,
    echo_payload,
    parse_greeting,
    udp_echo_payload,
)

GREETING_LIMIT = 512  # bytes; a longer first line is not a greeting
JITTER = 0.2  # each send interval is scaled by a uniform factor in [1 - J, 1 + J]
UDP_HELLO_RETRY_S = 1.0
UDP_HELLO = b"CONDUITCTL-LOADTEST hello\n"


class TcpClient(Client, asyncio.Protocol):
    __slots__ = ("expect", "expect_pos", "next_send")

    def __init__(self, run: RunState, index: int) -> None:
        super().__init__(run, index)
        self.expect = b""
        self.expect_pos = 0
        self.next_send = 0.0

    async def open(self) -> None:
        run = self.run
        self.started = run.loop.time()  # latency from the connect, not from the launch queue
        try:
            await run.loop.create_connection(lambda: self, run.ip, run.spec.port)
        except asyncio.CancelledError:
            pass  # a timeout or a stop cancelled it, and already recorded the outcome
        except Exception as exc:
            self.task = None  # this task: do not cancel it from inside
            self.on_connect_error(exc)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.run.live.add(self)
        if self.state is not ClientState.CONNECTING:  # timed out meanwhile
            self.close(abort=True)
            return
        self.state = ClientState.GREETING

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.live.discard(self)
        if self.state is ClientState.GREETING:
            if exc is None:
                self.fail(FailureReason.RESET, "closed before the greeting")
            else:
                self.on_connect_error(exc)
        elif self.state is ClientState.ESTABLISHED:
            reason = DropReason.EOF if exc is None else DropReason.RESET
            self.drop(reason, "connection lost" if exc is None else f"{exc}")

    def eof_received(self) -> bool | None:
        if self.state is ClientState.GREETING:
            if self.buf:
                self.fail(FailureReason.BAD_GREETING, f"closed after {bytes(self.buf[:80])!r}")
            else:
                self.fail(FailureReason.RESET, "closed before the greeting")
        elif self.state is ClientState.ESTABLISHED:
            self.drop(DropReason.EOF, "station closed the connection")
        return False

    def data_received(self, data: bytes) -> None:
        if self.state is ClientState.ESTABLISHED:
            self._on_echo(data)
        elif self.state is ClientState.GREETING:
            self.buf += data
            end = self.buf.find(b"\n")
            if end < 0:
                if len(self.buf) > GREETING_LIMIT:
                    self.fail(FailureReason.BAD_GREETING, "first line too long")
                return
            rest = bytes(self.buf[end + 1 :])
            self.on_greeting(bytes(self.buf[:end]))
            self.buf = bytearray()
            if rest and self.state is ClientState.ESTABLISHED:
                self._on_echo(rest)  # nothing was sent yet: a mismatch

    def start_traffic(self) -> None:
        if self.run.chunk > 0:
            self.timer = self.run.loop.call_later(
                self.run.rng.random() * self.run.interval, self._send
            )

    def _send(self) -> None:
        self.timer = None
        run = self.run
        if self.state is not ClientState.ESTABLISHED or run.closing:
            return
        now = run.loop.time()
        self.expect = echo_payload(self.index, self.seq, run.chunk)
        self.expect_pos = 0
        self.seq += 1
        self.bytes_sent += len(self.expect)
        self.deadline = now + run.spec.echo_timeout_s
        self.next_send = now + run.interval * (1 - JITTER + 2 * JITTER * run.rng.random())
        cast(asyncio.Transport, self.transport).write(self.expect)

    def _on_echo(self, data: bytes) -> None:
        start = self.expect_pos
        end = start + len(data)
        if end > len(self.expect) or data != self.expect[start:end]:
            self.drop(DropReason.ECHO_MISMATCH, f"{len(data)} unexpected bytes")
            return
        self.expect_pos = end
        self.bytes_received += len(data)
        if end == len(self.expect):
            self.deadline = math.inf
            run = self.run
            if not run.closing:
                delay = max(0.0, self.next_send - run.loop.time())
                self.timer = run.loop.call_later(delay, self._send)


class UdpClient(Client, asyncio.DatagramProtocol):
    __slots__ = (
        "datagrams_lost",
        "datagrams_received",
        "datagrams_sent",
        "hello_at",
        "outstanding",
    )

    def __init__(self, run: RunState, index: int) -> None:
        super().__init__(run, index)
        self.hello_at = 0.0
        self.outstanding: dict[int, float] = {}  # seq -> send time, oldest first
        self.datagrams_sent = 0
        self.datagrams_received = 0
        self.datagrams_lost = 0

    async def open(self) -> None:
        run = self.run
        self.started = run.loop.time()
        try:
            await run.loop.create_datagram_endpoint(
                lambda: self, remote_addr=(run.ip, run.spec.port), family=run.family
            )
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            self.task = None  # this task: do not cancel it from inside
            self.on_connect_error(exc)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # 3.11's selector datagram transport does not subclass DatagramTransport: cast.
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.run.live.add(self)
        if self.state is not ClientState.CONNECTING:
            self.close(abort=True)
            return
        self.state = ClientState.GREETING
        self._hello()

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.live.discard(self)

    def _hello(self) -> None:
        self.hello_at = self.run.loop.time()
        cast(asyncio.DatagramTransport, self.transport).sendto(UDP_HELLO)

    def error_received(self, exc: Exception) -> None:
        if self.state is ClientState.GREETING:
            self.on_connect_error(exc)
        elif self.state is ClientState.ESTABLISHED:
            self.drop(DropReason.RESET, f"{type(exc).__name__}: {exc}")

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.state is ClientState.ESTABLISHED:
            self._on_echo(data)
        elif self.state is ClientState.GREETING:
            if data == UDP_HELLO:
                # The station already holds a session for this source address: our greeting
                # was lost, or the source port was reused within its UDP idle timeout.
                self.fail(FailureReason.BAD_GREETING, "hello echoed: station had a stale session")
            else:
                self.on_greeting(data[:GREETING_LIMIT])

    def tick(self, now: float) -> None:
        super().tick(now)
        if self.state is ClientState.GREETING and now - self.hello_at >= UDP_HELLO_RETRY_S:
            self._hello()
        elif self.state is ClientState.ESTABLISHED:
            self._prune(now, self.run.loss_after)

    def _prune(self, now: float, older_than: float) -> None:
        outstanding = self.outstanding
        while outstanding:
            seq, sent_at = next(iter(outstanding.items()))
            if now - sent_at < older_than:
                break
            del outstanding[seq]
            self.datagrams_lost += 1

    def start_traffic(self) -> None:
        run = self.run
        self.timer = run.loop.call_later(run.rng.random() * run.interval, self._send)

    def _send(self) -> None:
        run = self.run
        self.timer = None
        if self.state is not ClientState.ESTABLISHED or run.closing:
            return
        now = run.loop.time()
        seq = self.seq
        self.seq += 1
        datagram = udp_echo_payload(self.index, seq, run.chunk)
        self.outstanding[seq] = now
        self.datagrams_sent += 1
        self.bytes_sent += len(datagram)
        cast(asyncio.DatagramTransport, self.transport).sendto(datagram)
        jitter = 1 - JITTER + 2 * JITTER * run.rng.random()
        self.timer = run.loop.call_later(run.interval * jitter, self._send)

    def _on_echo(self, data: bytes) -> None:
        if len(data) > SEQ_BYTES:
            seq = int.from_bytes(data[:SEQ_BYTES], "big")
            if seq in self.outstanding and data == udp_echo_payload(self.index, seq, len(data)):
                del self.outstanding[seq]
                self.datagrams_received += 1
                self.bytes_received += len(data)
                return
        kind, _ = parse_greeting(data[:GREETING_LIMIT], self.run.spec.greeting_prefix)
        if kind is not GreetingKind.BAD:
            self.drop(DropReason.RESET, "the station greeted again: it lost our session")
        # Anything else is a late echo already counted lost, or an echoed hello: ignore.

    def in_flight(self) -> bool:
        return bool(self.outstanding)

    def end_of_run(self, now: float) -> None:
        """Count what is overdue as lost; younger datagrams are in flight (neither)."""
        self._prune(now, self.run.loss_after)
        self.outstanding.clear()
        self.finish()

    def result(self, outcome: Outcome, reason: str | None) -> ClientResult:
        return ClientResult(
            outcome,
            reason,
            self.latency_s,
            self.connected_at_s,
            self.backend,
            self.bytes_sent,
            self.bytes_received,
            self.datagrams_sent,
            self.datagrams_received,
            self.datagrams_lost,
        )

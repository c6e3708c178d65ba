"""One load run: resolve the target, launch clients on the ramp, sweep their timeouts, report
progress, end at the duration (or a stop) and close every socket."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import resource
import signal
import socket
from collections.abc import Callable
from typing import Any

from conduitctl.drills.clock import REAL_CLOCK, Clock
from conduitctl.drills.loadtest.clients import TcpClient, UdpClient
from conduitctl.drills.loadtest.report import FailureReason, LoadReport, Snapshot, build_report
from conduitctl.drills.loadtest.session import RunState
from conduitctl.drills.loadtest.spec import LoadSpec
from conduitctl.errors import BadInput

log = logging.getLogger(__name__)

FD_HEADROOM = 100  # fds beyond one per client: the loop, logging, the CLI
SWEEP_INTERVAL_S = 0.25
PROGRESS_INTERVAL_S = 1.0
LAUNCH_TICK_S = 0.005
MAX_PENDING_CONNECTS = 1000  # connects awaiting their greeting at once
CLOSE_POLL_S = 0.05
CLOSE_WAIT_S = 1.0  # for graceful closes at the end, before they are aborted


def ensure_fd_limit(
    clients: int,
    getrlimit: Callable[[int], tuple[int, int]] = resource.getrlimit,
    setrlimit: Callable[[int, tuple[int, int]], None] = resource.setrlimit,
) -> int:
    """Make room for one fd per client plus ``FD_HEADROOM``; returns the soft limit now.

    Sets the soft RLIMIT_NOFILE to the hard limit; when even the hard limit is too low,
    tries to raise it (works as root). Raises BadInput when it cannot.
    """
    needed = clients + FD_HEADROOM
    kind = resource.RLIMIT_NOFILE
    soft, hard = getrlimit(kind)
    infinite = resource.RLIM_INFINITY
    if hard == infinite or hard >= needed:
        target = max(soft, needed) if hard == infinite else hard
        if soft != infinite and soft < target:
            try:
                setrlimit(kind, (target, hard))
            except (ValueError, OSError):
                if soft < needed:
                    raise _fd_error(clients, needed, hard) from None
                return soft
        return target if soft != infinite else soft
    try:
        setrlimit(kind, (needed, needed))
    except (ValueError, OSError):
        raise _fd_error(clients, needed, hard) from None
    return needed


def _fd_error(clients: int, needed: int, hard: int) -> BadInput:
    return BadInput(
        f"loadtest --clients {clients} needs {needed} open files but RLIMIT_NOFILE (hard) "
        f"is {hard}; raise it (`ulimit -n {needed}` as root, LimitNOFILE= for a service) "
        "or use fewer --clients"
    )


async def _launch(run: RunState, stop_at: float) -> None:
    """Start clients on the ramp schedule, at most MAX_PENDING_CONNECTS connecting at once."""
    loop = run.loop
    total = run.spec.clients
    ramp = run.spec.effective_ramp_s
    started = 0
    try:
        while started < total and not run.closing:
            now = loop.time()
            if now >= stop_at:
                break
            due = total if ramp <= 0 else min(total, math.floor((now - run.t0) / ramp * total) + 1)
            batch = min(due - started, MAX_PENDING_CONNECTS - len(run.pending))
            for _ in range(max(batch, 0)):
                run.start_client(started)
                started += 1
            if started >= total:
                break
            if due > started:  # held back by the pending cap
                await asyncio.sleep(LAUNCH_TICK_S)
            else:
                next_due = run.t0 + started * ramp / total
                await asyncio.sleep(max(LAUNCH_TICK_S, next_due - loop.time()))
    finally:
        run.launch_done()


async def _sweep(run: RunState) -> None:
    failed_before = False
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            run.sweep()
        except Exception:
            # A bug in one client must not stop every timeout; say it once.
            if not failed_before:
                log.exception("loadtest sweep failed; continuing")
            failed_before = True


async def _progress(run: RunState, progress: Callable[[Snapshot], None]) -> None:
    ticks = 0
    while True:
        ticks += 1
        await asyncio.sleep(max(0.0, run.t0 + ticks * PROGRESS_INTERVAL_S - run.loop.time()))
        _call_progress(progress, run.snapshot())


def _call_progress(progress: Callable[[Snapshot], None], snap: Snapshot) -> None:
    try:
        progress(snap)
    except Exception:
        log.exception("loadtest progress callback failed")


async def _resolve(loop: asyncio.AbstractEventLoop, spec: LoadSpec) -> tuple[int, str]:
    """(family, IP) of the target, resolved once. Raises BadInput when the name does not."""
    try:
        ip = ipaddress.ip_address(spec.host)
    except ValueError:
        pass
    else:
        return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), str(ip)
    kind = socket.SOCK_DGRAM if spec.udp else socket.SOCK_STREAM
    try:
        infos = await loop.getaddrinfo(spec.host, spec.port, type=kind)
    except socket.gaierror as exc:
        raise BadInput(
            f"loadtest --target {spec.target}: cannot resolve {spec.host!r} ({exc.strerror}); "
            "give an IP address or a resolvable name"
        ) from None
    family, _, _, _, sockaddr = infos[0]
    return int(family), str(sockaddr[0])


async def _first(*aws: asyncio.Future[Any] | asyncio.Task[Any], timeout: float) -> None:
    """Wait until any of ``aws`` is done or ``timeout`` passes; never cancels ``aws``."""
    if timeout > 0:
        await asyncio.wait(aws, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)


async def run_load(
    spec: LoadSpec,
    progress: Callable[[Snapshot], None] | None = None,
    stop: asyncio.Event | None = None,
    *,
    clock: Clock = REAL_CLOCK,
) -> LoadReport:
    """Run the load described by ``spec`` and return its report.

    Ends at ``spec.duration_s`` (earlier when no client is left connecting or connected, or
    when ``stop`` is set: then the report is partial and ``stopped_early``), and in any case
    by ``duration_s + grace_s``. Every socket is closed on return, also on cancellation.
    ``progress`` gets a Snapshot about once a second and once at the end.

    The run is timed by the event loop's own clock (``loop.time``, its timers and sleeps go
    together; a test drives them with a loop of its own); ``clock`` gives the CPU time.

    Raises:
        BadInput: the fd limit cannot fit the clients, or the target name does not resolve.
    """
    ensure_fd_limit(spec.clients)
    loop = asyncio.get_running_loop()
    family, ip = await _resolve(loop, spec)
    stop = stop if stop is not None else asyncio.Event()
    cpu0 = clock.cpu()
    run = RunState(spec, loop, family, ip, UdpClient if spec.udp else TcpClient)
    deadline = run.t0 + spec.duration_s
    hard_stop = deadline + spec.grace_s
    log.info(
        "loadtest start target=%s mode=%s clients=%d duration=%gs rate=%gkbps ramp=%gs",
        spec.target,
        "udp" if spec.udp else "tcp",
        spec.clients,
        spec.duration_s,
        spec.rate_kbps,
        spec.effective_ramp_s,
    )
    helpers = [loop.create_task(_launch(run, deadline)), loop.create_task(_sweep(run))]
    if progress is not None:
        helpers.append(loop.create_task(_progress(run, progress)))
    stop_wait = loop.create_task(stop.wait())
    settled_wait = loop.create_task(run.settled.wait())
    stopped_early = False
    try:
        await _first(stop_wait, settled_wait, timeout=deadline - loop.time())
        stopped_early = stop.is_set()
        run.closing = True  # no new sends, no new clients; late greetings finish at once
        if stopped_early:
            for client in list(run.pending):
                client.cancel()
        elif spec.udp:
            # Give echoes in flight their chance before judging them lost.
            drain_until = loop.time() + run.loss_after
            while run.outstanding_udp() and loop.time() < drain_until and not stop.is_set():
                await asyncio.sleep(CLOSE_POLL_S)
        run.finish_all()
        # Connects still pending end by their own timeout (the sweep keeps running for them);
        # a graceful close that has not completed within CLOSE_WAIT_S is aborted below.
        closed_by = loop.time() + CLOSE_WAIT_S
        while (run.pending or run.live) and loop.time() < hard_stop and not stop.is_set():
            if not run.pending and loop.time() >= closed_by:
                break
            await asyncio.sleep(CLOSE_POLL_S)
            run.finish_all()
    finally:
        run.closing = True
        for task in (*helpers, stop_wait, settled_wait):
            task.cancel()
        for client in list(run.pending):
            if stop.is_set():
                client.cancel()
            else:
                client.fail(FailureReason.TIMEOUT, "still connecting at the hard stop")
        run.finish_all()
        for client in list(run.live):
            client.close(abort=True)
        # Let the transports' connection_lost callbacks run: they close the sockets.
        await asyncio.gather(*helpers, stop_wait, settled_wait, return_exceptions=True)
        await asyncio.sleep(0)
    elapsed = loop.time() - run.t0
    if progress is not None:
        _call_progress(progress, run.snapshot())
    report = build_report(
        spec,
        run.results,
        duration_s=elapsed,
        peak_open=run.peak_open,
        cpu_s=clock.cpu() - cpu0,
        stopped_early=stopped_early,
        error_examples=run.examples,
    )
    log.info(
        "loadtest done target=%s attempted=%d connected=%d failed=%d dropped=%d peak=%d",
        spec.target,
        report.attempted,
        report.connected,
        report.failed,
        report.sessions_dropped,
        report.peak_open,
    )
    return report


def run(spec: LoadSpec, progress: Callable[[Snapshot], None] | None = None) -> LoadReport:
    """``run_load`` in a fresh event loop. The first Ctrl-C ends the run early with a
    partial report; a second one interrupts at once (KeyboardInterrupt)."""

    async def main() -> LoadReport:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def first_interrupt() -> None:
            stop.set()
            loop.remove_signal_handler(signal.SIGINT)

        installed = False
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, first_interrupt)
            installed = True
        try:
            return await run_load(spec, progress, stop)
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGINT)

    return asyncio.run(main())

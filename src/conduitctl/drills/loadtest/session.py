"""One client's life (connecting, awaiting the greeting, established, done) and the state
every client of a run shares. The transports are in clients.py."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable
from enum import Enum, StrEnum

from conduitctl.drills.loadtest.report import (
    ClientResult,
    DropReason,
    FailureReason,
    Outcome,
    Snapshot,
)
from conduitctl.drills.loadtest.spec import LoadSpec
from conduitctl.drills.loadtest.wire import GreetingKind, classify_error, echo_plan, parse_greeting

log = logging.getLogger(__name__)

UDP_LOSS_AFTER_S = 2.0  # a datagram not echoed this long is lost (capped by echo_timeout_s)


class ClientState(Enum):
    CONNECTING = 1
    GREETING = 2
    ESTABLISHED = 3
    DONE = 4


class Client:
    """State shared by TCP and UDP clients. Every transition records exactly one result."""

    __slots__ = (
        "backend",
        "buf",
        "bytes_received",
        "bytes_sent",
        "connected_at_s",
        "deadline",
        "index",
        "latency_s",
        "run",
        "seq",
        "started",
        "state",
        "task",
        "timer",
        "transport",
    )

    def __init__(self, run: RunState, index: int) -> None:
        self.run = run
        self.index = index
        self.state = ClientState.CONNECTING
        self.started = run.loop.time()
        self.deadline = self.started + run.spec.connect_timeout_s
        self.latency_s: float | None = None
        self.connected_at_s: float | None = None
        self.backend: str | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.seq = 0
        self.buf = bytearray()
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | asyncio.DatagramTransport | None = None

    # ------------------------------------------------------------ hooks

    async def open(self) -> None:
        raise NotImplementedError

    def start_traffic(self) -> None:
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Called by the sweep: timeouts."""
        if self.deadline > now:
            return
        if self.state is ClientState.ESTABLISHED:
            self.drop(DropReason.TIMEOUT, "echo not back in time")
        elif self.state in (ClientState.CONNECTING, ClientState.GREETING):
            what = "connect" if self.state is ClientState.CONNECTING else "greeting"
            self.fail(
                FailureReason.TIMEOUT, f"no {what} within {self.run.spec.connect_timeout_s:g}s"
            )

    def result(self, outcome: Outcome, reason: str | None) -> ClientResult:
        return ClientResult(
            outcome,
            reason,
            self.latency_s,
            self.connected_at_s,
            self.backend,
            self.bytes_sent,
            self.bytes_received,
        )

    # ------------------------------------------------------ transitions

    def on_greeting(self, line: bytes) -> None:
        kind, name = parse_greeting(line, self.run.spec.greeting_prefix)
        if kind is GreetingKind.OK:
            self.establish(name)
        elif kind is GreetingKind.BUSY:
            self.fail(FailureReason.BUSY, f"BUSY from {name or '?'}")
        else:
            self.fail(FailureReason.BAD_GREETING, f"first line {bytes(line[:80])!r}")

    def establish(self, backend: str) -> None:
        run = self.run
        now = run.loop.time()
        self.state = ClientState.ESTABLISHED
        self.latency_s = now - self.started
        self.connected_at_s = now - run.t0
        self.backend = backend
        self.deadline = math.inf
        self.task = None
        run.pending.discard(self)
        run.established.add(self)
        run.connected += 1
        run.peak_open = max(run.peak_open, len(run.established))
        if run.closing:
            self.finish()
        else:
            self.start_traffic()

    def fail(self, reason: FailureReason, detail: str = "") -> None:
        if self.state in (ClientState.DONE, ClientState.ESTABLISHED):
            return
        self.state = ClientState.DONE
        if self.task is not None:
            self.task.cancel()  # no-op once the connect is done
            self.task = None
        self.run.pending.discard(self)
        self.run.failed += 1
        self.run.note(reason, detail)
        self.run.record(self.result(Outcome.FAILED, reason.value))
        self.close(abort=True)

    def drop(self, reason: DropReason, detail: str = "") -> None:
        if self.state is not ClientState.ESTABLISHED or self.run.closing:
            return
        self._end()
        self.run.dropped += 1
        self.run.note(reason, detail)
        self.run.record(self.result(Outcome.DROPPED, reason.value))
        self.close(abort=True)

    def finish(self) -> None:
        """The run is over: close gracefully, counted as held to the end."""
        if self.state is not ClientState.ESTABLISHED:
            return
        self._end()
        self.run.record(self.result(Outcome.OK, None))
        self.close(abort=False)

    def cancel(self) -> None:
        """A stop ended the run while this client was still connecting."""
        if self.state not in (ClientState.CONNECTING, ClientState.GREETING):
            return
        self.state = ClientState.DONE
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.run.pending.discard(self)
        self.run.record(self.result(Outcome.CANCELLED, None))
        self.close(abort=True)

    def _end(self) -> None:
        self.state = ClientState.DONE
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.run.established.discard(self)

    def close(self, abort: bool) -> None:
        if self.transport is None:
            return
        if abort:
            self.transport.abort()
        else:
            self.transport.close()

    def on_connect_error(self, exc: BaseException) -> None:
        self.fail(classify_error(exc), f"{type(exc).__name__}: {exc}")

    def in_flight(self) -> bool:
        """Sent traffic not yet judged (UDP datagrams awaiting their echo)."""
        return False

    def end_of_run(self, now: float) -> None:
        """The run is over for this established client (UDP first judges what is overdue)."""
        self.finish()


ClientFactory = Callable[["RunState", int], Client]


class RunState:
    """Everything one run shares; touched only from the event loop."""

    def __init__(
        self,
        spec: LoadSpec,
        loop: asyncio.AbstractEventLoop,
        family: int,
        ip: str,
        new_client: ClientFactory,
    ) -> None:
        self.spec = spec
        self.new_client = new_client  # the TCP or UDP client (clients.py)
        self.loop = loop
        self.family = family
        self.ip = ip
        self.t0 = loop.time()
        self.chunk, self.interval = echo_plan(spec.rate_kbps, spec.udp)
        self.loss_after = min(UDP_LOSS_AFTER_S, spec.echo_timeout_s)
        self.rng = random.Random()
        self.pending: set[Client] = set()  # connecting or awaiting the greeting
        self.established: set[Client] = set()
        self.live: set[Client] = set()  # transport open
        self.results: list[ClientResult] = []
        self.examples: dict[str, str] = {}
        self.attempted = self.connected = self.failed = self.dropped = 0
        self.peak_open = 0
        self.closing = False
        self.launched_all = False
        self.settled = asyncio.Event()  # everything launched and nothing left open

    def note(self, reason: StrEnum, detail: str) -> None:
        key = str(reason)
        if key not in self.examples:
            self.examples[key] = detail or key
            log.debug("loadtest first failure", extra={"reason": reason, "detail": detail})

    def record(self, result: ClientResult) -> None:
        self.results.append(result)
        self._check_settled()

    def _check_settled(self) -> None:
        if self.launched_all and not self.pending and not self.established:
            self.settled.set()

    def launch_done(self) -> None:
        self.launched_all = True
        self._check_settled()

    def start_client(self, index: int) -> None:
        client = self.new_client(self, index)
        self.attempted += 1
        self.pending.add(client)
        client.task = self.loop.create_task(client.open())

    def snapshot(self) -> Snapshot:
        return Snapshot(
            elapsed_s=self.loop.time() - self.t0,
            attempted=self.attempted,
            open=len(self.established),
            connected=self.connected,
            failed=self.failed,
            dropped=self.dropped,
        )

    def sweep(self) -> None:
        now = self.loop.time()
        for client in list(self.pending):
            client.tick(now)
        if self.chunk > 0:
            for client in list(self.established):
                client.tick(now)

    def outstanding_udp(self) -> bool:
        return any(c.in_flight() for c in self.established)

    def finish_all(self) -> None:
        now = self.loop.time()
        for client in list(self.established):
            client.end_of_run(now)

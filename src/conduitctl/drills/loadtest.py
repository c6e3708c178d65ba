"""The load generator behind ``conduitctl loadtest``: thousands of sessions from one process.

Each simulated client connects to the target (TCP, or a UDP datagram socket with ``udp``),
waits for the station's greeting line (``CONDUIT-SIM <name> <id>``; ``BUSY <name>`` when the
station is full), then echoes traffic at a steady per-client rate until the run's duration
ends, verifying every byte that comes back. Connection starts are spread over a ramp so a
single-threaded client does not flood the target's accept backlog.

Scale: clients are asyncio Protocols driven by callbacks and timers (no task per client once
connected, no busy loops); one sweep every ``SWEEP_INTERVAL_S`` handles every timeout. One
process on 2 cores holds 10,000 low-rate TCP sessions. The client itself tops out at about
4,000-5,000 connects/s on one core: a ramp asking for more makes the measured latency include
the client's own queueing (the report's ``connections_per_second`` falls short of
clients / ramp when that happens).

The pure parts (``percentile``, ``balance_ratio``, ``classify_error``, ``parse_greeting``,
``echo_plan``, ``build_report``) are separate from the I/O so they can be tested as tables.

Units: ``rate_kbps`` is kilobits per second per client (the unit of conduit-sim's
``--client-rate-kbps``: 32 kbps = 4 KB/s); report byte counts are payload bytes; ``mbps``
is megabits per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import math
import random
import resource
import signal
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from fractions import Fraction
from typing import Any, cast

from conduitctl.errors import BadInput
from conduitctl.front.base import first_listener
from conduitctl.settings import Proto, Settings

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_ECHO_TIMEOUT_S = 5.0
DEFAULT_GREETING_PREFIX = "CONDUIT-SIM"
# Default ramp: clients / RAMP_CONNECTS_PER_S seconds, but never more than a quarter of the run.
RAMP_CONNECTS_PER_S = 2000
FD_HEADROOM = 100  # fds beyond one per client: the loop, logging, the CLI
GRACE_EXTRA_S = 5.0  # hard stop = duration + connect timeout + this
GREETING_LIMIT = 512  # bytes; a longer first line is not a greeting
SWEEP_INTERVAL_S = 0.25
PROGRESS_INTERVAL_S = 1.0
LAUNCH_TICK_S = 0.005
MAX_PENDING_CONNECTS = 1000  # connects awaiting their greeting at once
CLOSE_POLL_S = 0.05
CLOSE_WAIT_S = 1.0  # for graceful closes at the end, before they are aborted
JITTER = 0.2  # each send interval is scaled by a uniform factor in [1 - J, 1 + J]
TCP_CHUNK = (64, 16384)  # bytes per echo round trip (min, max); about one second of traffic
UDP_CHUNK = (16, 1200)  # bytes per datagram (min, max): 1200 never fragments
UDP_KEEPALIVE_S = 5.0  # rate 0 over UDP: one small datagram this often keeps the session
UDP_HELLO_RETRY_S = 1.0
UDP_LOSS_AFTER_S = 2.0  # a datagram not echoed this long is lost (capped by echo_timeout_s)
UDP_HELLO = b"CONDUITCTL-LOADTEST hello\n"
_SEQ_BYTES = 8

# Echo payloads are slices of this block, offset per client and per round trip, so a reply
# that belongs to another client or another round trip is caught as a mismatch.
_PATTERN = random.Random(0x10AD).randbytes(65536 + TCP_CHUNK[1])


class FailureReason(StrEnum):
    """Why a connection attempt did not become a session. A fixed set (report keys)."""

    REFUSED = "refused"  # RST on connect, or host/network unreachable
    TIMEOUT = "timeout"  # no connect or no greeting within connect_timeout_s
    RESET = "reset"  # the peer closed or reset before its greeting
    BUSY = "busy"  # the station answered BUSY (full)
    BAD_GREETING = "bad_greeting"  # something other than a greeting line
    FD_LIMIT = "fd_limit"  # EMFILE/ENFILE: out of file descriptors
    OTHER = "other"


class DropReason(StrEnum):
    """Why an established session ended before the run did."""

    EOF = "eof"  # the station closed the connection
    RESET = "reset"  # RST, ICMP unreachable (UDP), or a UDP station greeted us again
    TIMEOUT = "timeout"  # TCP echo not back within echo_timeout_s
    ECHO_MISMATCH = "echo_mismatch"  # bytes came back that were not sent


class Outcome(StrEnum):
    OK = "ok"  # connected and held until the end
    FAILED = "failed"  # never connected
    DROPPED = "dropped"  # connected, then lost before the end
    CANCELLED = "cancelled"  # still connecting when a stop ended the run


# ------------------------------------------------------------------------------ the spec


def parse_target(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port). Raises BadInput naming the fix."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise BadInput(f"--target {text!r} is not HOST:PORT; give e.g. 127.0.0.1:443")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or "[" in host or "]" in host:
        raise BadInput(f"--target {text!r}: write an IPv6 address as [ADDR]:PORT")
    if not host or any(ch.isspace() for ch in host):
        raise BadInput(f"--target {text!r}: the host is empty or contains spaces")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise BadInput(f"--target {text!r}: port {port_text!r} is not 1-65535")
    return host, int(port_text)


@dataclass(frozen=True)
class LoadSpec:
    """What to run. Validated on construction (raises BadInput naming the field and the fix).

    ``rate_kbps`` is kilobits per second per client (0 = connect and hold only; over UDP a
    small keepalive datagram still goes every ``UDP_KEEPALIVE_S``). ``ramp_s`` spreads the
    connection starts (None = ``default_ramp``). ``duration_s`` includes the ramp: every
    session is closed at ``duration_s`` after the start.
    """

    host: str
    port: int
    clients: int
    duration_s: float
    rate_kbps: float = 0.0
    udp: bool = False
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    ramp_s: float | None = None
    greeting_prefix: str = DEFAULT_GREETING_PREFIX
    echo_timeout_s: float = DEFAULT_ECHO_TIMEOUT_S

    def __post_init__(self) -> None:
        def positive(name: str, value: float) -> None:
            if not (math.isfinite(value) and value > 0):
                raise BadInput(f"loadtest {name} must be a number > 0 (got {value})")

        if not self.host or any(ch.isspace() for ch in self.host):
            raise BadInput(f"loadtest --target host {self.host!r} is empty or has spaces")
        if not 1 <= self.port <= 65535:
            raise BadInput(f"loadtest --target port {self.port} is not 1-65535")
        if self.clients < 1:
            raise BadInput(f"loadtest --clients must be 1 or more (got {self.clients})")
        positive("--duration", self.duration_s)
        positive("connect_timeout_s", self.connect_timeout_s)
        positive("echo_timeout_s", self.echo_timeout_s)
        if not (math.isfinite(self.rate_kbps) and self.rate_kbps >= 0):
            raise BadInput(f"loadtest --rate must be >= 0 kbps (got {self.rate_kbps})")
        if self.ramp_s is not None and not 0 <= self.ramp_s <= self.duration_s:
            raise BadInput(
                f"loadtest ramp_s must be between 0 and --duration ({self.duration_s:g}); "
                f"got {self.ramp_s}"
            )
        if not self.greeting_prefix or any(ch.isspace() for ch in self.greeting_prefix):
            raise BadInput(f"loadtest greeting_prefix {self.greeting_prefix!r} must be one word")

    @classmethod
    def from_target(cls, target: str, **fields: Any) -> LoadSpec:
        """Build a spec from a ``HOST:PORT`` string (BadInput when it is malformed)."""
        host, port = parse_target(target)
        return cls(host=host, port=port, **fields)

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def effective_ramp_s(self) -> float:
        return self.ramp_s if self.ramp_s is not None else default_ramp(self)

    @property
    def grace_s(self) -> float:
        """How long after ``duration_s`` the run is stopped no matter what."""
        return self.connect_timeout_s + GRACE_EXTRA_S


def default_ramp(spec: LoadSpec) -> float:
    """min(duration / 4, clients / RAMP_CONNECTS_PER_S) seconds."""
    return min(spec.duration_s / 4, spec.clients / RAMP_CONNECTS_PER_S)


# ------------------------------------------------------------------ results and report


@dataclass(frozen=True, slots=True)
class ClientResult:
    """What one client did. ``connected_at_s`` is relative to the start of the run."""

    outcome: Outcome
    reason: str | None = None  # a FailureReason (FAILED) or DropReason (DROPPED)
    latency_s: float | None = None  # connect start -> greeting received
    connected_at_s: float | None = None
    backend: str | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    datagrams_sent: int = 0
    datagrams_received: int = 0
    datagrams_lost: int = 0

    @property
    def connected(self) -> bool:
        return self.outcome in (Outcome.OK, Outcome.DROPPED)


@dataclass(frozen=True)
class Snapshot:
    """Progress, about once a second: enough for one live line."""

    elapsed_s: float
    attempted: int
    open: int  # established sessions right now
    connected: int
    failed: int
    dropped: int


@dataclass(frozen=True)
class LatencyStats:
    """Connect start -> greeting received, milliseconds; None when nothing connected."""

    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@dataclass(frozen=True)
class Throughput:
    """Payload bytes (greetings excluded). ``mbps`` = bytes echoed back, megabits/s."""

    bytes_sent: int
    bytes_received: int
    mbps: float


@dataclass(frozen=True)
class UdpStats:
    """``loss_ratio`` = lost / (received + lost); datagrams still in flight when a stop
    ended the run count as neither."""

    datagrams_sent: int
    datagrams_received: int
    datagrams_lost: int
    loss_ratio: float


@dataclass(frozen=True)
class LoadReport:
    """The outcome of one run. ``to_dict()`` is the ``--json`` document."""

    target: str
    mode: str  # "tcp" | "udp"
    clients: int
    rate_kbps: float
    attempted: int
    connected: int
    failed: int
    failed_by_reason: Mapping[str, int]
    failed_ratio: float
    error_examples: Mapping[str, str]  # first message seen per failure/drop reason
    latency: LatencyStats
    throughput: Throughput
    per_backend: Mapping[str, int]  # sessions per backend name (from the greeting)
    backends: int
    balance_ratio: float | None  # max / min sessions over backends; None with no backend
    sessions_dropped: int
    dropped_by_reason: Mapping[str, int]
    cancelled: int
    peak_open: int
    duration_s: float
    ramp_s: float  # first start -> last greeting
    connections_per_second: float
    udp: UdpStats | None
    client_cpu_percent: float  # this process, percent of one core over the run
    stopped_early: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "mode": self.mode,
            "clients": self.clients,
            "rate_kbps": self.rate_kbps,
            "attempted": self.attempted,
            "connected": self.connected,
            "failed": self.failed,
            "failed_by_reason": dict(self.failed_by_reason),
            "failed_ratio": round(self.failed_ratio, 6),
            "error_examples": dict(self.error_examples),
            "latency_ms": {
                "p50": _round(self.latency.p50_ms),
                "p95": _round(self.latency.p95_ms),
                "p99": _round(self.latency.p99_ms),
                "max": _round(self.latency.max_ms),
            },
            "throughput": {
                "bytes_sent": self.throughput.bytes_sent,
                "bytes_received": self.throughput.bytes_received,
                "mbps": round(self.throughput.mbps, 4),
            },
            "per_backend": dict(self.per_backend),
            "backends": self.backends,
            "balance_ratio": _round(self.balance_ratio),
            "sessions_dropped": self.sessions_dropped,
            "dropped_by_reason": dict(self.dropped_by_reason),
            "cancelled": self.cancelled,
            "peak_open": self.peak_open,
            "duration_s": round(self.duration_s, 3),
            "ramp_s": round(self.ramp_s, 3),
            "connections_per_second": round(self.connections_per_second, 1),
            "udp": None
            if self.udp is None
            else {
                "datagrams_sent": self.udp.datagrams_sent,
                "datagrams_received": self.udp.datagrams_received,
                "datagrams_lost": self.udp.datagrams_lost,
                "loss_ratio": round(self.udp.loss_ratio, 6),
            },
            "client_cpu_percent": round(self.client_cpu_percent, 1),
            "stopped_early": self.stopped_early,
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``p`` % of values <= it.

    ``p`` in [0, 100]; p = 0 gives the minimum. Raises ValueError on no values or a bad p.
    """
    return percentiles(values, (p,))[0]


def percentiles(values: Iterable[float], ps: Sequence[float]) -> list[float]:
    """``percentile`` for several ``ps`` with one sort."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    out = []
    for p in ps:
        if not 0 <= p <= 100:
            raise ValueError(f"percentile {p} is not in [0, 100]")
        # Exact arithmetic: 99.9 % of 1000 must be rank 999, not 1000 from float rounding.
        rank = math.ceil(Fraction(str(p)) * len(ordered) / 100)
        out.append(ordered[max(rank, 1) - 1])
    return out


def balance_ratio(per_backend: Mapping[str, int]) -> float | None:
    """max / min sessions over backends that got any; 1.0 is perfect, None with none."""
    counts = [n for n in per_backend.values() if n > 0]
    if not counts:
        return None
    return max(counts) / min(counts)


def max_failed_exceeded(report: LoadReport, ratio: float) -> bool:
    """True when the failed share of attempted connections is above ``ratio`` (CLI exit 1).

    Dropped sessions are reported separately and do not count here.
    """
    return report.failed_ratio > ratio


def build_report(
    spec: LoadSpec,
    results: Sequence[ClientResult],
    *,
    duration_s: float,
    peak_open: int,
    cpu_s: float = 0.0,
    stopped_early: bool = False,
    error_examples: Mapping[str, str] | None = None,
) -> LoadReport:
    """Assemble the report from per-client results (pure)."""
    failed_by = {reason.value: 0 for reason in FailureReason}
    dropped_by = {reason.value: 0 for reason in DropReason}
    per_backend: dict[str, int] = {}
    latencies: list[float] = []
    last_connect = 0.0
    sent = received = dgram_sent = dgram_received = dgram_lost = 0
    connected = failed = dropped = cancelled = 0
    for r in results:
        sent += r.bytes_sent
        received += r.bytes_received
        dgram_sent += r.datagrams_sent
        dgram_received += r.datagrams_received
        dgram_lost += r.datagrams_lost
        if r.outcome is Outcome.FAILED:
            failed += 1
            key = r.reason if r.reason in failed_by else FailureReason.OTHER.value
            failed_by[key] += 1
        elif r.outcome is Outcome.CANCELLED:
            cancelled += 1
        else:
            connected += 1
            if r.outcome is Outcome.DROPPED:
                dropped += 1
                if r.reason is not None:
                    dropped_by[r.reason] = dropped_by.get(r.reason, 0) + 1
            if r.latency_s is not None:
                latencies.append(r.latency_s * 1000)
            if r.connected_at_s is not None:
                last_connect = max(last_connect, r.connected_at_s)
            if r.backend is not None:
                per_backend[r.backend] = per_backend.get(r.backend, 0) + 1
    attempted = len(results)
    if latencies:
        p50, p95, p99, top = percentiles(latencies, (50, 95, 99, 100))
        latency = LatencyStats(p50, p95, p99, top)
    else:
        latency = LatencyStats(None, None, None, None)
    udp = None
    if spec.udp:
        judged = dgram_received + dgram_lost
        udp = UdpStats(
            dgram_sent, dgram_received, dgram_lost, dgram_lost / judged if judged else 0.0
        )
    ramp_taken = max(last_connect, 1e-3) if connected else 0.0
    return LoadReport(
        target=spec.target,
        mode="udp" if spec.udp else "tcp",
        clients=spec.clients,
        rate_kbps=spec.rate_kbps,
        attempted=attempted,
        connected=connected,
        failed=failed,
        failed_by_reason=failed_by,
        failed_ratio=failed / attempted if attempted else 0.0,
        error_examples=dict(error_examples or {}),
        latency=latency,
        throughput=Throughput(
            sent, received, received * 8 / 1e6 / duration_s if duration_s > 0 else 0.0
        ),
        per_backend=dict(sorted(per_backend.items())),
        backends=len(per_backend),
        balance_ratio=balance_ratio(per_backend),
        sessions_dropped=dropped,
        dropped_by_reason=dropped_by,
        cancelled=cancelled,
        peak_open=peak_open,
        duration_s=duration_s,
        ramp_s=ramp_taken,
        connections_per_second=connected / ramp_taken if connected else 0.0,
        udp=udp,
        client_cpu_percent=100 * cpu_s / duration_s if duration_s > 0 else 0.0,
        stopped_early=stopped_early,
    )


# ---------------------------------------------------------------------- small pure parts

_FD_ERRNOS = {errno.EMFILE, errno.ENFILE}
_REFUSED_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH}
_RESET_ERRNOS = {errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE}


def classify_error(exc: BaseException | None) -> FailureReason:
    """Map a connect/read error to a failure reason."""
    if isinstance(exc, TimeoutError):
        return FailureReason.TIMEOUT
    if isinstance(exc, OSError):
        if exc.errno in _FD_ERRNOS:
            return FailureReason.FD_LIMIT
        if exc.errno in _REFUSED_ERRNOS:
            return FailureReason.REFUSED
        if exc.errno in _RESET_ERRNOS:
            return FailureReason.RESET
        if exc.errno == errno.ETIMEDOUT:
            return FailureReason.TIMEOUT
    return FailureReason.OTHER


class GreetingKind(Enum):
    OK = "ok"
    BUSY = "busy"
    BAD = "bad"


def parse_greeting(line: bytes, prefix: str = DEFAULT_GREETING_PREFIX) -> tuple[GreetingKind, str]:
    """One greeting line (newline optional) -> (kind, backend name or "")."""
    words = line.decode("utf-8", "replace").split()
    if len(words) >= 2 and words[0] == prefix:
        return GreetingKind.OK, words[1]
    if words and words[0] == "BUSY":
        return GreetingKind.BUSY, words[1] if len(words) > 1 else ""
    return GreetingKind.BAD, ""


def echo_plan(rate_kbps: float, udp: bool) -> tuple[int, float]:
    """(bytes per send, seconds between sends) for one client; (0, inf) = no traffic.

    About one second of traffic per send, clamped to the chunk bounds; the interval then
    follows from the rate. UDP at rate 0 still sends a small keepalive.
    """
    low, high = UDP_CHUNK if udp else TCP_CHUNK
    if rate_kbps <= 0:
        return (low, UDP_KEEPALIVE_S) if udp else (0, math.inf)
    rate = rate_kbps * 1000 / 8
    chunk = min(high, max(low, round(rate)))
    return chunk, chunk / rate


def _payload(index: int, seq: int, size: int) -> bytes:
    offset = (index * 7919 + seq * 104729) % (len(_PATTERN) - size)
    return _PATTERN[offset : offset + size]


def _udp_payload(index: int, seq: int, size: int) -> bytes:
    return seq.to_bytes(_SEQ_BYTES, "big") + _payload(index, seq, size - _SEQ_BYTES)


# ------------------------------------------------------------------------- fd limit


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


# --------------------------------------------------------------------------- clients


class _State(Enum):
    CONNECTING = 1
    GREETING = 2
    ESTABLISHED = 3
    DONE = 4


class _Client:
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

    def __init__(self, run: _Run, index: int) -> None:
        self.run = run
        self.index = index
        self.state = _State.CONNECTING
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
        if self.state is _State.ESTABLISHED:
            self.drop(DropReason.TIMEOUT, "echo not back in time")
        elif self.state in (_State.CONNECTING, _State.GREETING):
            what = "connect" if self.state is _State.CONNECTING else "greeting"
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
        self.state = _State.ESTABLISHED
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
        if self.state in (_State.DONE, _State.ESTABLISHED):
            return
        self.state = _State.DONE
        if self.task is not None:
            self.task.cancel()  # no-op once the connect is done
            self.task = None
        self.run.pending.discard(self)
        self.run.failed += 1
        self.run.note(reason, detail)
        self.run.record(self.result(Outcome.FAILED, reason.value))
        self.close(abort=True)

    def drop(self, reason: DropReason, detail: str = "") -> None:
        if self.state is not _State.ESTABLISHED or self.run.closing:
            return
        self._end()
        self.run.dropped += 1
        self.run.note(reason, detail)
        self.run.record(self.result(Outcome.DROPPED, reason.value))
        self.close(abort=True)

    def finish(self) -> None:
        """The run is over: close gracefully, counted as held to the end."""
        if self.state is not _State.ESTABLISHED:
            return
        self._end()
        self.run.record(self.result(Outcome.OK, None))
        self.close(abort=False)

    def cancel(self) -> None:
        """A stop ended the run while this client was still connecting."""
        if self.state not in (_State.CONNECTING, _State.GREETING):
            return
        self.state = _State.DONE
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.run.pending.discard(self)
        self.run.record(self.result(Outcome.CANCELLED, None))
        self.close(abort=True)

    def _end(self) -> None:
        self.state = _State.DONE
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


class _TcpClient(_Client, asyncio.Protocol):
    __slots__ = ("expect", "expect_pos", "next_send")

    def __init__(self, run: _Run, index: int) -> None:
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
        if self.state is not _State.CONNECTING:  # timed out meanwhile
            self.close(abort=True)
            return
        self.state = _State.GREETING

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.live.discard(self)
        if self.state is _State.GREETING:
            if exc is None:
                self.fail(FailureReason.RESET, "closed before the greeting")
            else:
                self.on_connect_error(exc)
        elif self.state is _State.ESTABLISHED:
            reason = DropReason.EOF if exc is None else DropReason.RESET
            self.drop(reason, "connection lost" if exc is None else f"{exc}")

    def eof_received(self) -> bool | None:
        if self.state is _State.GREETING:
            if self.buf:
                self.fail(FailureReason.BAD_GREETING, f"closed after {bytes(self.buf[:80])!r}")
            else:
                self.fail(FailureReason.RESET, "closed before the greeting")
        elif self.state is _State.ESTABLISHED:
            self.drop(DropReason.EOF, "station closed the connection")
        return False

    def data_received(self, data: bytes) -> None:
        if self.state is _State.ESTABLISHED:
            self._on_echo(data)
        elif self.state is _State.GREETING:
            self.buf += data
            end = self.buf.find(b"\n")
            if end < 0:
                if len(self.buf) > GREETING_LIMIT:
                    self.fail(FailureReason.BAD_GREETING, "first line too long")
                return
            rest = bytes(self.buf[end + 1 :])
            self.on_greeting(bytes(self.buf[:end]))
            self.buf = bytearray()
            if rest and self.state is _State.ESTABLISHED:
                self._on_echo(rest)  # nothing was sent yet: a mismatch

    def start_traffic(self) -> None:
        if self.run.chunk > 0:
            self.timer = self.run.loop.call_later(
                self.run.rng.random() * self.run.interval, self._send
            )

    def _send(self) -> None:
        self.timer = None
        run = self.run
        if self.state is not _State.ESTABLISHED or run.closing:
            return
        now = run.loop.time()
        self.expect = _payload(self.index, self.seq, run.chunk)
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


class _UdpClient(_Client, asyncio.DatagramProtocol):
    __slots__ = (
        "datagrams_lost",
        "datagrams_received",
        "datagrams_sent",
        "hello_at",
        "outstanding",
    )

    def __init__(self, run: _Run, index: int) -> None:
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
        if self.state is not _State.CONNECTING:
            self.close(abort=True)
            return
        self.state = _State.GREETING
        self._hello()

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.live.discard(self)

    def _hello(self) -> None:
        self.hello_at = self.run.loop.time()
        cast(asyncio.DatagramTransport, self.transport).sendto(UDP_HELLO)

    def error_received(self, exc: Exception) -> None:
        if self.state is _State.GREETING:
            self.on_connect_error(exc)
        elif self.state is _State.ESTABLISHED:
            self.drop(DropReason.RESET, f"{type(exc).__name__}: {exc}")

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.state is _State.ESTABLISHED:
            self._on_echo(data)
        elif self.state is _State.GREETING:
            if data == UDP_HELLO:
                # The station already holds a session for this source address: our greeting
                # was lost, or the source port was reused within its UDP idle timeout.
                self.fail(FailureReason.BAD_GREETING, "hello echoed: station had a stale session")
            else:
                self.on_greeting(data[:GREETING_LIMIT])

    def tick(self, now: float) -> None:
        super().tick(now)
        if self.state is _State.GREETING and now - self.hello_at >= UDP_HELLO_RETRY_S:
            self._hello()
        elif self.state is _State.ESTABLISHED:
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
        if self.state is not _State.ESTABLISHED or run.closing:
            return
        now = run.loop.time()
        seq = self.seq
        self.seq += 1
        payload = _udp_payload(self.index, seq, run.chunk)
        self.outstanding[seq] = now
        self.datagrams_sent += 1
        self.bytes_sent += len(payload)
        cast(asyncio.DatagramTransport, self.transport).sendto(payload)
        jitter = 1 - JITTER + 2 * JITTER * run.rng.random()
        self.timer = run.loop.call_later(run.interval * jitter, self._send)

    def _on_echo(self, data: bytes) -> None:
        if len(data) > _SEQ_BYTES:
            seq = int.from_bytes(data[:_SEQ_BYTES], "big")
            if seq in self.outstanding and data == _udp_payload(self.index, seq, len(data)):
                del self.outstanding[seq]
                self.datagrams_received += 1
                self.bytes_received += len(data)
                return
        kind, _ = parse_greeting(data[:GREETING_LIMIT], self.run.spec.greeting_prefix)
        if kind is not GreetingKind.BAD:
            self.drop(DropReason.RESET, "the station greeted again: it lost our session")
        # Anything else is a late echo already counted lost, or an echoed hello: ignore.

    def finish_udp(self, now: float) -> None:
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


# --------------------------------------------------------------------------- the run


class _Run:
    """Everything one run shares; touched only from the event loop."""

    def __init__(
        self, spec: LoadSpec, loop: asyncio.AbstractEventLoop, family: int, ip: str
    ) -> None:
        self.spec = spec
        self.loop = loop
        self.family = family
        self.ip = ip
        self.t0 = loop.time()
        self.chunk, self.interval = echo_plan(spec.rate_kbps, spec.udp)
        self.loss_after = min(UDP_LOSS_AFTER_S, spec.echo_timeout_s)
        self.rng = random.Random()
        self.pending: set[_Client] = set()  # connecting or awaiting the greeting
        self.established: set[_Client] = set()
        self.live: set[_Client] = set()  # transport open
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
            log.debug("loadtest first %s: %s", reason, detail)

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
        client: _Client = _UdpClient(self, index) if self.spec.udp else _TcpClient(self, index)
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
        return any(isinstance(c, _UdpClient) and c.outstanding for c in self.established)

    def finish_all(self) -> None:
        now = self.loop.time()
        for client in list(self.established):
            if isinstance(client, _UdpClient):
                client.finish_udp(now)
            else:
                client.finish()


async def _launch(run: _Run, stop_at: float) -> None:
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


async def _sweep(run: _Run) -> None:
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


async def _progress(run: _Run, progress: Callable[[Snapshot], None]) -> None:
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
) -> LoadReport:
    """Run the load described by ``spec`` and return its report.

    Ends at ``spec.duration_s`` (earlier when no client is left connecting or connected, or
    when ``stop`` is set: then the report is partial and ``stopped_early``), and in any case
    by ``duration_s + grace_s``. Every socket is closed on return, also on cancellation.
    ``progress`` gets a Snapshot about once a second and once at the end.

    Raises:
        BadInput: the fd limit cannot fit the clients, or the target name does not resolve.
    """
    ensure_fd_limit(spec.clients)
    loop = asyncio.get_running_loop()
    family, ip = await _resolve(loop, spec)
    stop = stop if stop is not None else asyncio.Event()
    cpu0 = time.process_time()
    run = _Run(spec, loop, family, ip)
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
        cpu_s=time.process_time() - cpu0,
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


def front_target(settings: Settings, proto: Proto = Proto.TCP, *, fix: str) -> tuple[str, int]:
    """Where a load test or a drill connects by default: the first front listener of `proto`,
    on loopback when it binds all. Raises BadInput, ending in `fix`, when there is none."""
    target = first_listener(settings, proto) if settings.front.enabled else None
    if target is None:
        raise BadInput(
            f"no {proto.value} front listener to load (front.kind = {settings.front.kind!r}); "
            + fix
        )
    return target

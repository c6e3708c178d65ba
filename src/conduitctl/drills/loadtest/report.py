"""What a load run found: per-client results, progress snapshots, and the report built
from them (pure: percentiles, balance, failure and drop counts by reason)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any

from conduitctl.drills.loadtest.spec import LoadSpec


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

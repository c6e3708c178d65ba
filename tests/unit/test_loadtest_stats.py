"""The pure parts of the load generator: statistics, parsing, report assembly, fd limit."""

from __future__ import annotations

import errno
import math
import resource

import pytest

from conduitctl.drills.loadtest import (
    FD_HEADROOM,
    ClientResult,
    DropReason,
    FailureReason,
    GreetingKind,
    LoadSpec,
    Outcome,
    balance_ratio,
    build_report,
    classify_error,
    default_ramp,
    echo_plan,
    ensure_fd_limit,
    max_failed_exceeded,
    parse_greeting,
    parse_target,
    percentile,
    percentiles,
)
from conduitctl.errors import BadInput

# ---------------------------------------------------------------------------- percentile


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([5.0], 50, 5.0),
        ([5.0], 99, 5.0),
        ([1, 2, 3, 4], 50, 2),  # rank ceil(2) = 2
        ([1, 2, 3, 4], 51, 3),  # rank ceil(2.04) = 3
        ([1, 2, 3, 4], 100, 4),
        ([1, 2, 3, 4], 0, 1),
        ([4, 1, 3, 2], 75, 3),  # unsorted input is sorted first
        (list(range(1, 21)), 95, 19),  # 0.95 * 20 = 19 exactly, no float drift
        (list(range(1, 101)), 99, 99),
        (list(range(1, 1001)), 99.9, 999),  # exact arithmetic, not 1000
        ([15, 20, 35, 40, 50], 30, 20),  # the textbook nearest-rank example
        ([15, 20, 35, 40, 50], 40, 20),
        ([15, 20, 35, 40, 50], 50, 35),
    ],
)
def test_percentile_nearest_rank(values: list[float], p: float, expected: float) -> None:
    assert percentile(values, p) == expected


def test_percentiles_one_sort_many_ps() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentiles(values, (50, 95, 99, 100)) == [50.0, 95.0, 99.0, 100.0]


@pytest.mark.parametrize(("values", "p"), [([], 50), ([1.0], -1), ([1.0], 100.5)])
def test_percentile_rejects_empty_and_out_of_range(values: list[float], p: float) -> None:
    with pytest.raises(ValueError):
        percentile(values, p)


# ------------------------------------------------------------------------- balance ratio


@pytest.mark.parametrize(
    ("per_backend", "expected"),
    [
        ({}, None),
        ({"a": 0}, None),
        ({"a": 10}, 1.0),
        ({"a": 10, "b": 10}, 1.0),
        ({"a": 30, "b": 10, "c": 20}, 3.0),
        ({"a": 30, "b": 0, "c": 15}, 2.0),  # a backend that got nothing is not in the ratio
    ],
)
def test_balance_ratio(per_backend: dict[str, int], expected: float | None) -> None:
    assert balance_ratio(per_backend) == expected


# ------------------------------------------------------------------- parsing, classifying


@pytest.mark.parametrize(
    ("line", "kind", "name"),
    [
        (b"CONDUIT-SIM sim-a 0123abcd\n", GreetingKind.OK, "sim-a"),
        (b"CONDUIT-SIM sim-b", GreetingKind.OK, "sim-b"),
        (b"BUSY sim-a\n", GreetingKind.BUSY, "sim-a"),
        (b"BUSY\n", GreetingKind.BUSY, ""),
        (b"CONDUIT-SIM\n", GreetingKind.BAD, ""),
        (b"HTTP/1.1 400 Bad Request\r\n", GreetingKind.BAD, ""),
        (b"", GreetingKind.BAD, ""),
        (b"\xff\xfe garbage", GreetingKind.BAD, ""),
    ],
)
def test_parse_greeting(line: bytes, kind: GreetingKind, name: str) -> None:
    assert parse_greeting(line) == (kind, name)


def test_parse_greeting_custom_prefix() -> None:
    assert parse_greeting(b"MYPROXY b1 x\n", "MYPROXY") == (GreetingKind.OK, "b1")
    assert parse_greeting(b"CONDUIT-SIM b1 x\n", "MYPROXY")[0] is GreetingKind.BAD


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), FailureReason.REFUSED),
        (OSError(errno.EHOSTUNREACH, "no route"), FailureReason.REFUSED),
        (TimeoutError(), FailureReason.TIMEOUT),
        (OSError(errno.ETIMEDOUT, "timed out"), FailureReason.TIMEOUT),
        (ConnectionResetError(errno.ECONNRESET, "reset"), FailureReason.RESET),
        (BrokenPipeError(errno.EPIPE, "pipe"), FailureReason.RESET),
        (OSError(errno.EMFILE, "too many open files"), FailureReason.FD_LIMIT),
        (OSError(errno.ENFILE, "file table overflow"), FailureReason.FD_LIMIT),
        (OSError(errno.EADDRNOTAVAIL, "no local port"), FailureReason.OTHER),
        (RuntimeError("bug"), FailureReason.OTHER),
        (None, FailureReason.OTHER),
    ],
)
def test_classify_error(exc: BaseException | None, reason: FailureReason) -> None:
    assert classify_error(exc) is reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8443", ("127.0.0.1", 8443)),
        ("localhost:1", ("localhost", 1)),
        ("[::1]:443", ("::1", 443)),
        (" 192.0.2.1:65535 ", ("192.0.2.1", 65535)),  # TEST-NET-1: parsed, never dialled
    ],
)
def test_parse_target(text: str, expected: tuple[str, int]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    "text",
    ["127.0.0.1", ":443", "127.0.0.1:", "127.0.0.1:0", "h:70000", "h:abc", "::1:443", "a b:1"],
)
def test_parse_target_rejects_malformed(text: str) -> None:
    with pytest.raises(BadInput, match="--target"):
        parse_target(text)


# -------------------------------------------------------------------------------- spec


def test_spec_from_target_and_default_ramp() -> None:
    spec = LoadSpec.from_target("127.0.0.1:9000", clients=10_000, duration_s=60)
    assert (spec.host, spec.port, spec.target) == ("127.0.0.1", 9000, "127.0.0.1:9000")
    assert spec.effective_ramp_s == default_ramp(spec) == 5.0  # clients / 2000
    short = LoadSpec("127.0.0.1", 1, clients=10_000, duration_s=8)
    assert short.effective_ramp_s == 2.0  # a quarter of the run at most
    assert LoadSpec("h", 1, clients=5, duration_s=8, ramp_s=0).effective_ramp_s == 0
    assert spec.grace_s == spec.connect_timeout_s + 5
    assert LoadSpec("::1", 5, clients=1, duration_s=1).target == "[::1]:5"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"clients": 0}, "--clients"),
        ({"duration_s": 0}, "--duration"),
        ({"duration_s": math.inf}, "--duration"),
        ({"rate_kbps": -1}, "--rate"),
        ({"port": 0}, "port"),
        ({"host": ""}, "host"),
        ({"ramp_s": 11}, "ramp_s"),
        ({"connect_timeout_s": 0}, "connect_timeout_s"),
        ({"greeting_prefix": "A B"}, "greeting_prefix"),
    ],
)
def test_spec_rejects_bad_values_naming_the_field(fields: dict[str, object], named: str) -> None:
    base: dict[str, object] = {"host": "127.0.0.1", "port": 1, "clients": 1, "duration_s": 10}
    with pytest.raises(BadInput, match=named):
        LoadSpec(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rate", "udp", "chunk", "interval"),
    [
        (0, False, 0, math.inf),  # hold only
        (32, False, 4000, 1.0),  # 4 KB/s: one 4 KB round trip a second
        (8, False, 1000, 1.0),
        (0.1, False, 64, 5.12),  # tiny rates: the minimum chunk, a longer interval
        (8000, False, 16384, 16384 / 1_000_000),  # large rates: capped chunks, more often
        (0, True, 16, 5.0),  # UDP hold: keepalive datagrams
        (32, True, 1200, 0.3),  # never more than 1200 bytes a datagram
        (0.5, True, 62, 0.992),
    ],
)
def test_echo_plan(rate: float, udp: bool, chunk: int, interval: float) -> None:
    got_chunk, got_interval = echo_plan(rate, udp)
    assert got_chunk == chunk
    assert got_interval == pytest.approx(interval)


# ----------------------------------------------------------------------- report assembly


def _ok(latency_ms: float, backend: str, at: float, sent: int = 100) -> ClientResult:
    return ClientResult(
        Outcome.OK,
        latency_s=latency_ms / 1000,
        connected_at_s=at,
        backend=backend,
        bytes_sent=sent,
        bytes_received=sent,
    )


def test_report_from_recorded_results() -> None:
    spec = LoadSpec("127.0.0.1", 9000, clients=10, duration_s=10, rate_kbps=8)
    results = [
        _ok(1, "a", 0.1),
        _ok(2, "a", 0.2),
        _ok(3, "a", 0.3),
        _ok(4, "b", 0.4),
        ClientResult(
            Outcome.DROPPED,
            DropReason.EOF.value,
            latency_s=0.010,
            connected_at_s=2.0,
            backend="b",
            bytes_sent=50,
            bytes_received=40,
        ),
        ClientResult(Outcome.FAILED, FailureReason.BUSY.value),
        ClientResult(Outcome.FAILED, FailureReason.BUSY.value),
        ClientResult(Outcome.FAILED, FailureReason.REFUSED.value),
        ClientResult(Outcome.FAILED, "something-new"),
        ClientResult(Outcome.CANCELLED),
    ]
    report = build_report(
        spec,
        results,
        duration_s=10.0,
        peak_open=5,
        cpu_s=2.5,
        error_examples={"busy": "BUSY from a"},
    )
    assert (report.attempted, report.connected, report.failed, report.cancelled) == (10, 5, 4, 1)
    assert report.failed_by_reason == {
        "refused": 1,
        "timeout": 0,
        "reset": 0,
        "busy": 2,
        "bad_greeting": 0,
        "fd_limit": 0,
        "other": 1,  # an unknown reason is counted, as other
    }
    assert report.failed_ratio == pytest.approx(0.4)
    assert report.sessions_dropped == 1
    assert report.dropped_by_reason["eof"] == 1
    assert report.per_backend == {"a": 3, "b": 2}
    assert (report.backends, report.balance_ratio) == (2, 1.5)
    # latencies 1, 2, 3, 4, 10 ms: nearest rank
    assert (report.latency.p50_ms, report.latency.p95_ms) == pytest.approx((3.0, 10.0))
    assert (report.latency.p99_ms, report.latency.max_ms) == pytest.approx((10.0, 10.0))
    assert report.throughput.bytes_sent == 450
    assert report.throughput.bytes_received == 440
    assert report.throughput.mbps == pytest.approx(440 * 8 / 1e6 / 10)
    assert report.ramp_s == 2.0  # last greeting at 2.0 s
    assert report.connections_per_second == pytest.approx(2.5)
    assert report.client_cpu_percent == pytest.approx(25.0)
    assert report.udp is None
    assert report.peak_open == 5

    doc = report.to_dict()
    assert doc["latency_ms"] == {"p50": 3.0, "p95": 10.0, "p99": 10.0, "max": 10.0}
    assert doc["throughput"]["bytes_received"] == 440
    assert doc["failed_by_reason"]["busy"] == 2
    assert doc["error_examples"] == {"busy": "BUSY from a"}
    assert doc["mode"] == "tcp" and doc["udp"] is None
    assert doc["balance_ratio"] == 1.5


def test_report_with_nothing_connected() -> None:
    spec = LoadSpec("127.0.0.1", 9, clients=3, duration_s=1)
    results = [ClientResult(Outcome.FAILED, FailureReason.REFUSED.value)] * 3
    report = build_report(spec, results, duration_s=0.05, peak_open=0)
    assert report.failed_by_reason["refused"] == 3
    assert report.failed_ratio == 1.0
    assert report.latency.p50_ms is None and report.to_dict()["latency_ms"]["max"] is None
    assert report.per_backend == {} and report.balance_ratio is None
    assert report.connections_per_second == 0.0
    assert max_failed_exceeded(report, 0.5)


def test_report_udp_loss_ratio() -> None:
    spec = LoadSpec("127.0.0.1", 9, clients=2, duration_s=1, udp=True, rate_kbps=8)
    results = [
        ClientResult(
            Outcome.OK,
            latency_s=0.001,
            connected_at_s=0.1,
            backend="a",
            datagrams_sent=10,
            datagrams_received=9,
            datagrams_lost=1,
        ),
        ClientResult(
            Outcome.OK,
            latency_s=0.001,
            connected_at_s=0.1,
            backend="a",
            datagrams_sent=10,
            datagrams_received=8,
            datagrams_lost=0,  # 2 still in flight when the run was stopped: neither
        ),
    ]
    report = build_report(spec, results, duration_s=1, peak_open=2)
    assert report.udp is not None
    assert (report.udp.datagrams_sent, report.udp.datagrams_lost) == (20, 1)
    assert report.udp.loss_ratio == pytest.approx(1 / 18)
    assert report.to_dict()["udp"]["loss_ratio"] == pytest.approx(1 / 18, abs=1e-6)


@pytest.mark.parametrize(
    ("failed", "attempted", "ratio", "exceeded"),
    [(0, 10, 0.0, False), (1, 10, 0.1, False), (2, 10, 0.1, True), (0, 0, 0.0, False)],
)
def test_max_failed_exceeded(failed: int, attempted: int, ratio: float, exceeded: bool) -> None:
    spec = LoadSpec("127.0.0.1", 9, clients=max(attempted, 1), duration_s=1)
    results = [ClientResult(Outcome.FAILED, "busy")] * failed + [_ok(1, "a", 0.1)] * (
        attempted - failed
    )
    report = build_report(spec, results, duration_s=1, peak_open=0)
    assert max_failed_exceeded(report, ratio) is exceeded


# ------------------------------------------------------------------------------ fd limit


class FakeLimits:
    def __init__(self, soft: int, hard: int, can_raise_hard: bool) -> None:
        self.soft, self.hard, self.can_raise_hard = soft, hard, can_raise_hard

    def get(self, kind: int) -> tuple[int, int]:
        assert kind == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def set(self, kind: int, limits: tuple[int, int]) -> None:
        soft, hard = limits
        if hard > self.hard and not self.can_raise_hard:
            raise ValueError("not allowed to raise maximum limit")
        self.soft, self.hard = soft, hard


def test_fd_limit_soft_raised_to_hard() -> None:
    limits = FakeLimits(1024, 20000, can_raise_hard=False)
    assert ensure_fd_limit(500, limits.get, limits.set) == 20000
    assert (limits.soft, limits.hard) == (20000, 20000)


def test_fd_limit_hard_raised_when_allowed() -> None:
    limits = FakeLimits(1024, 20000, can_raise_hard=True)
    assert ensure_fd_limit(30000, limits.get, limits.set) == 30000 + FD_HEADROOM
    assert limits.hard == 30000 + FD_HEADROOM


def test_fd_limit_too_low_is_bad_input_naming_the_fix() -> None:
    limits = FakeLimits(1024, 20000, can_raise_hard=False)
    with pytest.raises(BadInput) as caught:
        ensure_fd_limit(30000, limits.get, limits.set)
    message = str(caught.value)
    assert "20000" in message and "ulimit -n 30100" in message and "\n" not in message


def test_fd_limit_unlimited_hard() -> None:
    inf = resource.RLIM_INFINITY
    limits = FakeLimits(1024, inf, can_raise_hard=False)
    assert ensure_fd_limit(5000, limits.get, limits.set) == 5000 + FD_HEADROOM
    assert limits.hard == inf

"""TokenBucket and the per-client cap, with a fake clock."""

from __future__ import annotations

import pytest

from conduitctl.sim.config import bandwidth_bytes_per_second, per_client_rate
from conduitctl.sim.ratelimit import MIN_BURST, TokenBucket, default_burst, read_size


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_unlimited_bucket_never_waits() -> None:
    bucket = TokenBucket(None)
    assert bucket.take(10**9) == 0
    assert bucket.try_take(10**9)


def test_take_within_burst_is_free_then_waits_for_the_debt() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000.0, burst=500.0, clock=clock)
    assert bucket.take(500) == 0
    # 300 bytes more with an empty bucket at 1000 B/s: 0.3 s.
    assert bucket.take(300) == pytest.approx(0.3)
    clock.now += 0.3
    assert bucket.tokens == pytest.approx(0, abs=1e-6)


def test_long_run_rate_is_exact_whatever_the_chunk_sizes() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10_000.0, burst=1000.0, clock=clock)
    sent = 0
    for chunk in [700, 3000, 50, 12_000, 1, 4096] * 20:
        clock.now += bucket.take(chunk)  # the caller sleeps as told
        sent += chunk
    elapsed = clock.now - 100.0
    assert sent / elapsed == pytest.approx(10_000, rel=0.05)


def test_refill_is_capped_at_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000.0, burst=200.0, clock=clock)
    clock.now += 3600
    assert bucket.tokens == 200


def test_try_take_drops_only_while_in_debt() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000.0, burst=100.0, clock=clock)
    assert bucket.try_take(1500)  # allowed: not in debt yet, goes to -1400
    assert not bucket.try_take(1)
    clock.now += 1.4
    assert bucket.try_take(1)


@pytest.mark.parametrize("rate", [0, -5])
def test_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate)


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(None, float("inf")), (1000.0, MIN_BURST), (1_000_000.0, 100_000.0)],
)
def test_default_burst(rate: float | None, burst: float) -> None:
    assert default_burst(rate) == burst


@pytest.mark.parametrize(
    ("rate", "size"), [(None, 65536), (1000.0, MIN_BURST), (100_000.0, 10_000), (10**9, 65536)]
)
def test_read_size_is_at_most_one_burst(rate: float | None, size: int) -> None:
    assert read_size(rate) == size


@pytest.mark.parametrize(
    ("mbps", "bps"), [(-1, 0), (0, 0), (5, 625_000), (40, 5_000_000), (0.5, 62_500)]
)
def test_bandwidth_conversion_matches_conduit(mbps: float, bps: int) -> None:
    assert bandwidth_bytes_per_second(mbps) == bps


@pytest.mark.parametrize(
    ("bandwidth_bps", "max_clients", "kbps", "expected"),
    [
        (1_000_000, 5, None, 200_000),
        (0, 5, None, None),  # unlimited bandwidth
        (1_000_000, 0, None, None),
        (1_000_000, 5, 800, 100_000),  # explicit flag wins
        (0, 5, 8, 1000),
    ],
)
def test_per_client_rate(
    bandwidth_bps: int, max_clients: int, kbps: float | None, expected: float | None
) -> None:
    assert per_client_rate(bandwidth_bps, max_clients, kbps) == expected

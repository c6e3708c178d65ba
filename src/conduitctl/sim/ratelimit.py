"""A token bucket with an injected clock (stdlib only, no I/O)."""

from __future__ import annotations

import time
from collections.abc import Callable

# Burst of at least this many bytes so small rates still move whole reads; 100 ms of
# traffic otherwise, which keeps the echo smooth instead of bursty.
MIN_BURST = 4096
BURST_SECONDS = 0.1


class TokenBucket:
    """Bytes-per-second limiter. ``rate=None`` means unlimited.

    Tokens may go negative: a caller that takes more than it has gets told how long to wait
    (``take``), which keeps the long-run rate exact whatever the chunk sizes are.
    """

    def __init__(
        self,
        rate: float | None,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be > 0 or None, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else default_burst(rate)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        if self.rate is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def take(self, n: int) -> float:
        """Spend ``n`` bytes now; return the seconds to wait before sending them (0 if none)."""
        if self.rate is None:
            return 0.0
        self._refill()
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def try_take(self, n: int) -> bool:
        """Spend ``n`` bytes if the bucket is not in debt; False means drop (for datagrams)."""
        if self.rate is None:
            return True
        self._refill()
        if self._tokens < 0:
            return False
        self._tokens -= n
        return True


def default_burst(rate: float | None) -> float:
    if rate is None:
        return float("inf")
    return max(float(MIN_BURST), rate * BURST_SECONDS)


def read_size(rate: float | None, ceiling: int = 65536) -> int:
    """How much to read per chunk: no more than one burst, so one read never waits long."""
    if rate is None:
        return ceiling
    return max(1024, min(ceiling, int(default_burst(rate))))

"""Fault injection helpers: leak accounting and CPU burn split."""

from __future__ import annotations

import time

import pytest

from conduitctl.sim.faults import MIB, CpuBurner, MemoryLeak, burn_shares


def test_leak_rate_with_fractions_carried_over() -> None:
    leak = MemoryLeak(mb_per_s=1.0)
    added = sum(leak.tick(0.03) for _ in range(100))  # 3 s in small steps
    assert added == leak.leaked_bytes
    assert abs(added - 3 * MIB) <= 1


def test_leak_zero_time_adds_nothing() -> None:
    assert MemoryLeak(5).tick(0) == 0


@pytest.mark.parametrize(
    ("fraction", "shares"),
    [(0, []), (0.5, [0.5]), (1.0, [1.0]), (1.5, [0.75, 0.75]), (3, [1.0, 1.0, 1.0])],
)
def test_burn_shares_never_exceed_one_core_per_thread(fraction: float, shares: list[float]) -> None:
    assert burn_shares(fraction) == shares


def test_cpu_burner_burns_and_stops() -> None:
    burner = CpuBurner(0.5)
    start_cpu = time.thread_time()  # our own thread: should stay idle
    burner.start()
    time.sleep(0.3)
    burner.stop()
    for thread in burner._threads:
        thread.join(timeout=1)
        assert not thread.is_alive()
    assert time.thread_time() - start_cpu < 0.1

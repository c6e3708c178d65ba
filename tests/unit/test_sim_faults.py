"""Fault injection helpers: leak accounting and CPU burn split."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conduitctl.sim.config import SimConfig
from conduitctl.sim.faults import MIB, PAGE, CpuBurner, MemoryLeak, SessionMemory, burn_shares
from conduitctl.sim.server import active_faults


def test_leak_rate_with_fractions_carried_over() -> None:
    leak = MemoryLeak(mb_per_s=1.0)
    added = sum(leak.tick(0.03) for _ in range(100))  # 3 s in small steps
    assert added == leak.leaked_bytes
    assert abs(added - 3 * MIB) <= 1


def test_leak_zero_time_adds_nothing() -> None:
    assert MemoryLeak(5).tick(0) == 0


def test_session_memory_held_per_session_until_released() -> None:
    memory = SessionMemory(mb_per_session=2)
    first, second = memory.acquire(), memory.acquire()
    assert first is not None and second is not None
    assert len(first) == 2 * MIB
    assert memory.held_bytes == 4 * MIB
    # One byte written per page, so every page is resident, not just reserved.
    assert all(first[offset] == 1 for offset in range(0, len(first), PAGE))
    memory.release(first)
    assert first.closed
    assert memory.held_bytes == 2 * MIB
    memory.release(first)  # a second release of the same block changes nothing
    assert memory.held_bytes == 2 * MIB
    memory.release(second)
    assert memory.held_bytes == 0


@pytest.mark.parametrize("mb", [0, 1e-9])
def test_session_memory_off_holds_nothing(mb: float) -> None:
    memory = SessionMemory(mb)
    block = memory.acquire()
    assert block is None
    memory.release(block)
    assert memory.held_bytes == 0


def test_session_memory_fractional_mb() -> None:
    memory = SessionMemory(0.5)
    block = memory.acquire()
    assert block is not None and len(block) == MIB // 2 == memory.held_bytes
    memory.release(block)


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


def test_active_faults_spelled_as_flags() -> None:
    assert active_faults(SimConfig(data_dir=Path("d"))) == []
    cfg = SimConfig(data_dir=Path("d"), crash_after=0, session_mb=8, burn_cpu=0.5)
    assert active_faults(cfg) == ["--crash-after 0", "--session-mb 8", "--burn-cpu 0.5"]

"""The drills' waits on a fake clock: bounded by their timeouts, without sleeping for real."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from conduitctl.drills.chaos import AwaitOom, FleetHealth, wait_for_health
from conduitctl.drills.chaos.scenarios import POLL_S
from conduitctl.drills.clock import Clock
from conduitctl.errors import ConduitctlError
from conduitctl.events import Event, EventKind

T0 = 1_000_000.0  # unix seconds at the start


@dataclass
class FakeTime:
    """Wall and monotonic time that move only when something sleeps."""

    wall: float = T0
    mono: float = 0.0
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.wall += seconds
        self.mono += seconds

    def clock(self) -> Clock:
        return Clock(now=lambda: self.wall, monotonic=lambda: self.mono, sleep=self.sleep)


def test_wait_for_health_returns_the_first_fresh_healthy_tick():
    fake = FakeTime()
    verdicts = iter(
        [
            None,  # no tick yet
            FleetHealth(ts=T0 - 1, ok=False, problems=("c-1 unhealthy",)),
            FleetHealth(ts=T0 - 0.5, ok=True),  # healthy but not after `after`
            FleetHealth(ts=T0 + 0.6, ok=True),
        ]
    )
    found = wait_for_health(lambda: next(verdicts), 15.0, after=T0 - 0.5, clock=fake.clock())
    assert found == FleetHealth(ts=T0 + 0.6, ok=True)
    assert fake.slept == [POLL_S * 2] * 3


def test_wait_for_health_gives_up_at_its_timeout():
    fake = FakeTime()
    reads: list[float] = []

    def read() -> FleetHealth:
        reads.append(fake.mono)
        return FleetHealth(ts=fake.wall, ok=False, problems=("front not listening",))

    assert wait_for_health(read, 2.0, clock=fake.clock()) is None
    # Read every 2 * POLL_S until the timeout, in fake seconds; none read after it.
    assert 2.0 <= fake.mono <= 2.0 + POLL_S * 2
    assert len(reads) >= 10
    assert max(reads) < 2.0


def test_wait_for_health_stops_when_aborted():
    fake = FakeTime()
    assert wait_for_health(lambda: None, 60.0, aborted=lambda: True, clock=fake.clock()) is None
    assert fake.slept == []


class FakeStore:
    """store.events as AwaitOom reads it: a new batch per read."""

    def __init__(self, batches: list[list[Event]]) -> None:
        self.batches = batches
        self.reads: list[dict[str, Any]] = []

    def events(self, **query: Any) -> list[Event]:
        self.reads.append(query)
        return self.batches.pop(0) if self.batches else []


def test_await_oom_finds_its_victims_kill_and_dates_the_fault_by_it():
    fake = FakeTime()
    store = FakeStore(
        [
            [],
            [Event(ts=T0 + 0.3, kind=EventKind.OOM, backend="c-2")],  # not the one leaking
            [Event(ts=T0 + 0.5, kind=EventKind.DEATH, backend="c-1", data={"oom": True})],
        ]
    )
    waiter = AwaitOom(store, T0, 10.0, lambda: False, only="c-1", clock=fake.clock())
    assert waiter.inject() == "c-1 OOM-killed (its own leak, --leak-mb-per-s)"
    assert waiter.victims == ["c-1"]
    assert waiter.at == T0 + 0.5  # the kernel's kill, not when the drill saw it
    assert all(read["since"] == T0 for read in store.reads)
    assert fake.mono == pytest.approx(2 * POLL_S * 2)


def test_await_oom_times_out_naming_the_fix():
    fake = FakeTime()
    waiter = AwaitOom(FakeStore([]), T0, 5.0, lambda: False, clock=fake.clock())
    with pytest.raises(ConduitctlError, match="no backend was OOM-killed within 5s"):
        waiter.inject()
    assert 5.0 <= fake.mono <= 5.0 + POLL_S * 2

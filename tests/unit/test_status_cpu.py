"""`status` answered by the supervisor takes each backend's CPU rate from its last tick when
it has one of the same process, and samples (two readings a wait apart) only the others."""

from __future__ import annotations

from conduitctl.front.base import FrontStatus
from conduitctl.observe import fleet as observe_fleet
from conduitctl.observe.model import (
    BackendObservation,
    CpuReading,
    FrontObservation,
    HostObservation,
    Tick,
    cpu_readings,
)
from conduitctl.runtime.base import BackendStatus, State
from conduitctl.settings import parse_settings

CONFIG = """
[cluster]
name = "cpu"
containers = 2
runtime = "process"

[workload]
profile = "sim"
listen_port_base = 39100
metrics_port_base = 39200

[front]
kind = "none"
"""


class Runtime:
    """Two running backends whose CPU seconds grow by 0.05 per listing."""

    def __init__(self) -> None:
        self.listings = 0

    def backends(self) -> list[BackendStatus]:
        self.listings += 1
        return [
            BackendStatus(
                name=f"cpu-{i}",
                index=i,
                state=State.RUNNING,
                pid=100 + i,
                cpu_seconds=self.listings * 0.05,
                rss_bytes=1 << 20,
            )
            for i in (1, 2)
        ]


class Front:
    def status(self) -> FrontStatus:
        return FrontStatus(kind="none", running=False)


def collect(recent: dict[str, CpuReading] | None, monkeypatch) -> tuple[list, int]:
    monkeypatch.setattr(observe_fleet, "scrape_all", lambda targets, timeout: {})
    monkeypatch.setattr(observe_fleet, "tcp_probe", lambda *a: None)
    runtime = Runtime()
    view = observe_fleet.collect(parse_settings(CONFIG), runtime, Front(), recent)  # type: ignore[arg-type]
    return [b.cpu_percent for b in view.backends], runtime.listings


def test_readings_of_the_same_processes_need_no_sample(monkeypatch):
    recent = {"cpu-1": CpuReading(pid=101, cpu_percent=3.25), "cpu-2": CpuReading(102, 0.0)}
    cpus, listings = collect(recent, monkeypatch)
    assert cpus == [3.2, 0.0] and listings == 1


def test_a_restarted_backend_is_sampled_and_the_others_keep_their_reading(monkeypatch):
    # The stale reading is one a sample cannot give: 0.05 s of CPU over a window of at least
    # CPU_SAMPLE_S (0.1 s) is 50 % at most.
    recent = {"cpu-1": CpuReading(pid=101, cpu_percent=3.0), "cpu-2": CpuReading(999, 77.0)}
    cpus, listings = collect(recent, monkeypatch)
    assert listings == 2 and cpus[0] == 3.0
    assert cpus[1] is not None and 0 < cpus[1] <= 50.0


def test_without_readings_every_backend_is_sampled(monkeypatch):
    cpus, listings = collect(None, monkeypatch)
    assert listings == 2 and all(c is not None for c in cpus)


def tick(ts: float) -> Tick:
    def backend(i: int, **kw) -> BackendObservation:
        return BackendObservation(name=f"cpu-{i}", index=i, in_front=True, healthy=True, **kw)

    return Tick(
        ts=ts,
        backends=(
            backend(1, running=True, cpu_percent=1.5, cpu_pid=101),
            backend(2, running=True, cpu_percent=None, cpu_pid=None),  # not measured yet
            backend(3, running=False, cpu_percent=9.0, cpu_pid=103),  # died since
        ),
        host=HostObservation(0, 0, 0.0),
        front=FrontObservation(kind="none", running=False, listening=False),
    )


def test_the_last_ticks_readings_while_fresh():
    assert cpu_readings(None, 100.0, 3.0) is None  # no tick yet
    assert cpu_readings(tick(100.0), 101.0, 3.0) == {"cpu-1": CpuReading(101, 1.5)}
    assert cpu_readings(tick(100.0), 104.0, 3.0) is None  # stale: the loop is stuck
    assert cpu_readings(tick(100.0), 99.0, 3.0) is None  # from the future: a clock step

"""One tick's observations (plain values): what the daemon saw, for reconcile, history,
alerts and the metrics exporter alike."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BackendObservation:
    name: str
    index: int
    running: bool
    healthy: bool | None  # None: not probed yet
    in_front: bool  # False while drained or out for health
    restarts: int = 0  # restarts the supervisor made (counter)
    oom_kills: int = 0  # counter
    connected: int | None = None  # from /metrics
    connecting: int | None = None
    bytes_uploaded: float | None = None  # counters from /metrics
    bytes_downloaded: float | None = None
    cpu_percent: float | None = None  # of one core
    rss_bytes: int | None = None
    cpu_pid: int | None = None  # the process cpu_percent was measured on (None: not yet)
    memory_limit_bytes: int | None = None
    max_clients: int | None = None  # the value it runs with now (degradation may raise it)
    crash_looping: bool = False
    port_stolen: str | None = None  # another process holds one of its ports (the finding)


@dataclass(frozen=True)
class CpuReading:
    """A backend's CPU rate from the supervisor's last tick, and the process it belongs to."""

    pid: int
    cpu_percent: float  # of one core, over the supervisor's last interval


@dataclass(frozen=True)
class HostObservation:
    mem_total_bytes: int
    mem_available_bytes: int
    cpu_percent: float  # of the whole host, 0..100
    nic: str | None = None
    nic_rx_mbps: float | None = None
    nic_tx_mbps: float | None = None
    nic_speed_mbps: float | None = None


@dataclass(frozen=True)
class FrontObservation:
    kind: str  # nginx | haproxy | none
    running: bool
    listening: bool  # every served listener accepts
    reloads: int = 0  # counter
    accept_queue: dict[str, int] = field(default_factory=dict)  # listener -> queued connections
    accept_backlog: dict[str, int] = field(default_factory=dict)  # listener -> backlog size


@dataclass(frozen=True)
class Tick:
    ts: float  # unix seconds: one `now` per tick
    backends: tuple[BackendObservation, ...]
    host: HostObservation
    front: FrontObservation

    @property
    def steady(self) -> bool:
        """Nothing to watch closely: every backend running, healthy and in the front, and
        the front (if any) running and listening."""
        front_ok = self.front.kind == "none" or (self.front.running and self.front.listening)
        return front_ok and all(
            b.running and b.healthy is True and b.in_front for b in self.backends
        )


def cpu_readings(tick: Tick | None, now: float, max_age: float) -> dict[str, CpuReading] | None:
    """Each running backend's CPU rate at `tick`, for `status`; None without a tick, or
    with one older than `max_age` seconds (the supervisor is stuck)."""
    if tick is None or not 0 <= now - tick.ts <= max_age:
        return None
    return {
        b.name: CpuReading(pid=b.cpu_pid, cpu_percent=round(b.cpu_percent, 2))
        for b in tick.backends
        if b.running and b.cpu_pid is not None and b.cpu_percent is not None
    }

"""What the supervisor knows of each backend between ticks (`Slot`), how a slot reads as an
observation, and whose ports a tick looks at (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from conduitctl.fleet import BackendSpec
from conduitctl.observe.model import BackendObservation
from conduitctl.runtime.base import LaunchSpec
from conduitctl.supervise.health import Health
from conduitctl.supervise.restarts import RestartState

PORT_SWEEP_TICKS = 10  # every backend's ports, healthy ones included, once in this many


@dataclass
class Slot:
    """What the supervisor knows of one backend between ticks."""

    spec: LaunchSpec
    running: bool = False
    pid: int | None = None
    started_at: float | None = None
    health: Health = field(default_factory=Health)
    restart: RestartState = field(default_factory=RestartState)
    restarts: int = 0  # restarts made by the supervisor (a counter for metrics)
    oom_kills: int = 0
    cpu: tuple[float, float] | None = None  # (monotonic, cpu seconds) of the last sample
    cpu_percent: float | None = None
    cpu_pid: int | None = None  # the process cpu_percent was measured on
    rss: int | None = None
    values: dict[str, float] = field(default_factory=dict)
    max_override: int | None = None  # raised max clients while the fleet is degraded
    oom_baseline: int | None = None  # the runtime's OOM count when it last started
    # Not serving since (None: serving). Unlike health.since, the restarts of a crash loop
    # do not reset it: it is how long the fleet has been short of this backend.
    down_since: float | None = None
    stolen: str | None = None  # another process holds one of its ports: the finding
    silent: str | None = None  # missed the hang watch's greetings: for the next tick

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def effective_spec(self) -> LaunchSpec:
        """The spec it runs with: the configured one, or with raised max clients."""
        if self.max_override is None:
            return self.spec
        return replace(self.spec, backend=replace(self.backend, max_clients=self.max_override))

    @property
    def load(self) -> int:
        v = self.values
        return int(v.get("conduit_connected_clients", 0) + v.get("conduit_connecting_clients", 0))

    @property
    def backend(self) -> BackendSpec:
        return self.spec.backend

    def observation(self, *, in_front: bool) -> BackendObservation:
        """This backend as the tick records it (history, alerts, metrics)."""
        v = self.values
        return BackendObservation(
            name=self.name,
            index=self.backend.index,
            running=self.running,
            healthy=self.health.healthy,
            in_front=in_front,
            restarts=self.restarts,
            oom_kills=self.oom_kills,
            connected=_int(v.get("conduit_connected_clients")),
            connecting=_int(v.get("conduit_connecting_clients")),
            bytes_uploaded=v.get("conduit_bytes_uploaded"),
            bytes_downloaded=v.get("conduit_bytes_downloaded"),
            cpu_percent=self.cpu_percent,
            rss_bytes=self.rss,
            cpu_pid=self.cpu_pid if self.running else None,
            memory_limit_bytes=self.backend.memory_bytes,
            max_clients=self.max_override or self.backend.max_clients,
            crash_looping=self.restart.crash_loop,
            port_stolen=self.stolen,
        )


def port_suspects(slots: Mapping[str, Slot], *, sweep: bool, busy: set[str]) -> set[str]:
    """Whose ports to look at this tick. A running, healthy station holds its listeners, and
    nobody can bind a port that is held: it is looked at only on a `sweep` (every
    PORT_SWEEP_TICKS ticks). The others (dead, restarting, failing, already stolen) every
    tick: that is when another process can take their ports. `busy` (held by an operator
    command, or drained) is left alone: its new process is not the supervisor's to judge."""
    if sweep:
        return set(slots) - busy
    doubtful = {n for n, s in slots.items() if not (s.running and s.health.healthy) or s.stolen}
    return doubtful - busy


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)

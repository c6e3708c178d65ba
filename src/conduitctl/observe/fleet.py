"""One look at the whole fleet: runtime state, workload stats from /metrics, CPU, RSS, front.

Workload numbers come from each backend's metrics endpoint, never from grepping logs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from conduitctl.fleet import desired_backends
from conduitctl.front.base import Front, FrontStatus
from conduitctl.observe.model import CpuReading
from conduitctl.observe.owner import find_stolen
from conduitctl.observe.probe import tcp_probe
from conduitctl.observe.scrape import Scrape, scrape_all
from conduitctl.runtime.base import BackendStatus, Runtime, State
from conduitctl.settings import Settings
from conduitctl.workloads import PROFILES, HealthSource

CPU_SAMPLE_S = 0.1  # two CPU samples this far apart give a rate, not a lifetime average


@dataclass(frozen=True)
class BackendView:
    name: str
    index: int
    state: str
    health: str  # healthy | unhealthy | stopped | missing | extra
    health_detail: str | None
    connected: int | None
    connecting: int | None
    cpu_percent: float | None
    rss_bytes: int | None
    restarts: int
    uptime_s: float | None
    exit_code: int | None
    oom_killed: bool
    pid: int | None
    container_id: str | None
    listen: str | None
    metrics: str


@dataclass(frozen=True)
class FleetView:
    cluster: str
    runtime: str
    profile: str
    backends: list[BackendView]
    front: FrontStatus
    totals: dict[str, float] = field(default_factory=dict)
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "cluster": self.cluster,
            "runtime": self.runtime,
            "profile": self.profile,
            "backends": [b.__dict__ for b in self.backends],
            "front": self.front.to_dict(),
            "totals": self.totals,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


def _health(settings: Settings, status: BackendStatus, scrape: Scrape | None) -> tuple[str, str]:
    if status.state == State.MISSING:
        return "missing", "not created (conduitctl up)"
    if status.state != State.RUNNING:
        why = "oom-killed" if status.oom_killed else f"exit code {status.exit_code}"
        return "stopped", why if status.exit_code is not None or status.oom_killed else "stopped"
    profile = PROFILES[settings.workload.profile]
    if profile.health == HealthSource.METRICS:
        if scrape is None or not scrape.ok:
            return "unhealthy", f"metrics: {scrape.error if scrape else 'not scraped'}"
        return ("healthy", "live") if scrape.live else ("unhealthy", "conduit_is_live = 0")
    return "unknown", "probed below"


def collect(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    recent_cpu: Mapping[str, CpuReading] | None = None,
) -> FleetView:
    """The fleet as it is now. CPU rates come from `recent_cpu` (the supervisor's last tick)
    for each running backend it has a reading of the same process for; the others are sampled
    twice CPU_SAMPLE_S apart, and only when there are any."""
    started = time.monotonic()
    recent_cpu = recent_cpu or {}
    first = {s.name: s for s in runtime.backends()}
    desired = {b.name: b for b in desired_backends(settings)}
    targets = {
        name: (b.host, b.metrics_port)
        for name, b in desired.items()
        if name in first and first[name].state == State.RUNNING
    }
    scrapes = scrape_all(targets, timeout=min(settings.health.timeout, 0.5))
    profile = PROFILES[settings.workload.profile]
    probes = {}
    if profile.health == HealthSource.TCP:
        for name, b in desired.items():
            if b.listen_port is not None and name in targets:
                probes[name] = tcp_probe(b.host, b.listen_port, settings.health.timeout)
    stolen = find_stolen(settings, [(desired[n], first[n].pid) for n in targets])
    front_status = front.status()
    second, window = first, 0.0
    if any(_known_cpu(recent_cpu, s) is None for s in first.values() if s.state == State.RUNNING):
        pause = CPU_SAMPLE_S - (time.monotonic() - started)
        if pause > 0:
            time.sleep(pause)
        sampled_at = time.monotonic()
        second = {s.name: s for s in runtime.backends()}
        window = sampled_at - started

    views = []
    now = time.time()
    for name in sorted(set(first) | set(desired), key=lambda n: int(n.rsplit("-", 1)[1])):
        status = (
            second.get(name)
            or first.get(name)
            or BackendStatus(name=name, index=int(name.rsplit("-", 1)[1]), state=State.MISSING)
        )
        before = first.get(name)
        cpu = _known_cpu(recent_cpu, status)
        if cpu is None and window and before:
            cpu = _rate(before.cpu_seconds, status.cpu_seconds, window)
        scrape = scrapes.get(name)
        health, detail = _health(settings, status, scrape)
        detail_text: str | None = detail
        if name in probes:
            probe = probes[name]
            health, detail_text = ("healthy" if probe.ok else "unhealthy"), probe.detail
        if name in stolen:  # whoever answered, it was not our station
            health, detail_text = "unhealthy", stolen[name]
        if name not in desired:
            health, detail_text = "extra", "not in the config (conduitctl up removes it)"
        spec = desired.get(name)
        values = scrape.values if scrape and scrape.ok else {}
        views.append(
            BackendView(
                name=name,
                index=status.index,
                state=status.state.value,
                health=health,
                health_detail=detail_text,
                connected=_int(values.get("conduit_connected_clients")),
                connecting=_int(values.get("conduit_connecting_clients")),
                cpu_percent=round(cpu, 1) if cpu is not None else None,
                rss_bytes=status.rss_bytes,
                restarts=status.restart_count,
                uptime_s=round(now - status.started_at, 1) if status.started_at else None,
                exit_code=status.exit_code,
                oom_killed=status.oom_killed,
                pid=status.pid,
                container_id=status.container_id,
                listen=spec.listen_addr if spec else None,
                metrics=spec.metrics_addr if spec else "",
            )
        )
    totals = {
        "backends": len(desired),
        "running": sum(v.state == State.RUNNING.value for v in views),
        "healthy": sum(v.health == "healthy" for v in views),
        "connected": sum(v.connected or 0 for v in views),
        "connecting": sum(v.connecting or 0 for v in views),
        "cpu_percent": round(sum(v.cpu_percent or 0 for v in views), 1),
        "rss_bytes": sum(v.rss_bytes or 0 for v in views),
        "restarts": sum(v.restarts for v in views),
    }
    return FleetView(
        cluster=settings.cluster.name,
        runtime=settings.cluster.runtime,
        profile=settings.workload.profile,
        backends=views,
        front=front_status,
        totals=totals,
        elapsed_ms=(time.monotonic() - started) * 1000,
    )


def _rate(before: float | None, after: float | None, window: float) -> float | None:
    """% of one core between two CPU-seconds readings `window` seconds apart."""
    if before is None or after is None:
        return None
    return max(after - before, 0.0) / window * 100


def _known_cpu(recent: Mapping[str, CpuReading], status: BackendStatus) -> float | None:
    """The supervisor's reading, if it is of this very process (a restart makes it stale)."""
    reading = recent.get(status.name)
    if reading is None or status.state != State.RUNNING or reading.pid != status.pid:
        return None
    return reading.cpu_percent


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)

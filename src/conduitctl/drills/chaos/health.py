"""The fleet as the supervisor's history shows it: the latest tick judged, the wait for a
healthy one, and what cpu and memory drills read (pure but for the injected reads)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from conduitctl.drills.chaos.scenarios import POLL_S
from conduitctl.drills.clock import REAL_CLOCK, Clock
from conduitctl.store import HistoryPoint


@dataclass(frozen=True)
class FleetHealth:
    """The supervisor's latest tick, judged: every backend running, healthy and in the front,
    the front running and listening."""

    ts: float
    ok: bool
    problems: tuple[str, ...] = ()


def fleet_health(
    points: Sequence[HistoryPoint], backends: Sequence[str], front: bool
) -> FleetHealth | None:
    """From raw history points: the newest tick's verdict, None when there is no tick."""
    ticks = [p.ts for p in points if p.kind == "backend"]
    if not ticks:
        return None
    ts = max(ticks)
    at = {p.series: p for p in points if p.ts == ts}
    problems: list[str] = []
    for name in backends:
        point = at.get(name)
        if point is None:
            problems.append(f"{name} not recorded")
            continue
        v = point.values
        if v.get("running") != 1:
            problems.append(f"{name} not running")
        elif v.get("healthy") != 1:
            problems.append(f"{name} {'unprobed' if v.get('healthy') is None else 'unhealthy'}")
        elif front and v.get("in_front") != 1:
            problems.append(f"{name} out of the front")
    if front:
        fp = at.get("front")
        if fp is None or fp.values.get("running") != 1:
            problems.append("front not running")
        elif fp.values.get("listening") != 1:
            problems.append("front not listening")
    return FleetHealth(ts=ts, ok=not problems, problems=tuple(problems))


def resource_summary(points: Sequence[HistoryPoint], since: float, until: float) -> dict[str, Any]:
    """CPU (percent of one core) and RSS per backend, host CPU and available memory, over
    raw points in [since, until]: what cpu and memory drills read, since alerts on them
    need minutes to fire."""
    per: dict[str, dict[str, list[float]]] = {}
    host_cpu: list[float] = []
    host_avail: list[float] = []
    for p in points:
        if not since <= p.ts <= until:
            continue
        if p.kind == "backend":
            series = per.setdefault(p.series, {"cpu": [], "rss": []})
            for key, metric in (("cpu", "cpu_percent"), ("rss", "rss_bytes")):
                value = p.values.get(metric)
                if value is not None:
                    series[key].append(float(value))
        elif p.kind == "host":
            if p.values.get("cpu_percent") is not None:
                host_cpu.append(float(p.values["cpu_percent"]))  # type: ignore[arg-type]
            if p.values.get("mem_available_bytes") is not None:
                host_avail.append(float(p.values["mem_available_bytes"]))  # type: ignore[arg-type]

    def stats(values: list[float]) -> dict[str, float | None]:
        if not values:
            return {"avg": None, "max": None}
        return {"avg": round(sum(values) / len(values), 1), "max": round(max(values), 1)}

    return {
        "backend_cpu_percent": {name: stats(s["cpu"]) for name, s in sorted(per.items())},
        "backend_rss_max_bytes": {
            name: int(max(s["rss"])) if s["rss"] else None for name, s in sorted(per.items())
        },
        "host_cpu_percent": stats(host_cpu),
        "host_mem_available_min_bytes": int(min(host_avail)) if host_avail else None,
    }


def wait_for_health(
    read: Callable[[], FleetHealth | None],
    timeout: float,
    *,
    after: float = 0.0,
    aborted: Callable[[], bool] = lambda: False,
    clock: Clock = REAL_CLOCK,
) -> FleetHealth | None:
    """The first fresh verdict (ts > `after`) showing the whole fleet healthy, read every
    2 * POLL_S for at most `timeout` seconds; None when none came (or `aborted`)."""
    deadline = clock.monotonic() + timeout
    while clock.monotonic() < deadline and not aborted():
        last = read()
        if last is not None and last.ok and last.ts > after:
            return last
        clock.sleep(POLL_S * 2)
    return None

"""The drill's verdict (pure): each victim's timeline from the supervisor's events, the
collateral, the load's figures, alerts and notifications, and whether the fleet recovered."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conduitctl.drills.chaos.scenarios import DEFAULT_TIMEOUT_S, FRONT
from conduitctl.drills.loadtest import LoadReport
from conduitctl.events import Event, EventKind

_DETECT_KINDS = frozenset({EventKind.DEATH, EventKind.OOM, EventKind.FRONT_OUT})
_COLLATERAL_KINDS = frozenset(
    {EventKind.DEATH, EventKind.OOM, EventKind.FRONT_OUT, EventKind.RESTART}
)


def is_unhealthy(e: Event) -> bool:
    return e.kind == EventKind.HEALTH and e.data.get("healthy") is False


def _healthy(e: Event) -> bool:
    return e.kind == EventKind.HEALTH and e.data.get("healthy") is True


@dataclass(frozen=True)
class VictimTimes:
    """One victim's timeline, seconds from the fault (None: it did not happen)."""

    name: str
    detect_s: float | None  # first death / OOM / unhealthy / front_out / front_down
    detected_by: str | None  # the event kind that detected it
    front_out_s: float | None
    recover_s: float | None  # back in the front (no front: healthy again) / front restarted
    restarts: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "detect_s": _r(self.detect_s),
            "detected_by": self.detected_by,
            "front_out_s": _r(self.front_out_s),
            "recover_s": _r(self.recover_s),
            "restarts": self.restarts,
        }


def victim_times(
    events: Sequence[Event],
    t_fault: float,
    name: str,
    *,
    front: bool = True,
    front_listening_at: float | None = None,
) -> VictimTimes:
    """Pure: a victim's detect / out / recover times from the events at or after t_fault.

    A backend recovers when it is back in the front (a fleet without a front: healthy
    again) after leaving it; the front (`FRONT`) when it was restarted and, when measured,
    seen listening (`front_listening_at`)."""
    after = sorted((e for e in events if e.ts >= t_fault), key=lambda e: e.ts)
    if name == FRONT:
        own = [e for e in after if e.backend is None]
        down = next((e for e in own if e.kind == EventKind.FRONT_DOWN), None)
        restarted = next((e for e in own if e.kind == EventKind.FRONT_RESTART), None)
        recover = None
        if restarted is not None:
            recover = max(restarted.ts, front_listening_at or restarted.ts) - t_fault
        return VictimTimes(
            name=name,
            detect_s=None if down is None else down.ts - t_fault,
            detected_by=None if down is None else down.kind.value,
            front_out_s=None,
            recover_s=recover,
            restarts=sum(e.kind == EventKind.FRONT_RESTART for e in own),
        )
    own = [e for e in after if e.backend == name]
    detect = next((e for e in own if e.kind in _DETECT_KINDS or is_unhealthy(e)), None)
    out = next((e for e in own if e.kind == EventKind.FRONT_OUT), None)
    back: Event | None = None
    if front and out is not None:
        back = next((e for e in own if e.kind == EventKind.FRONT_IN and e.ts >= out.ts), None)
    elif not front and detect is not None:
        back = next((e for e in own if _healthy(e) and e.ts >= detect.ts), None)
    return VictimTimes(
        name=name,
        detect_s=None if detect is None else detect.ts - t_fault,
        detected_by=None if detect is None else _detected_by(detect),
        front_out_s=None if out is None else out.ts - t_fault,
        recover_s=None if back is None else back.ts - t_fault,
        restarts=sum(e.kind == EventKind.RESTART for e in own),
    )


def not_recovered(
    events: Sequence[Event], t_fault: float, victims: Sequence[str], *, front: bool = True
) -> list[str]:
    """Pure: the backend victims not recovered yet (see `victim_times`); the front's own
    recovery needs a look at the front and is not judged here."""
    return [
        name
        for name in victims
        if name != FRONT and victim_times(events, t_fault, name, front=front).recover_s is None
    ]


def _detected_by(e: Event) -> str:
    return "unhealthy" if is_unhealthy(e) else e.kind.value


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _worst(values: Iterable[float | None]) -> float | None:
    """The slowest of the victims; None when one of them never got there (or no victims)."""
    found = list(values)
    if not found or any(v is None for v in found):
        return None
    return max(v for v in found if v is not None)


def _merge_counts(*maps: Mapping[str, int] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in maps:
        for key, value in (m or {}).items():
            if value:
                out[key] = out.get(key, 0) + value
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class ChaosReport:
    """The outcome of one drill. Times are seconds from the fault; ``to_dict()`` is the
    ``--json`` document. ``recovered`` decides the exit code (0 / 1)."""

    scenario: str
    fault: str  # what was done, in words
    victims: tuple[str, ...]
    t_fault: float  # unix seconds
    fault_s: float | None  # how long a timed fault was held
    recovered: bool
    time_to_detect_s: float | None  # worst over the victims
    time_to_front_out_s: float | None
    time_to_recover_s: float | None
    fleet_healthy_s: float | None  # when the supervisor's tick showed every backend back
    per_victim: tuple[VictimTimes, ...]
    collateral: tuple[str, ...]  # other backends that died, left the front or were restarted
    collateral_times: tuple[VictimTimes, ...]
    restarts: int  # backend restarts by the supervisor since the fault
    restarts_by_backend: Mapping[str, int]
    front_restarts: int
    connections_attempted: int  # the load and the stream of new connections
    connections_failed: int
    failed_by_reason: Mapping[str, int]
    new_connections_attempted: int  # during the fault (the stream)
    new_connections_failed: int
    sessions_dropped: int  # established sessions lost before the load ended
    dropped_by_reason: Mapping[str, int]
    alerts_fired: tuple[Mapping[str, Any], ...]
    alerts_sent: int  # fired and not inhibited: what notifiers were given
    notify_failed: int
    resources: Mapping[str, Any] = field(default_factory=dict)
    load: Mapping[str, Any] | None = None  # the load's own report (to_dict)
    new_connections: Mapping[str, Any] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    aborted: bool = False  # stopped early (Ctrl-C, SIGTERM)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "fault": self.fault,
            "victims": list(self.victims),
            "t_fault": round(self.t_fault, 3),
            "fault_s": _r(self.fault_s),
            "recovered": self.recovered,
            "time_to_detect_s": _r(self.time_to_detect_s),
            "time_to_front_out_s": _r(self.time_to_front_out_s),
            "time_to_recover_s": _r(self.time_to_recover_s),
            "fleet_healthy_s": _r(self.fleet_healthy_s),
            "per_victim": [v.to_dict() for v in self.per_victim],
            "collateral": list(self.collateral),
            "collateral_times": [v.to_dict() for v in self.collateral_times],
            "restarts": self.restarts,
            "restarts_by_backend": dict(self.restarts_by_backend),
            "front_restarts": self.front_restarts,
            "connections_attempted": self.connections_attempted,
            "connections_failed": self.connections_failed,
            "failed_by_reason": dict(self.failed_by_reason),
            "new_connections_attempted": self.new_connections_attempted,
            "new_connections_failed": self.new_connections_failed,
            "sessions_dropped": self.sessions_dropped,
            "dropped_by_reason": dict(self.dropped_by_reason),
            "alerts_fired": [dict(a) for a in self.alerts_fired],
            "alerts_sent": self.alerts_sent,
            "notify_failed": self.notify_failed,
            "resources": dict(self.resources),
            "load": None if self.load is None else dict(self.load),
            "new_connections": None if self.new_connections is None else dict(self.new_connections),
            "timeout_s": self.timeout_s,
            "aborted": self.aborted,
            "notes": list(self.notes),
        }


def summarize(
    events: Sequence[Event],
    t_fault: float,
    victims: Sequence[str],
    load_report: LoadReport | None,
    *,
    scenario: str = "",
    fault: str = "",
    new_connections: LoadReport | None = None,
    t0: float | None = None,
    front: bool = True,
    front_listening_at: float | None = None,
    fleet_healthy_at: float | None = None,
    fault_s: float | None = None,
    resources: Mapping[str, Any] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    aborted: bool = False,
    notes: Sequence[str] = (),
) -> ChaosReport:
    """The report of one drill (pure): per-victim times from the events, load figures from
    the load reports, alerts and notification failures since `t0` (default: the fault).

    Recovered: every victim recovered (see `victim_times`) and, when the drill looked
    (`fleet_healthy_at` given or not), the supervisor's tick showed the whole fleet healthy.
    A drill without victims (loss, cpu, memory) recovered when the fleet was seen healthy.
    """
    start = t_fault if t0 is None else t0
    per = tuple(
        victim_times(events, t_fault, name, front=front, front_listening_at=front_listening_at)
        for name in victims
    )
    after = [e for e in events if e.ts >= t_fault]
    restarts_by: dict[str, int] = {}
    for e in after:
        if e.kind == EventKind.RESTART and e.backend is not None:
            restarts_by[e.backend] = restarts_by.get(e.backend, 0) + 1
    collateral = sorted(
        {
            e.backend
            for e in after
            if e.backend is not None
            and e.backend not in victims
            and (e.kind in _COLLATERAL_KINDS or is_unhealthy(e))
        }
    )
    fired = [e for e in events if e.ts >= start and e.kind == EventKind.ALERT_FIRED]
    alerts = tuple(
        {
            "rule": e.data.get("rule"),
            "severity": e.data.get("severity"),
            "backend": e.backend,
            "at_s": round(e.ts - t_fault, 3),
            "inhibited": bool(e.data.get("inhibited", False)),
            "message": e.message,
        }
        for e in fired
    )
    recovered_victims = all(v.recover_s is not None for v in per)
    seen_healthy = fleet_healthy_at is not None
    recovered = recovered_victims and seen_healthy and not aborted
    reports = [r for r in (load_report, new_connections) if r is not None]
    return ChaosReport(
        scenario=scenario,
        fault=fault,
        victims=tuple(victims),
        t_fault=t_fault,
        fault_s=fault_s,
        recovered=recovered,
        time_to_detect_s=_worst(v.detect_s for v in per),
        time_to_front_out_s=_worst(v.front_out_s for v in per if v.name != FRONT)
        if front
        else None,
        time_to_recover_s=_worst(v.recover_s for v in per),
        fleet_healthy_s=None if fleet_healthy_at is None else max(0.0, fleet_healthy_at - t_fault),
        per_victim=per,
        collateral=tuple(collateral),
        collateral_times=tuple(
            victim_times(events, t_fault, name, front=front) for name in collateral
        ),
        restarts=sum(restarts_by.values()),
        restarts_by_backend=dict(sorted(restarts_by.items())),
        front_restarts=sum(e.kind == EventKind.FRONT_RESTART for e in after),
        connections_attempted=sum(r.attempted for r in reports),
        connections_failed=sum(r.failed for r in reports),
        failed_by_reason=_merge_counts(*(r.failed_by_reason for r in reports)),
        new_connections_attempted=0 if new_connections is None else new_connections.attempted,
        new_connections_failed=0 if new_connections is None else new_connections.failed,
        sessions_dropped=sum(r.sessions_dropped for r in reports),
        dropped_by_reason=_merge_counts(*(r.dropped_by_reason for r in reports)),
        alerts_fired=alerts,
        alerts_sent=sum(not a["inhibited"] for a in alerts),
        notify_failed=sum(e.kind == EventKind.NOTIFY_FAILED for e in events if e.ts >= start),
        resources=dict(resources or {}),
        load=None if load_report is None else load_report.to_dict(),
        new_connections=None if new_connections is None else new_connections.to_dict(),
        timeout_s=timeout_s,
        aborted=aborted,
        notes=tuple(notes),
    )

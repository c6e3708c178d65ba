"""The chaos drill behind ``conduitctl chaos``: one bounded fault against a running fleet,
under load, then a report of what the supervisor did about it.

A run, on a fleet started by ``conduitctl up`` (supervisor running):

1. Preflight: the scenario fits the fleet, the supervisor records ticks, every backend is
   running, healthy and in the front (waited for briefly: right after ``up`` it is probing).
2. ``load`` clients connect through the front (the first TCP listener) and hold echo sessions
   for ``duration`` seconds (``run_load``, in this process's event loop).
3. Once they are in (warm-up), the fault goes in at ``t_fault``; at the same moment a stream
   of new connections (``NEW_CONNECTIONS_PER_S``) starts, so connections *attempted during
   the fault* are measured, not only the sessions established before it.
4. The drill waits until the fleet recovered (each victim back in the front, or the front
   restarted and listening, and the supervisor's latest tick shows the whole fleet healthy)
   or ``timeout_s`` passes. A timed fault (loss, cpu, memory) is held ``fault_s`` and removed
   first.
5. The load ends at its duration; the events since the start are read from the history and
   ``summarize`` turns them into a ``ChaosReport``.

Everything is bounded in time and nothing is left behind: undo steps (the nftables table,
burner processes, SIGUSR2 for a backend still hung, orphaned front workers) are registered
as the fault goes in and run last-in-first-out on success, error, Ctrl-C or SIGTERM, with an
``atexit`` safety net. Should the drill be SIGKILLed, what it started still ends on its own:
burners at a deadline and with their parent (PR_SET_PDEATHSIG); the loss rules' port set
times out; and the next drill deletes a chaos table whose run is gone (its pid is in the
table's name).

The pure parts (``validate``, ``victim_count``, ``pick_victims``, ``nft_ruleset``,
``stale_tables``, ``fleet_health``, ``resource_summary``, ``summarize``) are separate from
the I/O and unit-tested as tables.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from conduitctl.drills.loadtest import (
    LoadReport,
    LoadSpec,
    Snapshot,
    ensure_fd_limit,
    front_target,
    run_load,
)
from conduitctl.errors import BadInput, ConduitctlError, MissingDependency
from conduitctl.events import Event, EventKind
from conduitctl.settings import Proto, Settings
from conduitctl.store import HistoryPoint, Store

log = logging.getLogger(__name__)
LOAD_FIX = "add one to front.listeners or pass --load 0"

SCENARIOS: Mapping[str, str] = {
    "kill": "SIGKILL one random backend",
    "kill-many": "SIGKILL 25 % of the backends (at least 2, never all) at once",
    "hang": "SIGUSR1 one simulator backend: alive but answering nothing",
    "oom": "recreate one backend leaking memory until the OOM killer strikes; the supervisor "
    "restarts it clean",
    "front-restart": "SIGKILL the front's master process",
    "loss": "drop a share of loopback packets to and from the backends' ports (nftables)",
    "cpu": "keep one host core busy in a child process",
    "memory": "hold min(1 GiB, 25 % of available) host memory in a child process",
}
TIMED = frozenset({"loss", "cpu", "memory"})  # held fault_s, then removed
FRONT = "front"  # the victim name of front-restart (no backend is called that: {cluster}-{i})

DEFAULT_TIMEOUT_S = 30.0  # fault (or its removal) -> recovered, at most
DEFAULT_LOSS_PERCENT = 10.0
MIN_DURATION_S = 2.0
NEW_CONNECTIONS_PER_S = 50.0  # the stream of new connections during the fault
WARMUP_EXTRA_S = 1.0  # after the ramp, before the fault
PRECHECK_WAIT_S = 15.0  # for the fleet to be healthy before the drill
POLL_S = 0.1
MEMORY_CAP = 1024**3
MEMORY_SHARE = 0.25
STALE_TICKS = 5  # intervals without a recorded tick: the supervisor is not recording
LIVE_HISTORY_S = 900.0  # the supervisor writes each tick at once this long (a drill's bound)
NFT_TABLE_PREFIX = "conduitctl_chaos_"
NFT_INSTALL = "apt-get install nftables"
NFT_EXPIRY_MARGIN_S = 10.0  # the loss rules match nothing this long after the fault's end
ORPHAN_QUIT_S = 3.0  # an orphaned front worker gets this long to finish after SIGQUIT

INTERRUPTED_EARLY = "chaos interrupted before the fault went in; nothing was changed"

Progress = Callable[[str], None]

# --------------------------------------------------------------------------- validation


def validate(scenario: str, load: int, duration: float, fault_s: float | None = None) -> None:
    """Arguments that make sense on any fleet. Raises BadInput naming the flag and the fix."""
    if scenario not in SCENARIOS:
        raise BadInput(f"--scenario {scenario!r} is unknown; choose one of: {', '.join(SCENARIOS)}")
    if load < 0:
        raise BadInput(f"--load must be 0 (no load) or more clients (got {load})")
    if not (math.isfinite(duration) and duration >= MIN_DURATION_S):
        raise BadInput(
            f"--duration must be at least {MIN_DURATION_S:g} seconds (got {duration}): the load "
            "needs a warm-up before the fault"
        )
    if fault_s is not None and not (math.isfinite(fault_s) and fault_s > 0):
        raise BadInput(f"--fault-seconds must be > 0 (got {fault_s})")


def check_fleet(scenario: str, settings: Settings, load: int) -> None:
    """Whether this fleet can run the scenario (pure). Raises BadInput with the reason."""
    front = settings.front.kind
    containers = settings.cluster.containers
    if load > 0 and front == "none":
        raise BadInput(
            'chaos drives its load through the front and front.kind = "none" has none; '
            'set front.kind = "nginx" or "haproxy", or pass --load 0 (the fault alone)'
        )
    if load > 0 and not any(lst.proto is Proto.TCP for lst in settings.front.listeners):
        raise BadInput(
            "chaos loads the first TCP front listener and there is none; add one "
            "to front.listeners or pass --load 0"
        )
    if scenario == "front-restart" and front == "none":
        raise BadInput('--scenario front-restart: front.kind = "none" runs no front')
    if scenario == "kill-many" and containers < 3:
        raise BadInput(
            f"--scenario kill-many needs at least 3 backends (one must survive); the fleet has "
            f"{containers}: use --scenario kill"
        )
    if scenario == "hang" and settings.workload.profile != "sim":
        raise BadInput(
            f"--scenario hang needs the sim profile (it hangs on SIGUSR1); workload.profile "
            f"{settings.workload.profile!r} has no such signal"
        )
    if scenario == "oom" and settings.workload.profile != "sim":
        raise BadInput(
            f"--scenario oom needs the sim profile (it leaks on --leak-mb-per-s); workload."
            f"profile {settings.workload.profile!r} cannot be made to leak"
        )


def victim_count(scenario: str, backends: int) -> int:
    """How many backends the scenario hits: kill-many 25 % (at least 2, never all)."""
    if scenario == "kill-many":
        return max(0, min(backends - 1, max(2, math.ceil(backends * 0.25))))
    if scenario in ("kill", "hang", "oom"):
        return min(1, backends)
    return 0


def pick_victims(candidates: Sequence[str], count: int, rng: random.Random) -> list[str]:
    """`count` distinct names at random (reproducible with a seeded rng), in fleet order."""
    if count > len(candidates):
        raise ConduitctlError(
            f"the drill needs {count} healthy backends and only {len(candidates)} are"
        )
    chosen = set(rng.sample(list(candidates), count))
    return [name for name in candidates if name in chosen]


# --------------------------------------------------------------------------- nftables


def nft_table_name(pid: int, token: str) -> str:
    """One table per run, named after its process so a later run can tell a stale one."""
    return f"{NFT_TABLE_PREFIX}{pid}_{token}"


def nft_ruleset(
    table: str,
    ports: Iterable[int],
    percent: float,
    expires_s: float,
    host: str = "127.0.0.1",
) -> str:
    """An nftables table that drops `percent` % of packets between `host` and itself to or
    from `ports` (TCP and UDP), on the output hook: loopback traffic of the fleet only.

    The ports sit in a set whose elements time out after `expires_s` (whole seconds, rounded
    up): should the drill die before it deletes the table, the rules match nothing by then.
    Raises ValueError on no ports, a percent outside (0, 100] or expires_s <= 0.
    """
    wanted = sorted(set(ports))
    if not wanted:
        raise ValueError("no ports to apply loss to")
    if not all(1 <= p <= 65535 for p in wanted):
        raise ValueError(f"ports must be 1-65535, got {wanted}")
    if not 0 < percent <= 100:
        raise ValueError(f"loss percent must be in (0, 100], got {percent}")
    if not expires_s > 0:
        raise ValueError(f"expires_s must be > 0, got {expires_s}")
    share = round(percent * 100)  # in basis points: 10 % -> 1000 of 10000
    ttl = math.ceil(expires_s)
    elements = ", ".join(f"{p} timeout {ttl}s" for p in wanted)
    match = f"ip saddr {host} ip daddr {host} meta l4proto {{ tcp, udp }}"
    drop = f"numgen random mod 10000 < {share} drop"
    return (
        f"table inet {table} {{\n"
        "  set ports {\n"
        "    type inet_service\n"
        "    flags timeout\n"
        f"    elements = {{ {elements} }}\n"
        "  }\n"
        "  chain output {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    {match} th dport @ports {drop}\n"
        f"    {match} th sport @ports {drop}\n"
        "  }\n"
        "}\n"
    )


_TABLE_LINE = re.compile(rf"^table inet ({NFT_TABLE_PREFIX}(\d+)_[0-9a-f]+)\s*$", re.M)


def chaos_tables(listing: str) -> list[str]:
    """The chaos tables in `nft list tables` output."""
    return [m.group(1) for m in _TABLE_LINE.finditer(listing)]


def stale_tables(listing: str, alive: Callable[[int], bool]) -> list[str]:
    """Chaos tables left by a run whose process is gone (killed before it could clean up)."""
    return [m.group(1) for m in _TABLE_LINE.finditer(listing) if not alive(int(m.group(2)))]


def loss_ports(settings: Settings) -> list[int]:
    """The backends' client ports; their metrics ports when the profile listens on nothing."""
    from conduitctl.fleet import desired_backends

    backends = desired_backends(settings)
    listen = [b.listen_port for b in backends if b.listen_port is not None]
    return listen or [b.metrics_port for b in backends]


# --------------------------------------------------------------------------- pure reading


def memory_pressure_bytes(available: int) -> int:
    """min(1 GiB, 25 % of what is available)."""
    return max(0, min(MEMORY_CAP, int(available * MEMORY_SHARE)))


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


# --------------------------------------------------------------------------- the report

_DETECT_KINDS = frozenset({EventKind.DEATH, EventKind.OOM, EventKind.FRONT_OUT})
_COLLATERAL_KINDS = frozenset(
    {EventKind.DEATH, EventKind.OOM, EventKind.FRONT_OUT, EventKind.RESTART}
)


def _unhealthy(e: Event) -> bool:
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
    detect = next((e for e in own if e.kind in _DETECT_KINDS or _unhealthy(e)), None)
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


def _detected_by(e: Event) -> str:
    return "unhealthy" if _unhealthy(e) else e.kind.value


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
            and (e.kind in _COLLATERAL_KINDS or _unhealthy(e))
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


# --------------------------------------------------------------------------- undo steps


class Cleanups:
    """Undo steps registered as the drill proceeds, run last-in-first-out exactly once (on
    success, an error, a signal, or at exit); one failing step does not stop the next."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], None]]] = []
        self._lock = threading.Lock()

    def add(self, what: str, step: Callable[[], None]) -> None:
        with self._lock:
            self._steps.append((what, step))

    def run(self) -> list[str]:
        """Run and forget every step; returns the failures, one line each."""
        failures: list[str] = []
        while True:
            with self._lock:
                if not self._steps:
                    return failures
                what, step = self._steps.pop()
            try:
                step()
            except Exception as exc:
                log.warning("chaos cleanup failed: %s: %s", what, exc)
                failures.append(f"{what}: {exc}")


# --------------------------------------------------------------------------- host edges


def _nft(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["nft", *args], input=stdin, capture_output=True, text=True, timeout=10, check=False
        )
    except FileNotFoundError:
        raise MissingDependency(
            f"--scenario loss needs nftables (`nft`); install it: {NFT_INSTALL}"
        ) from None


def _nft_failed(result: subprocess.CompletedProcess[str], doing: str) -> ConduitctlError:
    detail = (result.stderr or result.stdout).strip().splitlines()
    last = detail[-1] if detail else f"exit code {result.returncode}"
    if "not permitted" in last.lower() or "permission" in last.lower():
        return BadInput(f"nft could not {doing} ({last}); run conduitctl chaos as root")
    return ConduitctlError(f"nft could not {doing}: {last}")


def nft_preflight() -> None:
    """nft is there and we may change the ruleset; delete tables of dead chaos runs."""
    listing = _nft(["list", "tables"])
    if listing.returncode != 0:
        raise _nft_failed(listing, "list the tables")
    for table in stale_tables(listing.stdout, psutil.pid_exists):
        log.info("deleting stale chaos table %s (its run is gone)", table)
        _nft(["delete", "table", "inet", table])


def nft_add(ruleset: str) -> None:
    result = _nft(["-f", "-"], stdin=ruleset)
    if result.returncode != 0:
        raise _nft_failed(result, "add the loss table")


def nft_delete(table: str) -> None:
    result = _nft(["delete", "table", "inet", table])
    if result.returncode != 0 and "No such file" not in result.stderr:
        raise _nft_failed(result, f"delete table {table}")


# A child that ends on its own at its deadline, and with its parent (PR_SET_PDEATHSIG).
_CHILD_PRELUDE = """
import ctypes, os, signal, sys, time
parent = int(sys.argv[1])
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
except Exception:
    pass
if os.getppid() != parent:
    sys.exit(0)
end = time.monotonic() + float(sys.argv[2])
"""
_BURN = (
    _CHILD_PRELUDE
    + """
while time.monotonic() < end:
    pass
"""
)
_HOLD = (
    _CHILD_PRELUDE
    + """
n = int(sys.argv[3])
block = bytearray(n)
block[::4096] = b"\\x01" * len(range(0, n, 4096))  # resident: one write per page
print("ready", flush=True)
while time.monotonic() < end:
    time.sleep(0.1)
"""
)


def spawn_child(code: str, seconds: float, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, str(os.getpid()), f"{seconds:.3f}", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        close_fds=True,
    )


def end_child(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(2)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(2)
    if child.stdout is not None:
        child.stdout.close()


def _same_process(pid: int, create_time: float | None) -> bool:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 0.01
    except psutil.Error:
        return False


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


# --------------------------------------------------------------------------- faults


@dataclass
class Target:
    """One backend as the drill found it before the fault."""

    name: str
    pid: int | None
    create_time: float | None = None


class Fault:
    """One fault: `inject()` (blocking; returns what it did in words) and `undo()` (blocking,
    idempotent, registered as a cleanup before the fault goes in)."""

    victims: list[str]

    def __init__(self, victims: list[str]) -> None:
        self.victims = victims
        self.notes: list[str] = []

    def inject(self) -> str:
        raise NotImplementedError

    def undo(self) -> None:
        return None


class SignalBackends(Fault):
    """SIGKILL (kill, kill-many) or SIGUSR1 (hang): to the pid on the process runtime, via
    the Docker API (the container's main process) on docker. A hang is undone with SIGUSR2
    when the supervisor did not replace the hung process."""

    def __init__(self, targets: list[Target], sig: signal.Signals, docker: Any = None) -> None:
        super().__init__([t.name for t in targets])
        self.targets = targets
        self.sig = sig
        self.docker = docker  # a docker client, on the docker runtime
        self.signalled: list[Target] = []

    def _send(self, target: Target, sig: signal.Signals) -> None:
        if self.docker is not None:
            container = self.docker.containers.get(target.name)
            container.kill(signal=sig.name)
        else:
            if target.pid is None or not _same_process(target.pid, target.create_time):
                raise ConduitctlError(f"{target.name} (pid {target.pid}) is gone already")
            os.kill(target.pid, sig)

    def inject(self) -> str:
        for target in self.targets:
            self._send(target, self.sig)
            self.signalled.append(target)
        names = ", ".join(f"{t.name} (pid {t.pid})" if t.pid else t.name for t in self.targets)
        return f"{self.sig.name} {names}"

    def undo(self) -> None:
        if self.sig != signal.SIGUSR1:
            return
        for target in self.signalled:
            if self._still_hung(target):
                self._send(target, signal.SIGUSR2)
                self.notes.append(f"{target.name} was still hung: resumed with SIGUSR2")
        self.signalled = []

    def _still_hung(self, target: Target) -> bool:
        """The very process we hung still runs (the supervisor did not replace it)."""
        if self.docker is not None:
            try:
                container = self.docker.containers.get(target.name)
            except Exception:
                return False
            state = container.attrs.get("State", {})
            return bool(state.get("Running")) and state.get("Pid") == target.pid
        return target.pid is not None and _same_process(target.pid, target.create_time)


class KillFront(Fault):
    """SIGKILL the front's master. Its workers survive the master (nginx) and keep serving
    the old config: they are recorded first, and stopped (SIGQUIT, then SIGKILL) on undo."""

    def __init__(self, front: Any) -> None:
        super().__init__([FRONT])
        self.front = front
        self.pid: int | None = None
        self.workers: dict[int, float | None] = {}

    def inject(self) -> str:
        pid = self.front.pid()
        if pid is None:
            raise ConduitctlError("the front is not running; start it with conduitctl up")
        self.pid = pid
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(pid).children(recursive=True):
                self.workers[child.pid] = _create_time(child.pid)
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL the {self.front.kind} master (pid {pid})"

    def orphans(self) -> list[int]:
        return [p for p, created in self.workers.items() if _same_process(p, created)]

    def undo(self) -> None:
        orphans = self.orphans()
        if not orphans:
            return
        self.notes.append(
            f"{len(orphans)} worker(s) of the killed {self.front.kind} master outlived it and "
            "kept serving the old config; the drill stopped them (the supervisor does not)"
        )
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # graceful: their sessions may finish
        deadline = time.monotonic() + ORPHAN_QUIT_S
        while time.monotonic() < deadline and self.orphans():
            time.sleep(0.05)
        for pid in self.orphans():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.workers = {}


class PacketLoss(Fault):
    """A share of the fleet's loopback packets dropped by an nftables table of its own."""

    def __init__(self, ports: list[int], percent: float, seconds: float) -> None:
        super().__init__([])
        self.ports = ports
        self.percent = percent
        self.expires_s = seconds + NFT_EXPIRY_MARGIN_S
        self.table = nft_table_name(os.getpid(), secrets.token_hex(3))
        self.added = False

    def inject(self) -> str:
        nft_add(nft_ruleset(self.table, self.ports, self.percent, self.expires_s))
        self.added = True
        return (
            f"{self.percent:g} % packet loss on 127.0.0.1 ports {_ports(self.ports)} "
            f"(nft table inet {self.table})"
        )

    def undo(self) -> None:
        if self.added:
            nft_delete(self.table)
            self.added = False


def _ports(ports: Sequence[int]) -> str:
    ports = sorted(ports)
    if len(ports) > 1 and ports[-1] - ports[0] == len(ports) - 1:
        return f"{ports[0]}-{ports[-1]}"
    return ",".join(str(p) for p in ports)


class HostPressure(Fault):
    """A child that burns one core (cpu) or holds memory (memory) for `seconds`."""

    def __init__(self, kind: str, seconds: float) -> None:
        super().__init__([])
        self.kind = kind
        self.seconds = seconds
        self.child: subprocess.Popen[str] | None = None

    def inject(self) -> str:
        # The child ends by itself a little after the fault, should every undo fail.
        bound = self.seconds + 5
        if self.kind == "cpu":
            self.child = spawn_child(_BURN, bound)
            return f"one core busy in pid {self.child.pid}"
        size = memory_pressure_bytes(psutil.virtual_memory().available)
        self.child = spawn_child(_HOLD, bound, str(size))
        assert self.child.stdout is not None
        ready = self.child.stdout.readline().strip()  # ends at "ready" or when it exits
        if ready != "ready":
            raise ConduitctlError(f"the memory holder could not allocate {size >> 20} MiB")
        return f"{size >> 20} MiB held by pid {self.child.pid}"

    def undo(self) -> None:
        if self.child is not None:
            end_child(self.child)
            self.child = None


class LeakOne(Fault):
    """Recreate one simulator with `--leak-mb-per-s` (its identity key kept), held from the
    supervisor while it is replaced; the fault is the OOM kill that follows. The supervisor's
    restart uses the configured spec, without the leak: that is the recovery."""

    def __init__(
        self,
        settings: Settings,
        runtime: Any,
        victim: str,
        store: Store,
        timeout: float,
        aborted: Callable[[], bool],
    ) -> None:
        super().__init__([victim])
        self.settings = settings
        self.runtime = runtime
        self.victim = victim
        self.waiter = AwaitOom(store, time.time(), timeout, aborted, only=victim)
        self.at: float | None = None

    def inject(self) -> str:
        from conduitctl.intent import holding
        from conduitctl.runtime.base import launch_specs

        spec = next(s for s in launch_specs(self.settings) if s.name == self.victim)
        # Fill the memory limit in about 4 s: fast enough for a drill, slow enough to serve.
        rate = max(spec.backend.memory_bytes // (4 * 1024**2), 8)
        leaking = replace(spec, extra_args=(*spec.extra_args, "--leak-mb-per-s", str(rate)))
        self.waiter.since = time.time()
        with holding(self.settings.state_dir, [self.victim], seconds=30):
            self.runtime.start(leaking)
        what = self.waiter.inject()
        self.at = self.waiter.at
        return f"{self.victim} recreated leaking {rate} MB/s; {what}"


class AwaitOom(Fault):
    """Nothing to inject: the fleet leaks by its own flags; the fault is the next OOM kill."""

    def __init__(
        self,
        store: Store,
        since: float,
        timeout: float,
        aborted: Callable[[], bool],
        only: str | None = None,
    ) -> None:
        super().__init__([])
        self.store = store
        self.since = since
        self.timeout = timeout
        self.aborted = aborted
        self.only = only
        self.at: float | None = None

    def inject(self) -> str:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline and not self.aborted():
            for e in self.store.events(since=self.since, kinds={EventKind.OOM, EventKind.DEATH}):
                if self.only is not None and e.backend != self.only:
                    continue
                if e.backend and (e.kind == EventKind.OOM or e.data.get("oom")):
                    self.victims = [e.backend]
                    self.at = e.ts
                    return f"{e.backend} OOM-killed (its own leak, --leak-mb-per-s)"
            time.sleep(POLL_S * 2)
        if self.aborted():
            raise ConduitctlError("chaos oom: interrupted while waiting for an OOM kill")
        raise ConduitctlError(
            f"no backend was OOM-killed within {self.timeout:g}s; raise --leak-mb-per-s or "
            "lower container.memory"
        )


# --------------------------------------------------------------------------- the drill


@dataclass(frozen=True)
class Timeline:
    """When things happened in one drill (unix seconds)."""

    t_fault: float
    fault: str  # what was done, in words
    held_s: float | None  # a timed fault: how long it was in place
    front_listening_at: float | None
    fleet_healthy_at: float | None


# Why a short drill's alerts stay quiet where one might expect them.
SCENARIO_NOTES: Mapping[str, tuple[str, ...]] = {
    "cpu": (
        "cpu_high fires after 120 s above alerts.cpu_percent per backend and there is no host "
        "CPU rule: a short burn shows in `resources`, not in alerts",
    ),
    "memory": (
        "host_memory_low fires after 60 s below (100 - alerts.ram_percent) % available: a "
        "short hold shows in `resources`, not in alerts",
    ),
}


class Drill:
    def __init__(
        self,
        settings: Settings,
        config_path: Path,
        scenario: str,
        *,
        load: int,
        duration: float,
        rate_kbps: float,
        seed: int | None,
        progress: Progress | None,
        fault_s: float | None,
        timeout_s: float,
        loss_percent: float,
    ) -> None:
        from conduitctl.front import front_for
        from conduitctl.hostinfo import render_env
        from conduitctl.runtime import runtime_for

        self.settings = settings
        self.scenario = scenario
        self.load = load
        self.duration = duration
        self.rate_kbps = rate_kbps
        self.rng = random.Random(seed)
        self.say: Progress = progress or (lambda message: None)
        self.timed_s = (fault_s or max(1.0, duration / 2)) if scenario in TIMED else None
        self.timeout_s = timeout_s
        self.loss_percent = loss_percent
        self.runtime = runtime_for(settings)
        self.front = front_for(settings, render_env(settings, config_path))
        self.has_front = settings.front.enabled
        self.names = settings.backend_names()
        self.cleanups = Cleanups()
        self.abort = asyncio.Event()
        self.notes: list[str] = []
        self.store: Store | None = None

    # --- preflight (blocking) ---------------------------------------------------------

    def open_store(self) -> Store:
        from conduitctl import daemon_link as control
        from conduitctl.supervise.files import history_path, stop_live_history, want_live_history

        state_dir = self.settings.state_dir
        if control.daemon_pid(state_dir) is None:
            raise ConduitctlError(
                f"no supervisor runs for {state_dir}: chaos measures what it does; start it "
                "with conduitctl up"
            )
        path = history_path(state_dir)
        if not path.exists():
            raise ConduitctlError(f"no history at {path} yet: the supervisor records it")
        self.store = Store(path)
        # The supervisor batches its ticks while all is well: ask for them as they come.
        want_live_history(state_dir, LIVE_HISTORY_S)
        self.cleanups.add("live history", lambda: stop_live_history(state_dir))
        return self.store

    def health_now(self) -> FleetHealth | None:
        assert self.store is not None
        window = max(self.settings.health.interval * STALE_TICKS, 2.0)
        points = self.store.history(since=time.time() - window, resolution="raw")
        return fleet_health(points, self.names, self.has_front)

    def wait_healthy(self, timeout: float, after: float = 0.0) -> FleetHealth | None:
        """The first fresh tick (ts > after) showing the whole fleet healthy, or None."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline and not self.abort.is_set():
            last = self.health_now()
            if last is not None and last.ok and last.ts > after:
                return last
            time.sleep(POLL_S * 2)
        return None

    def preflight(self) -> Fault:
        check_fleet(self.scenario, self.settings, self.load)
        if self.scenario == "loss":
            nft_preflight()  # fail before any load: missing nft, no permission
        self.open_store()
        self.say("waiting for the whole fleet to be healthy")
        healthy = self.wait_healthy(PRECHECK_WAIT_S)
        if self.abort.is_set():
            raise ConduitctlError(INTERRUPTED_EARLY)
        if healthy is None:
            seen = self.health_now()
            why = "the supervisor records no ticks" if seen is None else ", ".join(seen.problems)
            raise ConduitctlError(
                f"the fleet is not healthy before the drill ({why}); see conduitctl status "
                "and try again once it is"
            )
        return self.make_fault()

    def make_fault(self) -> Fault:
        scenario = self.scenario
        if scenario in ("kill", "kill-many", "hang"):
            statuses = {s.name: s for s in self.runtime.backends() if s.pid}
            candidates = [n for n in self.names if n in statuses]
            chosen = pick_victims(candidates, victim_count(scenario, len(self.names)), self.rng)
            targets = [
                Target(n, statuses[n].pid, _create_time(statuses[n].pid or 0)) for n in chosen
            ]
            sig = signal.SIGUSR1 if scenario == "hang" else signal.SIGKILL
            docker = (
                getattr(self.runtime, "client", None) if self.runtime.name == "docker" else None
            )
            return SignalBackends(targets, sig, docker)
        if scenario == "front-restart":
            return KillFront(self.front)
        if scenario == "loss":
            assert self.timed_s is not None
            return PacketLoss(loss_ports(self.settings), self.loss_percent, self.timed_s)
        if scenario in ("cpu", "memory"):
            assert self.timed_s is not None
            return HostPressure(scenario, self.timed_s)
        assert self.store is not None
        victim = pick_victims(self.names, 1, self.rng)[0]
        return LeakOne(
            self.settings, self.runtime, victim, self.store, self.timeout_s, self.abort.is_set
        )

    # --- the run (async) ---------------------------------------------------------------

    async def run(self) -> ChaosReport:
        try:
            fault = await asyncio.to_thread(self.preflight)
            return await self.drive(fault)
        finally:
            if self.store is not None:
                self.store.close()

    async def drive(self, fault: Fault) -> ChaosReport:
        """Load, fault, recovery, report. On an error or a cancellation the fault is undone
        at once and the load stopped; on success the undo waits for the load to end."""
        assert self.store is not None
        store = self.store
        t0 = time.time()
        stop = asyncio.Event()
        tasks: dict[str, asyncio.Task[LoadReport]] = {}
        try:
            timeline = await self.fault_under_load(fault, stop, tasks)
        except BaseException:
            self.cleanups.run()  # synchronous: also runs under cancellation
            stop.set()  # the load ends with the drill; its sockets close on the way out
            for task in tasks.values():
                task.cancel()
            raise
        if self.abort.is_set():
            stop.set()
        # The rest of the undo (SIGUSR2 to a backend still hung, a dead front's orphaned
        # workers) waits for the load: undoing must not drop the sessions being measured.
        load_report = await tasks["load"] if "load" in tasks else None
        stream_report = await tasks["stream"] if "stream" in tasks else None
        failures = await asyncio.to_thread(self.cleanups.run)
        self.notes.extend(f"cleanup failed: {f}" for f in failures)
        self.notes.extend(fault.notes)
        self.notes.extend(SCENARIO_NOTES.get(self.scenario, ()))
        t_end = time.time()
        t_fault = timeline.t_fault
        events = await asyncio.to_thread(store.events, since=t0, limit=100_000)
        points = await asyncio.to_thread(
            store.history, since=t_fault, until=t_end, resolution="raw"
        )
        report = summarize(
            events,
            t_fault,
            fault.victims,
            load_report,
            scenario=self.scenario,
            fault=timeline.fault,
            new_connections=stream_report,
            t0=t0,
            front=self.has_front,
            front_listening_at=timeline.front_listening_at,
            fleet_healthy_at=timeline.fleet_healthy_at,
            fault_s=timeline.held_s,
            resources=resource_summary(points, t_fault, t_end),
            timeout_s=self.timeout_s,
            aborted=self.abort.is_set(),
            notes=self.notes,
        )
        verdict = "recovered" if report.recovered else "NOT recovered"
        self.say(
            f"{verdict}; {report.connections_failed} connections failed, "
            f"{report.sessions_dropped} sessions dropped"
        )
        return report

    async def fault_under_load(
        self, fault: Fault, stop: asyncio.Event, tasks: dict[str, asyncio.Task[LoadReport]]
    ) -> Timeline:
        """Start the load (into `tasks`), warm up, inject, hold a timed fault and remove it,
        wait for recovery."""
        load_end = time.monotonic() + self.duration
        if self.load:
            host, port = front_target(self.settings, fix=LOAD_FIX)
            spec = LoadSpec(
                host=host,
                port=port,
                clients=self.load,
                duration_s=self.duration,
                rate_kbps=self.rate_kbps,
            )
            ensure_fd_limit(self.load + int(NEW_CONNECTIONS_PER_S * self.duration) + 100)
            self.say(f"load: {self.load} clients through {spec.target} for {self.duration:g}s")
            snaps: list[Snapshot] = []
            tasks["load"] = asyncio.create_task(run_load(spec, snaps.append, stop))
            await self.warm_up(spec, snaps, tasks["load"])
            remaining = load_end - time.monotonic()
            if remaining >= 1.0:
                stream = self.stream_spec(remaining)
                tasks["stream"] = asyncio.create_task(run_load(stream, None, stop))
        if self.abort.is_set():
            raise ConduitctlError(INTERRUPTED_EARLY)
        t_fault = time.time()
        self.cleanups.add(f"undo {self.scenario}", fault.undo)
        text = await asyncio.to_thread(fault.inject)
        if isinstance(fault, AwaitOom | LeakOne) and fault.at is not None:
            t_fault = fault.at  # the kernel's kill is the fault
        elif self.timed_s is not None:
            t_fault = time.time()  # in place (a gigabyte takes a moment to allocate)
        self.say(f"fault: {text}")
        t_from = t_fault
        held: float | None = None
        announced: set[tuple[str | None, str]] = set()
        if self.timed_s is not None:
            await self.watch(t_fault, time.monotonic() + self.timed_s, announced)
            await asyncio.to_thread(fault.undo)
            t_from = time.time()
            held = t_from - t_fault
            self.say(f"fault removed after {held:.1f}s")
        front_at, healthy_at = await self.wait_recovered(fault, t_fault, t_from, announced)
        return Timeline(t_fault, text, held, front_at, healthy_at)

    def stream_spec(self, remaining: float) -> LoadSpec:
        """New connections through the fault window: started evenly, each held to the end."""
        host, port = front_target(self.settings, fix=LOAD_FIX)
        ramp = remaining * 0.9
        clients = max(1, int(NEW_CONNECTIONS_PER_S * ramp))
        return LoadSpec(
            host=host,
            port=port,
            clients=clients,
            duration_s=remaining,
            ramp_s=ramp,
            rate_kbps=self.rate_kbps,
        )

    async def warm_up(
        self, spec: LoadSpec, snaps: list[Snapshot], task: asyncio.Task[LoadReport]
    ) -> None:
        """Until every client is in (open + failed = clients), bounded by half the run."""
        started = time.monotonic()
        await self.sleep(spec.effective_ramp_s + WARMUP_EXTRA_S)
        limit = started + self.duration / 2
        while time.monotonic() < limit and not task.done() and not self.abort.is_set():
            snap = snaps[-1] if snaps else None
            if snap is not None and snap.open + snap.failed >= spec.clients:
                break
            await asyncio.sleep(POLL_S)
        snap = snaps[-1] if snaps else None
        if snap is not None:
            self.say(f"warm: {snap.open} sessions open, {snap.failed} failed")
        if task.done():
            task.result()  # raises the load's own error (fd limit, resolve)

    async def sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.abort.wait(), timeout=max(seconds, 0))

    async def watch(
        self, t_fault: float, until: float, announced: set[tuple[str | None, str]]
    ) -> None:
        """Hold a timed fault until `until` (monotonic), saying what the supervisor does."""
        assert self.store is not None
        store = self.store
        while time.monotonic() < until and not self.abort.is_set():
            events = await asyncio.to_thread(store.events, since=t_fault, limit=10_000)
            self.announce(events, t_fault, announced)
            await self.sleep(min(POLL_S * 2, until - time.monotonic()))

    async def wait_recovered(
        self,
        fault: Fault,
        t_fault: float,
        t_from: float,
        announced: set[tuple[str | None, str]],
    ) -> tuple[float | None, float | None]:
        """(front seen listening at, fleet seen healthy at); None where it did not happen
        within timeout_s of `t_from`."""
        assert self.store is not None
        store = self.store
        deadline = time.monotonic() + self.timeout_s - max(0.0, time.time() - t_from)
        front_at: float | None = None
        while time.monotonic() < deadline and not self.abort.is_set():
            events = await asyncio.to_thread(store.events, since=t_fault, limit=10_000)
            self.announce(events, t_fault, announced)
            pending = [
                name
                for name in fault.victims
                if name != FRONT
                and victim_times(events, t_fault, name, front=self.has_front).recover_s is None
            ]
            if FRONT in fault.victims and front_at is None:
                restarted = any(e.kind == EventKind.FRONT_RESTART for e in events)
                if restarted and await asyncio.to_thread(self.front_serving, fault):
                    front_at = time.time()
                else:
                    pending.append(FRONT)
            if not pending:
                last = max((e.ts for e in events), default=t_from)
                health = await asyncio.to_thread(self.health_now)
                if health is not None and health.ok and health.ts > max(last, t_from):
                    self.say(f"fleet healthy again (+{health.ts - t_fault:.2f}s)")
                    return front_at, health.ts
            await asyncio.sleep(POLL_S)
        return front_at, None

    def front_serving(self, fault: Fault) -> bool:
        status = self.front.status()
        old = fault.pid if isinstance(fault, KillFront) else None
        return bool(status.running and status.pid != old and not status.not_listening)

    def announce(
        self, events: Sequence[Event], t_fault: float, seen: set[tuple[str | None, str]]
    ) -> None:
        """Say each backend's first death, front change and restart once, as they come."""
        for e in events:
            kind = "unhealthy" if _unhealthy(e) else e.kind.value
            if kind not in (
                "death",
                "oom",
                "unhealthy",
                "front_out",
                "restart",
                "front_in",
                "front_down",
                "front_restart",
                "crash_loop",
            ):
                continue
            key = (e.backend, kind)
            if key in seen:
                continue
            seen.add(key)
            self.say(f"+{e.ts - t_fault:6.2f}s {kind:13} {e.backend or 'front'}")


def run_chaos(
    settings: Settings,
    config_path: Path,
    scenario: str,
    load: int,
    duration: float,
    rate_kbps: float = 8,
    seed: int | None = None,
    progress: Progress | None = None,
    *,
    fault_s: float | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    loss_percent: float = DEFAULT_LOSS_PERCENT,
) -> ChaosReport:
    """Run one drill in a fresh event loop and return its report.

    `load` clients (0: none) hold sessions through the front for `duration` seconds; the
    fault goes in once they are connected. A timed fault (loss, cpu, memory) is held
    `fault_s` (default half the duration). The drill waits at most `timeout_s` for recovery
    after the fault (or its removal). The first Ctrl-C or a SIGTERM ends it early, undoing
    the fault; the report then says `aborted`.

    Raises:
        BadInput: an unknown scenario, bad numbers, a scenario this fleet cannot run, nft
            missing or not permitted.
        ConduitctlError: no supervisor, no history, or a fleet not healthy to start with.
    """
    validate(scenario, load, duration, fault_s)
    if not (math.isfinite(loss_percent) and 0 < loss_percent <= 100):
        raise BadInput(f"--loss-percent must be in (0, 100] (got {loss_percent})")
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise BadInput(f"--timeout must be > 0 seconds (got {timeout_s})")

    async def main() -> ChaosReport:
        drill = Drill(
            settings,
            config_path,
            scenario,
            load=load,
            duration=duration,
            rate_kbps=rate_kbps,
            seed=seed,
            progress=progress,
            fault_s=fault_s,
            timeout_s=timeout_s,
            loss_percent=loss_percent,
        )
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []

        def interrupted(sig: signal.Signals) -> None:
            drill.say(f"{sig.name}: ending the drill early and undoing the fault")
            drill.abort.set()
            if sig == signal.SIGINT:  # a second Ctrl-C interrupts at once
                loop.remove_signal_handler(sig)

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, interrupted, sig)
                installed.append(sig)
        atexit.register(drill.cleanups.run)  # the last resort: an exit we did not see coming
        try:
            return await drill.run()
        finally:
            drill.cleanups.run()
            atexit.unregister(drill.cleanups.run)
            for sig in installed:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)

    return asyncio.run(main())

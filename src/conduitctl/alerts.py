"""Alert rules over one tick's observations, their lifecycle and their notifications (pure).

The pipeline, modelled on Prometheus rules feeding Alertmanager:

- `conditions(tick, settings, history)`: which rule holds now, for which labels, with the value.
- `evaluate(state, conditions, now)`: inactive -> pending (waiting `for_s`) -> firing ->
  resolved, plus inhibition (a firing source mutes its targets: they stay tracked, unnotified).
- `plan_notifications(state, now, repeat_interval_s)`: one message per rule (the group) that
  needs one, decided by `needs_update` (first, new alerts, resolved, repeat interval elapsed);
  `mark_sent(state, notification, now)` records what went out.

No clock reads and no I/O here: `now` is always passed in (the tick's `ts`). Everything the
engine remembers lives in `AlertState`, which round-trips through JSON (`to_dict`/`from_dict`)
so the daemon can persist it across its own restart and `conduitctl alerts` can read it.

The daemon, once per tick::

    state, transitions = alerts.step(state, tick, settings)
    for t in transitions:
        record(t.event())                       # ALERT_FIRED / ALERT_RESOLVED in the history
    for n in alerts.plan_notifications(state, tick.ts, settings.alerts.repeat_interval):
        dispatcher.submit(n)                    # never blocks; retries in the background
        state = alerts.mark_sent(state, n, tick.ts)
    persist(state.to_dict())
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from itertools import pairwise
from typing import Any

from conduitctl.events import Event, EventKind
from conduitctl.observe.model import BackendObservation, Tick
from conduitctl.settings import Settings

STATE_VERSION = 1

OOM_QUIET_S = 600.0  # an oom alert resolves after this long without another OOM kill
QUEUE_WINDOW = 3  # accept queue samples (ticks) that must show growth
QUEUE_BACKLOG_FRACTION = 0.5  # ...or a queue at least this share of the listen backlog
RESOLVED_RETENTION_S = 86400.0  # a resolved alert nobody notified about is forgotten after this

Labels = tuple[tuple[str, str], ...]  # sorted (key, value) pairs: hashable, JSON-friendly


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class Scope(StrEnum):
    """Which label an alert of the rule carries: one alert per backend, per listener, or one."""

    BACKEND = "backend"
    LISTENER = "listener"
    GLOBAL = "global"  # the front, the host, the fleet: no labels


class RuleName(StrEnum):
    BACKEND_DOWN = "backend_down"
    CRASH_LOOP = "crash_loop"
    OOM = "oom"
    CPU_HIGH = "cpu_high"
    RAM_HIGH = "ram_high"
    HOST_MEMORY_LOW = "host_memory_low"
    NIC_HIGH = "nic_high"
    FRONT_DOWN = "front_down"
    ACCEPT_QUEUE_GROWING = "accept_queue_growing"
    ALL_BACKENDS_DOWN = "all_backends_down"


@dataclass(frozen=True)
class Rule:
    name: RuleName
    severity: Severity
    for_s: float  # the condition must hold this long (pending) before the alert fires
    scope: Scope
    summary: str  # one line; {backend} / {listener} and {detail} are filled in
    description: str  # the condition in words (docs, `conduitctl alerts --rules`)

    def render(self, labels: Labels, detail: str) -> str:
        return self.summary.format(**dict(labels), detail=detail)


RULES: dict[RuleName, Rule] = {
    r.name: r
    for r in (
        Rule(
            RuleName.BACKEND_DOWN,
            Severity.WARNING,
            30.0,
            Scope.BACKEND,
            "backend {backend} is down: {detail}",
            "a backend is not running, or its health probe fails",
        ),
        Rule(
            RuleName.CRASH_LOOP,
            Severity.CRITICAL,
            0.0,
            Scope.BACKEND,
            "backend {backend} is crash-looping: {detail}",
            "the supervisor stopped restarting a backend (crash-loop limit reached)",
        ),
        Rule(
            RuleName.OOM,
            Severity.WARNING,
            0.0,
            Scope.BACKEND,
            "backend {backend} was OOM-killed: {detail}",
            "a backend's OOM-kill counter increased; resolves after "
            f"{OOM_QUIET_S / 60:g} min without another kill",
        ),
        Rule(
            RuleName.CPU_HIGH,
            Severity.WARNING,
            120.0,
            Scope.BACKEND,
            "backend {backend} CPU high: {detail}",
            "backend CPU above alerts.cpu_percent of its CPU limit (docker), "
            "or of one core (process runtime: no limit)",
        ),
        Rule(
            RuleName.RAM_HIGH,
            Severity.WARNING,
            60.0,
            Scope.BACKEND,
            "backend {backend} memory high: {detail}",
            "backend RSS above alerts.ram_percent of its memory limit "
            "(the observed cgroup limit, else the configured container memory)",
        ),
        Rule(
            RuleName.HOST_MEMORY_LOW,
            Severity.WARNING,
            60.0,
            Scope.GLOBAL,
            "host memory low: {detail}",
            "host available memory below (100 - alerts.ram_percent) % of total",
        ),
        Rule(
            RuleName.NIC_HIGH,
            Severity.WARNING,
            120.0,
            Scope.GLOBAL,
            "NIC near saturation: {detail}",
            "NIC rx or tx (rx + tx when half duplex) above alerts.nic_mbps, by default "
            "host.sustained_fraction x the NIC speed (host.nic_mbps or the kernel's); "
            "inactive when neither is known",
        ),
        Rule(
            RuleName.FRONT_DOWN,
            Severity.CRITICAL,
            0.0,  # the single point of failure: say so at once, even when restarted within a tick
            Scope.GLOBAL,
            "front is down: {detail}",
            "the front (nginx/haproxy) is not running, or not every listener accepts",
        ),
        Rule(
            RuleName.ACCEPT_QUEUE_GROWING,
            Severity.WARNING,
            5.0,
            Scope.LISTENER,
            "listener {listener} accept queue growing: {detail}",
            f"a front listener's accept queue is above 0 and has grown over {QUEUE_WINDOW} "
            f"ticks without dropping, or holds {QUEUE_BACKLOG_FRACTION:.0%} of its backlog",
        ),
        Rule(
            RuleName.ALL_BACKENDS_DOWN,
            Severity.CRITICAL,
            10.0,
            Scope.GLOBAL,
            "all backends are down: {detail}",
            "no backend is running and healthy",
        ),
    )
}

_BACKEND_RULES = frozenset(r.name for r in RULES.values() if r.scope == Scope.BACKEND)


@dataclass(frozen=True)
class Inhibition:
    """While `source` fires, alerts of `targets` are muted; `equal`: labels that must match."""

    source: RuleName
    targets: frozenset[RuleName]
    equal: tuple[str, ...] = ()


INHIBITIONS: tuple[Inhibition, ...] = (
    # The front is the single way in: while it is down, per-backend noise adds nothing.
    Inhibition(RuleName.FRONT_DOWN, _BACKEND_RULES),
    Inhibition(RuleName.ALL_BACKENDS_DOWN, frozenset({RuleName.BACKEND_DOWN})),
    # A crash-looping backend is down by definition: one message for it, not two.
    Inhibition(RuleName.CRASH_LOOP, frozenset({RuleName.BACKEND_DOWN}), equal=("backend",)),
)


def make_labels(**labels: str) -> Labels:
    return tuple(sorted(labels.items()))


def fingerprint(rule: RuleName, labels: Labels) -> str:
    """A stable alert identity: `backend_down{backend=conduit-1}`, `front_down`."""
    if not labels:
        return rule.value
    return rule.value + "{" + ",".join(f"{k}={v}" for k, v in labels) + "}"


# --- conditions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """A rule that holds right now for these labels."""

    rule: RuleName
    labels: Labels
    value: float | None  # the observed number (percent, Mbit/s, count...), None if boolean
    detail: str  # the value in words, for the summary

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule, self.labels)

    @property
    def summary(self) -> str:
        return RULES[self.rule].render(self.labels, self.detail)


@dataclass(frozen=True)
class OomTrack:
    count: int  # the backend's OOM-kill counter at the last tick
    last_increase: float | None = None  # ts of the last tick that saw it increase
    episode_kills: int = 0  # kills since the current episode began (it ends after quiet)


@dataclass(frozen=True)
class History:
    """What the conditions need from earlier ticks: counters and recent samples."""

    oom: dict[str, OomTrack] = field(default_factory=dict)  # backend -> track
    queues: dict[str, tuple[int, ...]] = field(default_factory=dict)  # listener -> samples

    def observe(self, tick: Tick) -> History:
        """This history with `tick` added (pure; call after `conditions` for the same tick)."""
        return History(
            oom={b.name: _oom_track(self.oom.get(b.name), b, tick.ts) for b in tick.backends},
            queues={
                name: _queue_samples(self.queues.get(name, ()), depth)
                for name, depth in tick.front.accept_queue.items()
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "oom": {
                name: {
                    "count": t.count,
                    "last_increase": t.last_increase,
                    "episode_kills": t.episode_kills,
                }
                for name, t in sorted(self.oom.items())
            },
            "queues": {name: list(samples) for name, samples in sorted(self.queues.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls(
            oom={
                str(name): OomTrack(
                    count=int(t["count"]),
                    last_increase=_opt_float(t.get("last_increase")),
                    episode_kills=int(t.get("episode_kills", 0)),
                )
                for name, t in dict(data.get("oom", {})).items()
            },
            queues={
                str(name): tuple(int(v) for v in samples)
                for name, samples in dict(data.get("queues", {})).items()
            },
        )


def _oom_track(prev: OomTrack | None, b: BackendObservation, now: float) -> OomTrack:
    """The first sight of a counter is a baseline (a kill at an unknown time is not news); a
    counter that went down was reset (backend recreated) and counts from zero."""
    if prev is None:
        return OomTrack(b.oom_kills)
    increase = b.oom_kills - prev.count if b.oom_kills >= prev.count else b.oom_kills
    if increase <= 0:
        return replace(prev, count=b.oom_kills)
    in_episode = prev.last_increase is not None and now - prev.last_increase < OOM_QUIET_S
    kills = (prev.episode_kills if in_episode else 0) + increase
    return OomTrack(b.oom_kills, now, kills)


def _queue_samples(prev: tuple[int, ...], depth: int) -> tuple[int, ...]:
    return (*prev, depth)[-QUEUE_WINDOW:]


def conditions(tick: Tick, settings: Settings, history: History | None = None) -> list[Condition]:
    """Every rule that holds in `tick`. Labels come from fixed sets (backend names, listener
    names), never container ids. `history` (from `AlertState.history`) feeds the rules that
    look across ticks (oom, accept_queue_growing); without it they only see this tick."""
    hist = history or History()
    out: list[Condition] = []
    down: list[str] = []
    for b in tick.backends:
        labels = make_labels(backend=b.name)
        if not b.running or b.healthy is False:
            down.append(b.name)
            out.append(
                Condition(
                    RuleName.BACKEND_DOWN,
                    labels,
                    None,
                    "not running" if not b.running else "health probe failing",
                )
            )
        if b.crash_looping:
            out.append(
                Condition(
                    RuleName.CRASH_LOOP,
                    labels,
                    float(b.restarts),
                    f"{b.restarts} restarts; they go on, slower, until it stays healthy",
                )
            )
        track = _oom_track(hist.oom.get(b.name), b, tick.ts)
        if track.last_increase is not None and tick.ts - track.last_increase < OOM_QUIET_S:
            out.append(
                Condition(
                    RuleName.OOM,
                    labels,
                    float(track.episode_kills),
                    f"{track.episode_kills} OOM kill(s); resolves after "
                    f"{OOM_QUIET_S / 60:g} min without another",
                )
            )
        out.extend(_resource_conditions(b, labels, settings))

    if tick.backends and len(down) == len(tick.backends):
        n = len(tick.backends)
        out.append(
            Condition(RuleName.ALL_BACKENDS_DOWN, (), float(n), f"0 of {n} running and healthy")
        )

    out.extend(_host_conditions(tick, settings))

    front = tick.front
    front_served = settings.front.enabled and front.kind != "none"
    if front_served and not (front.running and front.listening):
        why = "not running" if not front.running else "running but not listening"
        out.append(Condition(RuleName.FRONT_DOWN, (), None, f"{front.kind} {why}"))
    for name, depth in sorted(front.accept_queue.items()):
        samples = _queue_samples(hist.queues.get(name, ()), depth)
        backlog = front.accept_backlog.get(name, 0)
        growing = (
            len(samples) == QUEUE_WINDOW
            and depth > 0
            and all(a <= b for a, b in pairwise(samples))
            and samples[-1] > samples[0]
        )
        full = depth > 0 and backlog > 0 and depth >= QUEUE_BACKLOG_FRACTION * backlog
        if growing or full:
            of = f" of a {backlog} backlog" if backlog > 0 else ""
            trend = f", up from {samples[0]} over {len(samples)} ticks" if growing else ""
            out.append(
                Condition(
                    RuleName.ACCEPT_QUEUE_GROWING,
                    make_labels(listener=name),
                    float(depth),
                    f"{depth} queued{of}{trend}",
                )
            )
    return out


def _resource_conditions(
    b: BackendObservation, labels: Labels, settings: Settings
) -> list[Condition]:
    out: list[Condition] = []
    override = settings.workload.overrides.get(b.index)
    limits = settings.cluster.runtime == "docker"  # the process runtime enforces no limits
    threshold = settings.alerts.cpu_percent
    if b.cpu_percent is not None:
        cores = 1.0
        if limits:
            cores = override.cpus if override and override.cpus else settings.container.cpus
        of_limit = b.cpu_percent / cores
        if of_limit > threshold:
            what = f"its {cores:g} CPU limit" if limits else "one core (no CPU limit)"
            out.append(
                Condition(
                    RuleName.CPU_HIGH,
                    labels,
                    round(of_limit, 1),
                    f"{of_limit:.0f}% of {what} (threshold {threshold:g}%)",
                )
            )
    if b.rss_bytes is not None:
        limit = b.memory_limit_bytes or (
            override.memory if override and override.memory else settings.container.memory
        )
        used = 100.0 * b.rss_bytes / limit if limit > 0 else 0.0
        if used > settings.alerts.ram_percent:
            out.append(
                Condition(
                    RuleName.RAM_HIGH,
                    labels,
                    round(used, 1),
                    f"RSS {_mib(b.rss_bytes)} = {used:.0f}% of its {_mib(limit)} limit "
                    f"(threshold {settings.alerts.ram_percent:g}%)",
                )
            )
    return out


def _host_conditions(tick: Tick, settings: Settings) -> list[Condition]:
    out: list[Condition] = []
    host = tick.host
    if host.mem_total_bytes > 0:
        available = 100.0 * host.mem_available_bytes / host.mem_total_bytes
        floor = 100.0 - settings.alerts.ram_percent
        if available < floor:
            out.append(
                Condition(
                    RuleName.HOST_MEMORY_LOW,
                    (),
                    round(available, 1),
                    f"{_mib(host.mem_available_bytes)} available = {available:.0f}% of "
                    f"{_mib(host.mem_total_bytes)} (alert below {floor:g}%)",
                )
            )
    limit, why = nic_threshold(settings, host.nic_speed_mbps)
    if limit is not None and (host.nic_rx_mbps is not None or host.nic_tx_mbps is not None):
        rx, tx = host.nic_rx_mbps or 0.0, host.nic_tx_mbps or 0.0
        if settings.host.duplex:
            value, what = (rx, "rx") if rx >= tx else (tx, "tx")
        else:
            value, what = rx + tx, "rx+tx"
        if value > limit:
            nic = f"{host.nic} " if host.nic else ""
            out.append(
                Condition(
                    RuleName.NIC_HIGH,
                    (),
                    round(value, 1),
                    f"{nic}{what} {value:.0f} Mbit/s > {limit:g} Mbit/s ({why})",
                )
            )
    return out


def nic_threshold(
    settings: Settings, observed_speed_mbps: float | None
) -> tuple[float | None, str]:
    """The nic_high threshold in Mbit/s and where it comes from; None when nothing is known."""
    if settings.alerts.nic_mbps is not None:
        return settings.alerts.nic_mbps, "alerts.nic_mbps"
    speed = settings.host.nic_mbps or observed_speed_mbps
    if not speed:
        return None, "NIC speed unknown"
    fraction = settings.host.sustained_fraction
    return fraction * speed, f"{fraction:g} x {speed:g} Mbit/s NIC"


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 1024**2:.0f} MiB"


# --- state and evaluation --------------------------------------------------------------------


class AlertStatus(StrEnum):
    PENDING = "pending"  # the condition holds, waiting for the rule's for_s
    FIRING = "firing"
    RESOLVED = "resolved"  # was firing and notified; the resolved notice is still to go out


@dataclass(frozen=True)
class AlertEntry:
    rule: RuleName
    labels: Labels
    status: AlertStatus
    since: float  # when the condition began to hold (the alert went pending)
    value: float | None
    summary: str
    fired_at: float | None = None
    resolved_at: float | None = None
    inhibited: bool = False  # muted by a firing source alert: tracked, not notified

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule, self.labels)

    @property
    def severity(self) -> Severity:
        return RULES[self.rule].severity

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.value,
            "labels": dict(self.labels),
            "status": self.status.value,
            "since": self.since,
            "value": self.value,
            "summary": self.summary,
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
            "inhibited": self.inhibited,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertEntry:
        return cls(
            rule=RuleName(data["rule"]),
            labels=make_labels(**{str(k): str(v) for k, v in dict(data["labels"]).items()}),
            status=AlertStatus(data["status"]),
            since=float(data["since"]),
            value=_opt_float(data.get("value")),
            summary=str(data.get("summary", "")),
            fired_at=_opt_float(data.get("fired_at")),
            resolved_at=_opt_float(data.get("resolved_at")),
            inhibited=bool(data.get("inhibited", False)),
        )


@dataclass(frozen=True)
class SentRecord:
    """What the last notification of a group (rule) said, as Alertmanager's notification log."""

    firing: frozenset[str]  # fingerprints
    resolved: frozenset[str]
    ts: float

    def to_dict(self) -> dict[str, Any]:
        return {"firing": sorted(self.firing), "resolved": sorted(self.resolved), "ts": self.ts}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SentRecord:
        return cls(
            firing=frozenset(str(f) for f in data.get("firing", ())),
            resolved=frozenset(str(f) for f in data.get("resolved", ())),
            ts=float(data["ts"]),
        )


@dataclass(frozen=True)
class AlertState:
    """Everything the engine remembers. Treat as immutable: every function returns a new one."""

    alerts: dict[str, AlertEntry] = field(default_factory=dict)  # fingerprint -> entry
    sent: dict[RuleName, SentRecord] = field(default_factory=dict)  # group -> last sent
    history: History = field(default_factory=History)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "alerts": [self.alerts[fp].to_dict() for fp in sorted(self.alerts)],
            "sent": {rule.value: rec.to_dict() for rule, rec in sorted(self.sent.items())},
            "history": self.history.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertState:
        """Raises ValueError on a malformed document or another version. Alerts of rules
        this version does not know are dropped (a rule may be renamed between versions)."""
        try:
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {STATE_VERSION}")
            known = {r.value for r in RuleName}
            entries = [
                AlertEntry.from_dict(e) for e in data.get("alerts", []) if e.get("rule") in known
            ]
            return cls(
                alerts={e.fingerprint: e for e in entries},
                sent={
                    RuleName(rule): SentRecord.from_dict(rec)
                    for rule, rec in dict(data.get("sent", {})).items()
                    if rule in known
                },
                history=History.from_dict(dict(data.get("history", {}))),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"alert state is not valid: {exc}") from None


class TransitionKind(StrEnum):
    FIRED = "fired"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Transition:
    """An alert that fired or resolved during `evaluate`. Pending alerts that clear are
    not transitions: nobody hears of them."""

    kind: TransitionKind
    alert: AlertEntry
    ts: float

    def event(self) -> Event:
        """The history event for this transition (inhibited alerts are recorded too)."""
        a = self.alert
        labels = dict(a.labels)
        return Event(
            ts=self.ts,
            kind=EventKind.ALERT_FIRED
            if self.kind == TransitionKind.FIRED
            else EventKind.ALERT_RESOLVED,
            backend=labels.get("backend"),
            message=a.summary,
            data={
                "rule": a.rule.value,
                "severity": a.severity.value,
                "labels": labels,
                "value": a.value,
                "inhibited": a.inhibited,
            },
        )


def evaluate(
    state: AlertState, current: list[Condition], now: float
) -> tuple[AlertState, list[Transition]]:
    """Advance every alert one step (pure). An active condition starts pending and fires
    once it has held for the rule's `for_s` (at once when 0); a pending alert whose
    condition clears goes back to inactive silently; a firing one resolves. A resolved
    alert stays in the state until its resolved notice is marked sent, and only if its
    firing was notified (else it is dropped at once). Inhibition is recomputed last."""
    active = {c.fingerprint: c for c in current}
    sent_firing = {rule: rec.firing for rule, rec in state.sent.items()}
    alerts: dict[str, AlertEntry] = {}
    fired: list[str] = []
    resolved: list[AlertEntry] = []

    for fp, entry in state.alerts.items():
        cond = active.get(fp)
        if cond is None:
            if entry.status == AlertStatus.FIRING:
                done = replace(entry, status=AlertStatus.RESOLVED, resolved_at=now)
                resolved.append(done)
                if fp in sent_firing.get(entry.rule, frozenset()):
                    alerts[fp] = done
            elif entry.status == AlertStatus.RESOLVED and (
                now - (entry.resolved_at or now) < RESOLVED_RETENTION_S
            ):
                alerts[fp] = entry
            continue  # pending and cleared: back to inactive without a word
        if entry.status == AlertStatus.RESOLVED:
            entry = _new_entry(cond, now)
        else:
            entry = replace(entry, value=cond.value, summary=cond.summary)
        alerts[fp] = entry

    for fp, cond in active.items():
        if fp not in alerts:
            alerts[fp] = _new_entry(cond, now)

    for fp, entry in list(alerts.items()):
        if entry.status == AlertStatus.PENDING and now - entry.since >= RULES[entry.rule].for_s:
            alerts[fp] = replace(entry, status=AlertStatus.FIRING, fired_at=now)
            fired.append(fp)

    alerts = _inhibit(alerts)
    transitions = [Transition(TransitionKind.FIRED, alerts[fp], now) for fp in fired]
    transitions += [
        Transition(TransitionKind.RESOLVED, alerts.get(r.fingerprint, r), now) for r in resolved
    ]
    return replace(state, alerts=alerts), transitions


def _new_entry(cond: Condition, now: float) -> AlertEntry:
    return AlertEntry(
        rule=cond.rule,
        labels=cond.labels,
        status=AlertStatus.PENDING,
        since=now,
        value=cond.value,
        summary=cond.summary,
    )


def _inhibit(alerts: dict[str, AlertEntry]) -> dict[str, AlertEntry]:
    sources = [a for a in alerts.values() if a.status == AlertStatus.FIRING]
    out: dict[str, AlertEntry] = {}
    for fp, entry in alerts.items():
        muted = any(
            inh.source == src.rule
            and entry.rule in inh.targets
            and src.fingerprint != fp
            and all(dict(src.labels).get(k) == dict(entry.labels).get(k) for k in inh.equal)
            for inh in INHIBITIONS
            for src in sources
        )
        out[fp] = entry if entry.inhibited == muted else replace(entry, inhibited=muted)
    return out


def step(state: AlertState, tick: Tick, settings: Settings) -> tuple[AlertState, list[Transition]]:
    """One tick: conditions from `tick` (with the remembered history), then `evaluate` at
    `tick.ts`, then the history updated with `tick`. The daemon's single call per tick."""
    current = conditions(tick, settings, state.history)
    new_state, transitions = evaluate(state, current, tick.ts)
    return replace(new_state, history=state.history.observe(tick)), transitions


# --- notifications ---------------------------------------------------------------------------


class NotifyReason(StrEnum):
    FIRST = "first"  # the group's first notification
    NEW_ALERTS = "new_alerts"  # alerts fire that the last notification did not list
    RESOLVED = "resolved"  # alerts resolved since the last notification
    REPEAT = "repeat"  # still firing, and repeat_interval has passed


def needs_update(
    last_sent: SentRecord | None,
    firing: frozenset[str],
    resolved: frozenset[str],
    repeat_interval_s: float,
    now: float,
) -> NotifyReason | None:
    """Whether a group needs a notification now, and why (Alertmanager's needsUpdate).

    `firing`: the group's notifiable firing alerts (not inhibited); `resolved`: its resolved
    alerts whose firing was notified. Muting an alert is neither: it never sends a message."""
    if last_sent is None:
        return NotifyReason.FIRST if firing else None
    if firing - last_sent.firing:
        return NotifyReason.NEW_ALERTS
    if resolved - last_sent.resolved:
        return NotifyReason.RESOLVED
    if firing and now - last_sent.ts >= repeat_interval_s:
        return NotifyReason.REPEAT
    return None


@dataclass(frozen=True)
class Notification:
    """One message for one group (rule): all its firing alerts, and the newly resolved ones."""

    rule: RuleName
    severity: Severity
    reason: NotifyReason
    title: str
    body: str
    firing: frozenset[str]
    resolved: frozenset[str]
    ts: float

    @property
    def level(self) -> str:
        """critical | warning, or resolved when nothing in the group fires any more."""
        return self.severity.value if self.firing else "resolved"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.value,
            "severity": self.severity.value,
            "level": self.level,
            "reason": self.reason.value,
            "title": self.title,
            "body": self.body,
            "firing": sorted(self.firing),
            "resolved": sorted(self.resolved),
            "ts": self.ts,
        }


def plan_notifications(
    state: AlertState, now: float, repeat_interval_s: float, origin: str = ""
) -> list[Notification]:
    """The messages to send this tick, critical groups first. `origin` (e.g. the cluster and
    host name) prefixes every title. Pure: call `mark_sent` for each one handed over."""
    out: list[Notification] = []
    for rule in RULES.values():
        entries = [a for a in state.alerts.values() if a.rule == rule.name]
        firing = sorted(
            (a for a in entries if a.status == AlertStatus.FIRING and not a.inhibited),
            key=lambda a: a.labels,
        )
        resolved = sorted(
            (a for a in entries if a.status == AlertStatus.RESOLVED), key=lambda a: a.labels
        )
        firing_fps = frozenset(a.fingerprint for a in firing)
        resolved_fps = frozenset(a.fingerprint for a in resolved)
        reason = needs_update(
            state.sent.get(rule.name), firing_fps, resolved_fps, repeat_interval_s, now
        )
        if reason is None:
            continue
        out.append(
            Notification(
                rule=rule.name,
                severity=rule.severity,
                reason=reason,
                title=_title(rule, len(firing), len(resolved), origin),
                body=_body(rule, firing, resolved),
                firing=firing_fps,
                resolved=resolved_fps,
                ts=now,
            )
        )
    out.sort(key=lambda n: (n.severity != Severity.CRITICAL, n.rule.value))
    return out


def _title(rule: Rule, n_firing: int, n_resolved: int, origin: str) -> str:
    parts = []
    if n_firing:
        parts.append(f"FIRING:{n_firing}")
    if n_resolved:
        parts.append(f"RESOLVED:{n_resolved}" if n_firing else "RESOLVED")
    prefix = f"{origin}: " if origin else ""
    sev = f" ({rule.severity.value})" if n_firing else ""
    return f"{prefix}[{', '.join(parts)}] {rule.name.value}{sev}"


def _body(rule: Rule, firing: list[AlertEntry], resolved: list[AlertEntry]) -> str:
    lines: list[str] = []
    if firing:
        lines.append("Firing:")
        lines += [f"- {a.summary} (since {_clock(a.since)})" for a in firing]
    if resolved:
        if lines:
            lines.append("")
        lines.append("Resolved:")
        lines += [f"- {a.summary} (resolved {_clock(a.resolved_at or a.since)})" for a in resolved]
    lines += ["", f"Rule: {rule.description}."]
    return "\n".join(lines)


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def mark_sent(state: AlertState, notification: Notification, now: float) -> AlertState:
    """Record that `notification` went out (handed to the dispatcher) at `now`: its group's
    SentRecord is replaced and the resolved alerts it announced are forgotten."""
    sent = dict(state.sent)
    sent[notification.rule] = SentRecord(notification.firing, notification.resolved, now)
    alerts = {
        fp: a
        for fp, a in state.alerts.items()
        if not (a.status == AlertStatus.RESOLVED and fp in notification.resolved)
    }
    return replace(state, alerts=alerts, sent=sent)


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveAlert:
    """One row of `conduitctl alerts`."""

    rule: RuleName
    severity: Severity
    labels: dict[str, str]
    state: AlertStatus  # pending | firing
    since: float
    value: float | None
    summary: str
    inhibited: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.value,
            "severity": self.severity.value,
            "labels": self.labels,
            "state": self.state.value,
            "since": self.since,
            "value": self.value,
            "summary": self.summary,
            "inhibited": self.inhibited,
        }


def active_alerts(state: AlertState) -> list[ActiveAlert]:
    """Pending and firing alerts: firing first, critical first, then by rule and labels."""
    rows = [
        ActiveAlert(
            rule=a.rule,
            severity=a.severity,
            labels=dict(a.labels),
            state=a.status,
            since=a.since,
            value=a.value,
            summary=a.summary,
            inhibited=a.inhibited,
        )
        for a in state.alerts.values()
        if a.status in (AlertStatus.PENDING, AlertStatus.FIRING)
    ]
    rows.sort(
        key=lambda r: (
            r.state != AlertStatus.FIRING,
            r.severity != Severity.CRITICAL,
            r.rule.value,
            sorted(r.labels.items()),
        )
    )
    return rows


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)

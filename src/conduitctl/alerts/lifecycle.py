"""The alert lifecycle (pure): inactive -> pending (waiting the rule's `for_s`) -> firing ->
resolved, inhibition recomputed after every step, and the transitions the history records."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from conduitctl.alerts.detect import Condition, conditions
from conduitctl.alerts.rules import INHIBITIONS, RULES
from conduitctl.alerts.state import AlertEntry, AlertState, AlertStatus
from conduitctl.events import Event, EventKind
from conduitctl.observe.model import Tick
from conduitctl.settings import Settings

RESOLVED_RETENTION_S = 86400.0  # a resolved alert nobody notified about is forgotten after this


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

"""Notifications (pure): one message per rule (the group) that needs one, decided by
`needs_update` (first, new alerts, resolved, repeat interval elapsed) as Alertmanager does,
its title and body, and `mark_sent` recording what went out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from conduitctl.alerts.rules import RULES, Rule, RuleName, Severity
from conduitctl.alerts.state import AlertEntry, AlertState, AlertStatus, SentRecord


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

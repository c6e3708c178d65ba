"""Reading the state (pure): the pending and firing alerts `conduitctl alerts` lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conduitctl.alerts.rules import RuleName, Severity
from conduitctl.alerts.state import AlertState, AlertStatus


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

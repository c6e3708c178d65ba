"""What the engine remembers (pure): each alert's entry, what each group's last notification
said, and the conditions' history, round-tripping through JSON so the daemon can persist it
across its own restart and `conduitctl alerts` can read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from conduitctl.alerts.detect import History, optional_float
from conduitctl.alerts.rules import RULES, Labels, RuleName, Severity, fingerprint, make_labels

STATE_VERSION = 1


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
            value=optional_float(data.get("value")),
            summary=str(data.get("summary", "")),
            fired_at=optional_float(data.get("fired_at")),
            resolved_at=optional_float(data.get("resolved_at")),
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

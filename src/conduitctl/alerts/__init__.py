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

One concern per module: `rules` (the rules, inhibitions, labels), `detect` (conditions from
a tick, the history they need), `state` (what the engine remembers, as JSON), `lifecycle`
(evaluate and step), `notifications` (grouping, dedup, message text), `active` (the list
`conduitctl alerts` shows).
"""

from conduitctl.alerts.active import ActiveAlert, active_alerts
from conduitctl.alerts.detect import Condition, History, OomTrack, conditions, nic_threshold
from conduitctl.alerts.lifecycle import (
    RESOLVED_RETENTION_S,
    Transition,
    TransitionKind,
    evaluate,
    step,
)
from conduitctl.alerts.notifications import (
    Notification,
    NotifyReason,
    mark_sent,
    needs_update,
    plan_notifications,
)
from conduitctl.alerts.rules import (
    INHIBITIONS,
    OOM_QUIET_S,
    QUEUE_BACKLOG_FRACTION,
    QUEUE_WINDOW,
    RULES,
    Inhibition,
    Labels,
    Rule,
    RuleName,
    Scope,
    Severity,
    fingerprint,
    make_labels,
)
from conduitctl.alerts.state import STATE_VERSION, AlertEntry, AlertState, AlertStatus, SentRecord

__all__ = [
    "INHIBITIONS",
    "OOM_QUIET_S",
    "QUEUE_BACKLOG_FRACTION",
    "QUEUE_WINDOW",
    "RESOLVED_RETENTION_S",
    "RULES",
    "STATE_VERSION",
    "ActiveAlert",
    "AlertEntry",
    "AlertState",
    "AlertStatus",
    "Condition",
    "History",
    "Inhibition",
    "Labels",
    "Notification",
    "NotifyReason",
    "OomTrack",
    "Rule",
    "RuleName",
    "Scope",
    "SentRecord",
    "Severity",
    "Transition",
    "TransitionKind",
    "active_alerts",
    "conditions",
    "evaluate",
    "fingerprint",
    "make_labels",
    "mark_sent",
    "needs_update",
    "nic_threshold",
    "plan_notifications",
    "step",
]

"""What happened to the fleet: one event type shared by the daemon, the history and alerts."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    DAEMON_START = "daemon_start"
    DAEMON_STOP = "daemon_stop"
    START = "start"  # a backend started (by up, a restart or the supervisor)
    STOP = "stop"  # stopped on purpose
    DEATH = "death"  # exited on its own; data: exit_code, signal
    OOM = "oom"  # killed by the OOM killer
    HEALTH = "health"  # data: healthy (bool), reason
    FRONT_OUT = "front_out"  # taken out of the front
    FRONT_IN = "front_in"  # back into the front
    FRONT_RELOAD = "front_reload"
    FRONT_RESTART = "front_restart"
    FRONT_DOWN = "front_down"
    RESTART = "restart"  # the supervisor restarted a backend; data: attempt, backoff_s
    CRASH_LOOP = "crash_loop"  # a crash loop: restarts go on, slower; data: restarts, window_s
    DEGRADE = "degrade"  # max clients raised on a survivor; data: from, to
    RESTORE = "restore"  # max clients back to the configured value
    ALERT_FIRED = "alert_fired"
    ALERT_RESOLVED = "alert_resolved"
    NOTIFY_FAILED = "notify_failed"
    # an operator command (restart --all, rollout) stopped short; data: operation and its own
    OPERATION_FAILED = "operation_failed"
    # an operator command changed the fleet (up, scale, down, restart, drain, rollback,
    # rollout); data: command and what it did
    CHANGE = "change"


@dataclass(frozen=True)
class Event:
    ts: float  # unix seconds
    kind: EventKind
    backend: str | None = None  # None: the fleet, the front or the host
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "kind": self.kind.value,
            "backend": self.backend,
            "message": self.message,
            "data": self.data,
        }

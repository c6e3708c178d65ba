"""What the supervisor does this tick (pure): (backends, front, now) -> actions.

Dead or unhealthy backends leave the front at once and are restarted with backoff; healthy
ones come back after `rise` good probes; one that fails again after its allowed restarts is a
crash loop and is left alone (an alert says so); a dead or deaf front is restarted.
Backends an operator command holds are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from conduitctl.supervise.health import Health
from conduitctl.supervise.restarts import RestartPolicy, RestartState, exhausted, may_restart


class Kind(StrEnum):
    FRONT_OUT = "front_out"
    FRONT_IN = "front_in"
    RESTART = "restart"
    CRASH_LOOP = "crash_loop"  # died again after its restarts: say so, restart more slowly
    FRONT_RESTART = "front_restart"


@dataclass(frozen=True)
class BackendView:
    name: str
    running: bool
    health: Health
    restart: RestartState
    in_front: bool
    started_at: float | None = None  # monotonic-free: unix seconds of its last start
    held: bool = False  # an operator command (up, restart, down) is working on it


@dataclass(frozen=True)
class FrontView:
    kind: str  # nginx | haproxy | none
    running: bool
    listening: bool


@dataclass(frozen=True)
class Action:
    kind: Kind
    name: str | None  # the backend; None for the front
    reason: str


def plan_tick(
    backends: list[BackendView],
    front: FrontView,
    now: float,
    policy: RestartPolicy | None = None,
    restart_after: float = 10.0,
) -> list[Action]:
    actions: list[Action] = []
    has_front = front.kind != "none"
    for b in backends:
        if b.held:
            continue
        bad = not b.running or b.health.healthy is False
        why = "not running" if not b.running else f"unhealthy ({b.health.reason or 'probes'})"
        if bad and has_front and b.in_front:
            actions.append(Action(Kind.FRONT_OUT, b.name, why))
        if bad and may_restart(b.restart, now):
            # Alive but failing probes (a hang, or a lossy network): out of the front already;
            # restarted only once it has failed for `restart_after`, so a flaky network does
            # not cost the sessions a restart would drop.
            patient = b.running and now - b.health.since < restart_after
            if patient:
                pass
            else:
                looping = policy is not None and exhausted(policy, b.restart, now)
                if looping and not b.restart.crash_loop:  # said once; the restarts go on
                    actions.append(Action(Kind.CRASH_LOOP, b.name, why))
                actions.append(Action(Kind.RESTART, b.name, why))
        if not bad and b.health.healthy and has_front and not b.in_front:
            actions.append(Action(Kind.FRONT_IN, b.name, "healthy again"))
    if has_front and (not front.running or not front.listening):
        reason = "not running" if not front.running else "not listening"
        actions.append(Action(Kind.FRONT_RESTART, None, reason))
    return actions

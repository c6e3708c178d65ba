"""Desired backends + what was observed -> the whole plan of a converge (pure).

`up` executes the plan; `--dry-run` prints it. The supervisor (later) builds on the same value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from conduitctl.runtime.base import BackendStatus, LaunchSpec, State


class ActionKind(StrEnum):
    CREATE = "create"  # not there: create and start
    START = "start"  # there, same config, not running
    RECREATE = "recreate"  # config changed: replace, keeping its data
    REMOVE = "remove"  # not desired any more (scale down): remove, keeping its data
    KEEP = "keep"  # running with the desired config: nothing to do


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    name: str
    reason: str
    spec: LaunchSpec | None = None  # None for REMOVE

    @property
    def changes(self) -> bool:
        return self.kind != ActionKind.KEEP


def plan_backends(desired: list[LaunchSpec], observed: list[BackendStatus]) -> list[Action]:
    """What to do for each backend, in a safe order: removals first, then creations and starts,
    then recreations (the executor does those one at a time), then the ones to keep."""
    by_name = {status.name: status for status in observed}
    wanted = {spec.name for spec in desired}
    removes = [
        Action(ActionKind.REMOVE, status.name, "not in the config (scaled down)")
        for status in sorted(observed, key=lambda s: s.index)
        if status.name not in wanted
    ]
    creates, starts, recreates, keeps = [], [], [], []
    for spec in desired:
        status = by_name.get(spec.name)
        if status is None or status.state == State.MISSING:
            creates.append(Action(ActionKind.CREATE, spec.name, "missing", spec))
        elif status.config_hash != spec.config_hash():
            recreates.append(Action(ActionKind.RECREATE, spec.name, "config changed", spec))
        elif status.image_changed:
            reason = f"{spec.image} is another image now"
            recreates.append(Action(ActionKind.RECREATE, spec.name, reason, spec))
        elif status.state != State.RUNNING:
            reason = f"{status.state.value}" + (
                f" (exit code {status.exit_code})" if status.exit_code is not None else ""
            )
            starts.append(Action(ActionKind.START, spec.name, reason, spec))
        else:
            keeps.append(Action(ActionKind.KEEP, spec.name, "running, up to date", spec))
    return [*removes, *creates, *starts, *recreates, *keeps]


# --- the whole plan -------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """What a change looked at before planning (read by app.change; the plan itself is pure)."""

    backends: list[BackendStatus]
    drained: frozenset[str] = frozenset()  # the operator's: they stay stopped
    # Names a step needs but something else holds, or conduit-manager's stations: why each.
    foreign: dict[str, str] = field(default_factory=dict)
    lost_keys: frozenset[str] = frozenset()  # no key in its data while a backup of it exists
    broken_keys: dict[str, str] = field(default_factory=dict)  # a key file that does not parse
    busy_ports: dict[str, str] = field(default_factory=dict)  # backend -> "tcp 127.0.0.1:x"
    front: str = "none"  # what the front would do: start | reload | unchanged | none
    front_error: str | None = None  # the front's tool rejects the config it would install
    legacy: bool = False  # `rollback --legacy` runs: leave it first (keys carried back)
    unlaunchable: dict[str, str] = field(default_factory=dict)  # backend -> why (its user...)


@dataclass(frozen=True)
class FleetPlan:
    """Every step of a converge, decided before the first one; `refusals` non-empty means the
    change is refused whole and nothing is done."""

    actions: list[Action]
    front: str
    refusals: list[str] = field(default_factory=list)
    leave_legacy: bool = False

    @property
    def changes(self) -> bool:
        return (
            self.leave_legacy
            or any(a.changes for a in self.actions)
            or self.front in ("start", "reload")
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "actions": [
                {"kind": a.kind.value, "name": a.name, "reason": a.reason} for a in self.actions
            ],
            "front": self.front,
            "refusals": self.refusals,
            "leave_legacy": self.leave_legacy,
        }


DRAINED_REASON = "drained (conduitctl undrain brings it back)"


def plan_fleet(
    desired: list[LaunchSpec], observed: Observed, *, new_keys: bool = False
) -> FleetPlan:
    """The whole converge (pure): backend actions with the drained rule, the front's step, and
    every reason a step would fail, so the change is refused before anything is touched."""
    actions = [
        Action(ActionKind.KEEP, a.name, DRAINED_REASON, a.spec)
        if a.name in observed.drained and a.kind == ActionKind.START
        else a
        for a in plan_backends(desired, observed.backends)
    ]
    fresh = {a.name for a in actions if a.kind in (ActionKind.CREATE, ActionKind.START)}
    launching = fresh | {a.name for a in actions if a.kind == ActionKind.RECREATE}
    refusals = [f"{name}: {why}" for name, why in sorted(observed.foreign.items())]
    if not new_keys:
        refusals += [
            f"{name}: no identity key in its data but a backup exists; run `conduitctl keys "
            "restore`, or pass --new-keys to start as a new station"
            for name in sorted(observed.lost_keys & fresh)
        ]
        refusals += [
            f"{name}: its key file does not parse ({why}): it would start as a new station; "
            "restore it (`conduitctl keys restore`), or pass --new-keys to start as one"
            for name, why in sorted(observed.broken_keys.items())
            if name in launching
        ]
    refusals += [
        f"{name}: {where} is taken by another process; free it or move "
        "workload.listen_port_base / metrics_port_base"
        for name, where in sorted(observed.busy_ports.items())
        if name in fresh
    ]
    refusals += [
        f"{name}: {why}" for name, why in sorted(observed.unlaunchable.items()) if name in launching
    ]
    if observed.front_error is not None:
        refusals.append(f"front: {observed.front_error}")
    return FleetPlan(actions, observed.front, refusals, observed.legacy)

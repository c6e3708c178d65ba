"""Desired backends + what the runtime holds -> a plan of actions (pure).

`up` executes the plan; `--dry-run` prints it. The supervisor (later) builds on the same value.
"""

from __future__ import annotations

from dataclasses import dataclass
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

"""Going back, and going forward in stages, through the change protocol
(conduitctl.app.change): rollback to a snapshot, the conduit-manager layout, and the staged
rollout (whose driver holds the operator lock until the rollout ends)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conduitctl.app.change import changing, record, snapshot, stop_supervisor, tell_supervisor
from conduitctl.app.context import Fleet
from conduitctl.ops import snapshots
from conduitctl.ops.converge import refuse
from conduitctl.ops.rollback import RollbackPlan, RollbackResult, plan_rollback, rollback
from conduitctl.rollout_plan import Gates
from conduitctl.rollout_state import RolloutState, refuse_if_active, refuse_if_driven
from conduitctl.settings import Settings

Progress = Callable[[str], None]
# `rollout --abort` and `down` stop a driver and then take its lock: its process must be gone.
AFTER_DRIVER_S = 5.0


def _quiet(_: str) -> None:
    pass


def rollback_plan(fleet: Fleet, ref: str | None) -> RollbackPlan:
    """`rollback --dry-run`: what rolling back to snapshot `ref` (None: the newest) would do."""
    chosen = snapshots.resolve(fleet.state_dir, ref)
    return plan_rollback(
        fleet.settings, chosen, runtime_for=_runtime_for, front_for=fleet.front_for
    )


def roll_back(
    fleet: Fleet, ref: str | None, *, batch: int = 2, progress: Progress = _quiet
) -> RollbackResult:
    """The fleet, the front and conduit.toml back to a snapshot; refused whole first."""
    with changing(fleet, fleet.known_backends()):  # `rollout --abort` rolls a rollout back
        planned = rollback_plan(fleet, ref)
        refuse(planned.plan)
        result = rollback(
            fleet.settings, fleet.config_path, planned,
            runtime_for=_runtime_for, front_for=fleet.front_for,
            progress=progress, batch=batch,
        )  # fmt: skip
        back = Fleet.of(planned.target, fleet.config_path)
        record(back, "rollback", f"rollback to {result.snapshot}",
               snapshot=result.snapshot, saved_as=result.saved_as)  # fmt: skip
    if tell_supervisor(back, start=False) is not None:
        progress("supervisor re-read conduit.toml")
    return result


def to_legacy(fleet: Fleet, *, progress: Progress = _quiet) -> Any:
    """conduit-manager's layout on the same keys, no front, no supervisor (`up` comes back)."""
    from conduitctl.ops.legacy_layout import to_legacy as switch

    with changing(fleet, fleet.known_backends()):
        snapshot(fleet, "legacy", progress)
        stop_supervisor(fleet, progress)  # it would restart the backends being replaced
        result = switch(fleet.settings, fleet.runtime, fleet.front, progress=progress)
        record(fleet, "rollback", "conduit-manager's layout",
               containers=[e.container for e in result.entries])  # fmt: skip
    return result


@dataclass(frozen=True)
class Staging:
    """A new rollout's parameters (`conduitctl rollout`)."""

    stages: str | None
    soak_s: float
    clients_steps: str | None
    gates: Gates
    drain_timeout: float


def rollout(
    fleet: Fleet,
    *,
    staging: Staging | None = None,
    abort: bool = False,
    progress: Progress = _quiet,
) -> RolloutState:
    """Begin a rollout (`staging`), go on with one whose driver died (neither), or stop one
    and roll it back (`abort`); then drive it to its end, under the operator lock."""
    from conduitctl.ops import rollout as staged

    if abort:
        staged.abort(fleet.state_dir)  # stops its driver: the lock is free once it is gone
    elif staging is not None:
        refuse_if_active(fleet.state_dir)
    else:
        refuse_if_driven(fleet.state_dir)
    wait = AFTER_DRIVER_S if abort else 0.0
    # No holds: between its own replacements the supervisor heals the fleet as usual.
    with changing(fleet, [], rollout=True, lock_wait_s=wait):
        if staging is not None:
            begun = staged.begin(
                fleet.settings, fleet.config_path, fleet.runtime, fleet.front,
                stages=staging.stages, soak_s=staging.soak_s,
                clients_steps=staging.clients_steps, gates=staging.gates,
                drain_timeout=staging.drain_timeout,
            )  # fmt: skip
            record(fleet, "rollout", f"rollout {begun.id} begun: stages {begun.stages}",
                   rollout=begun.id, base_snapshot=begun.base_snapshot)  # fmt: skip

        def reread() -> None:
            tell_supervisor(fleet, start=False)

        driver = staged.Driver(
            fleet.settings, fleet.config_path, fleet.runtime, fleet.front,
            front_for=fleet.front_for, tell_supervisor=reread, progress=progress,
        )  # fmt: skip
        state = driver.run()
        why = f": {state.message}" if state.message else ""
        record(fleet, "rollout", f"rollout {state.id} {state.phase.value}{why}",
               rollout=state.id, phase=state.phase.value)  # fmt: skip
    return state


def _runtime_for(settings: Settings) -> Any:
    from conduitctl.runtime import runtime_for

    return runtime_for(settings)

"""up, down, scale, restart: carry out a plan against the runtime and the front.

`up` is idempotent: it converges to the settings and, run twice, changes nothing the second
time. Identity keys (volumes, data dirs) are never deleted unless `down --purge`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tomlkit

from conduitctl.errors import ConduitctlError, Refused, ValidationFailed
from conduitctl.fleet import desired_backends, require_backend
from conduitctl.front.base import Front
from conduitctl.intent import drained
from conduitctl.observe.ports import ports_in_use
from conduitctl.ops.ready import NETWORK, READY_TIMEOUT, Probes, wait_ready
from conduitctl.reconcile import Action, ActionKind, FleetPlan, Observed, plan_fleet
from conduitctl.runtime.base import LaunchSpec, Runtime, State, launch_specs
from conduitctl.settings import Settings, parse_settings

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class UpResult:
    actions: list[Action]
    front: str  # started | reloaded | unchanged | none
    changed: bool
    elapsed_s: float

    def to_dict(self) -> dict[str, object]:
        return {
            "changed": self.changed,
            "front": self.front,
            "elapsed_s": round(self.elapsed_s, 2),
            "actions": [
                {"kind": a.kind.value, "name": a.name, "reason": a.reason} for a in self.actions
            ],
        }


@dataclass(frozen=True)
class DownResult:
    stopped: list[str] = field(default_factory=list)
    purged: list[str] = field(default_factory=list)
    front_stopped: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"stopped": self.stopped, "purged": self.purged, "front_stopped": self.front_stopped}


def observe(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    specs: list[LaunchSpec],
    freed: frozenset[int] = frozenset(),
) -> Observed:
    """Everything the plan needs to know, read before any step: the backends, the drained
    ones, names in the way, lost keys, taken ports (but the `freed` ones: another fleet this
    change stops first), and what the front would do."""
    from conduitctl.ops.keys import broken_keys, store_for, would_regenerate
    from conduitctl.ops.legacy_layout import legacy_active

    statuses = runtime.backends()
    out = frozenset(drained(settings.state_dir))
    legacy = legacy_active(settings.state_dir)
    foreign = runtime.foreign(spec.name for spec in specs)
    lost: frozenset[str] = frozenset()
    broken: dict[str, str] = {}
    busy: dict[str, str] = {}
    if not legacy:  # leaving the legacy layout carries keys back and frees the ports first
        store = store_for(settings, runtime)
        lost = frozenset(would_regenerate(settings, store=store))
        broken = broken_keys((spec.name for spec in specs), store)
        running = {s.name for s in statuses if s.state == State.RUNNING}
        busy = ports_in_use([s.backend for s in specs if s.name not in running], freed)
    front_step, front_error = "none", None
    if front.balances:
        try:
            front_step = front.plan(out)
        except ValidationFailed as exc:
            front_error = str(exc)
    unlaunchable = runtime.launch_problems(specs)
    return Observed(
        statuses,
        drained=out,
        foreign=foreign,
        lost_keys=lost,
        broken_keys=broken,
        busy_ports=busy,
        front=front_step,
        front_error=front_error,
        legacy=legacy,
        unlaunchable=unlaunchable,
    )


def plan(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    *,
    new_keys: bool = False,
    freed: frozenset[int] = frozenset(),
) -> FleetPlan:
    """The whole converge to `settings`, decided before any step (nothing is changed)."""
    specs = launch_specs(settings)
    return plan_fleet(specs, observe(settings, runtime, front, specs, freed), new_keys=new_keys)


def refuse(plan: FleetPlan) -> None:
    """Raise Refused, naming every step that would fail, when the plan cannot be carried out."""
    if plan.refusals:
        more = f" (and {len(plan.refusals) - 1} more)" if len(plan.refusals) > 1 else ""
        raise Refused(f"nothing changed: {plan.refusals[0]}{more}")


def up(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    *,
    new_keys: bool = False,
    progress: Progress = _quiet,
    batch: int = 1,
    probes: Probes = NETWORK,
) -> UpResult:
    """Plan, refuse whole or carry out (for callers already inside a change: rollback, the
    roll back of a rollout). Commands go through conduitctl.app.change."""
    whole = plan(settings, runtime, front, new_keys=new_keys)
    refuse(whole)
    return execute(settings, runtime, front, whole, progress=progress, batch=batch, probes=probes)


def execute(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    plan: FleetPlan,
    *,
    progress: Progress = _quiet,
    batch: int = 1,
    probes: Probes = NETWORK,
) -> UpResult:
    """Carry out a plan that was not refused; changed backends are replaced `batch` at a time,
    each batch ready (`probes.wait`) before the next (1 keeps all but one serving; rollback
    uses more)."""
    started = time.monotonic()
    actions = plan.actions
    if plan.leave_legacy:
        from conduitctl.ops.legacy_layout import from_legacy

        progress("leaving conduit-manager's layout (keys carried back)")
        from_legacy(settings, runtime, front, progress=progress)
    by_kind: dict[ActionKind, list[Action]] = {kind: [] for kind in ActionKind}
    for action in actions:
        by_kind[action.kind].append(action)
    fresh = [*by_kind[ActionKind.CREATE], *by_kind[ActionKind.START]]
    for action in fresh:
        progress(f"{action.kind.value} {action.name} ({action.reason})")
        runtime.start(_spec(action))
    not_ready = probes.wait(settings, [_spec(a).backend for a in fresh], READY_TIMEOUT)
    if not_ready:
        raise ConduitctlError(
            f"{', '.join(not_ready)} not ready after {READY_TIMEOUT:g}s; "
            f"see `conduitctl logs {not_ready[0]}`"
        )
    recreate = by_kind[ActionKind.RECREATE]
    for first in range(0, len(recreate), max(batch, 1)):
        group = recreate[first : first + max(batch, 1)]
        for action in group:
            progress(f"recreate {action.name} ({action.reason})")
            runtime.start(_spec(action))
        not_ready = probes.wait(settings, [_spec(a).backend for a in group], READY_TIMEOUT)
        if not_ready:
            raise ConduitctlError(
                f"{', '.join(not_ready)} not ready after its recreate; stopping here; "
                f"see `conduitctl logs {not_ready[0]}`"
            )
    front_result = "none"
    if front.balances:
        front_result = front.apply(frozenset(drained(settings.state_dir)))
        if front_result != "unchanged":
            progress(f"front {front.kind} {front_result}")
    # Extra backends leave the front (above) before they are removed.
    for action in by_kind[ActionKind.REMOVE]:
        progress(f"remove {action.name} ({action.reason}; its data is kept)")
        runtime.stop(action.name)
        runtime.remove(action.name, purge=False)
    changed = plan.changes or front_result in ("started", "reloaded")
    return UpResult(actions, front_result, changed, time.monotonic() - started)


def _spec(action: Action) -> LaunchSpec:
    assert action.spec is not None  # every kind but REMOVE carries its spec
    return action.spec


def down(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    *,
    purge: bool = False,
    progress: Progress = _quiet,
) -> DownResult:
    """Stop the front, then every backend; keep data unless `purge`."""
    front_stopped = front.stop()
    if front_stopped:
        progress(f"front {settings.front.kind} stopped")
    stopped = []
    for status in runtime.backends():
        progress(f"stop {status.name}")
        runtime.stop(status.name)
        runtime.remove(status.name, purge=purge)
        stopped.append(status.name)
    purged: list[str] = []
    if purge:
        purged = sorted(set(stopped) | set(runtime.data_names()))
        for name in runtime.data_names():
            runtime.remove(name, purge=True)
    return DownResult(stopped=stopped, purged=purged, front_stopped=front_stopped)


def restart(settings: Settings, runtime: Runtime, name: str, progress: Progress = _quiet) -> None:
    specs = {spec.name: spec for spec in launch_specs(settings)}
    require_backend(name, specs)
    progress(f"stop {name}")
    runtime.stop(name)
    progress(f"start {name}")
    runtime.start(specs[name])
    if wait_ready(settings, [specs[name].backend], READY_TIMEOUT):
        raise ConduitctlError(f"{name} not ready after restart; see `conduitctl logs {name}`")


def with_container_count(config_path: Path, count: int) -> tuple[str, Settings]:
    """conduit.toml's text with cluster.containers = `count` (its comments kept), and its
    settings, validated; the file itself is not written (the caller does, once the change
    is not refused)."""
    document = tomlkit.parse(config_path.read_text())
    cluster = document.setdefault("cluster", tomlkit.table())
    cluster["containers"] = count
    new_text = tomlkit.dumps(document)
    return new_text, parse_settings(new_text, source=f"{config_path} (containers = {count})")


def backend_names(settings: Settings) -> list[str]:
    return [b.name for b in desired_backends(settings)]

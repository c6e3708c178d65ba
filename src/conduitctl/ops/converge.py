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

from conduitctl.errors import BadInput, ConduitctlError
from conduitctl.fleet import desired_backends
from conduitctl.front.base import Front
from conduitctl.ops.ready import READY_TIMEOUT, wait_ready
from conduitctl.reconcile import Action, ActionKind, plan_backends
from conduitctl.runtime.base import LaunchSpec, Runtime, launch_specs
from conduitctl.settings import Settings, parse_settings
from conduitctl.settings_file import replace_config

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


def up(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    *,
    dry_run: bool = False,
    new_keys: bool = False,
    before_change: Callable[[], object] | None = None,
    progress: Progress = _quiet,
    batch: int = 1,
) -> UpResult:
    """Converge; changed backends are replaced `batch` at a time, each batch ready before the
    next (1 keeps all but one serving; rollback uses more, for speed)."""
    started = time.monotonic()
    from conduitctl.intent import drained

    specs = launch_specs(settings)
    out = drained(settings.state_dir)  # the operator drained them: they stay stopped
    actions = [
        Action(ActionKind.KEEP, a.name, "drained (conduitctl undrain brings it back)", a.spec)
        if a.name in out and a.kind == ActionKind.START
        else a
        for a in plan_backends(specs, runtime.backends())
    ]
    if dry_run:
        return UpResult(actions, "unchanged", any(a.changes for a in actions), 0.0)

    if before_change is not None and any(a.changes for a in actions):
        before_change()  # e.g. a snapshot, so the change can be rolled back
    by_kind: dict[ActionKind, list[Action]] = {kind: [] for kind in ActionKind}
    for action in actions:
        by_kind[action.kind].append(action)
    fresh = [*by_kind[ActionKind.CREATE], *by_kind[ActionKind.START]]
    if fresh and not new_keys:
        from conduitctl.ops.keys import store_for, would_regenerate

        lost = set(would_regenerate(settings, store=store_for(settings, runtime)))
        lost &= {a.name for a in fresh}
        if lost:
            raise BadInput(
                f"{', '.join(sorted(lost))}: no identity key in its data but a backup exists; "
                "run `conduitctl keys restore`, or pass --new-keys to start as a new station"
            )
    for action in fresh:
        progress(f"{action.kind.value} {action.name} ({action.reason})")
        runtime.start(_spec(action))
    not_ready = wait_ready(settings, [_spec(a).backend for a in fresh], READY_TIMEOUT)
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
        not_ready = wait_ready(settings, [_spec(a).backend for a in group], READY_TIMEOUT)
        if not_ready:
            raise ConduitctlError(
                f"{', '.join(not_ready)} not ready after its recreate; stopping here; "
                f"see `conduitctl logs {not_ready[0]}`"
            )
    front_result = "none"
    if settings.front.kind != "none":
        front_result = front.apply(frozenset(out))
        if front_result != "unchanged":
            progress(f"front {settings.front.kind} {front_result}")
    # Extra backends leave the front (above) before they are removed.
    for action in by_kind[ActionKind.REMOVE]:
        progress(f"remove {action.name} ({action.reason}; its data is kept)")
        runtime.stop(action.name)
        runtime.remove(action.name, purge=False)
    changed = any(a.changes for a in actions) or front_result in ("started", "reloaded")
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
    if name not in specs:
        raise BadInput(f"no backend named {name}; choose one of: {', '.join(specs)}")
    progress(f"stop {name}")
    runtime.stop(name)
    progress(f"start {name}")
    runtime.start(specs[name])
    if wait_ready(settings, [specs[name].backend], READY_TIMEOUT):
        raise ConduitctlError(f"{name} not ready after restart; see `conduitctl logs {name}`")


def set_container_count(config_path: Path, count: int) -> Settings:
    """Rewrite cluster.containers in conduit.toml, keeping its comments; validated first."""
    text = config_path.read_text()
    document = tomlkit.parse(text)
    cluster = document.setdefault("cluster", tomlkit.table())
    cluster["containers"] = count
    new_text = tomlkit.dumps(document)
    settings = parse_settings(new_text, source=f"{config_path} (containers = {count})")
    replace_config(new_text, config_path)
    return settings


def backend_names(settings: Settings) -> list[str]:
    return [b.name for b in desired_backends(settings)]

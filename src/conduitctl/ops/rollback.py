"""Rollback: return the fleet and the front to a snapshot.

The snapshot's conduit.toml becomes conduit.toml again (the replaced file is kept in the
snapshot taken just before, so a second rollback undoes the first), images re-tagged to the
IDs the snapshot recorded when they are still here, then the usual converge. Identity keys
are never deleted: converge removes containers and processes, never their data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conduitctl.errors import BadInput
from conduitctl.fleet import desired_backends
from conduitctl.front.base import Front
from conduitctl.ops import snapshots
from conduitctl.ops.converge import UpResult, down, execute, plan, refuse
from conduitctl.reconcile import FleetPlan
from conduitctl.runtime.base import Runtime
from conduitctl.settings import Settings, parse_settings
from conduitctl.settings_file import replace_config
from conduitctl.statedir import write_atomic

Progress = Callable[[str], None]
REPLACED = "conduit.toml.replaced"  # in the pre-rollback snapshot: the file rollback overwrote


@dataclass(frozen=True)
class RollbackResult:
    snapshot: str  # the one rolled back to
    saved_as: str  # the snapshot of the fleet as it was just before (rollback to undo)
    up: UpResult
    retagged: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "snapshot": self.snapshot,
            "saved_as": self.saved_as,
            "retagged": self.retagged,
            "elapsed_s": round(self.elapsed_s, 2),
            **{k: v for k, v in self.up.to_dict().items() if k != "elapsed_s"},
        }


def fleet_moves(current: Settings, target: Settings) -> bool:
    """True when the target is a different fleet (name, runtime or state): the current one
    must be stopped first, or it would be left running beside the restored one."""
    return (current.cluster.name, current.cluster.runtime, current.state_dir) != (
        target.cluster.name,
        target.cluster.runtime,
        target.state_dir,
    )


def front_moves(current: Settings, target: Settings) -> bool:
    """True when the target's front is another kind: the current one must stop first."""
    return current.front.kind != target.front.kind


def load_target(snapshot: snapshots.Snapshot) -> tuple[str, Settings]:
    text = snapshots.settings_text(snapshot)
    if text is None:
        raise BadInput(f"snapshot {snapshot.id} holds no settings; pick another (snapshots)")
    return text, parse_settings(text, source=f"snapshot {snapshot.id}")


def retag_images(runtime: Runtime, images: dict[str, str | None]) -> list[str]:
    """Point each tag back at the image ID the snapshot recorded, when that image is still
    here and the tag has moved (an image rebuilt under the same tag)."""
    return [tag for tag, image_id in images.items() if image_id and runtime.retag(tag, image_id)]


def ports_of(settings: Settings) -> frozenset[int]:
    """Every port the fleet's backends bind (metrics and listen)."""
    ports = set()
    for backend in desired_backends(settings):
        ports.add(backend.metrics_port)
        if backend.listen_port is not None:
            ports.add(backend.listen_port)
    return frozenset(ports)


@dataclass(frozen=True)
class RollbackPlan:
    snapshot: snapshots.Snapshot
    text: str  # its conduit.toml
    target: Settings
    plan: FleetPlan  # the converge to it, as the fleet is now


def plan_rollback(
    current: Settings,
    snapshot: snapshots.Snapshot,
    *,
    runtime_for: Callable[[Settings], Runtime],
    front_for: Callable[[Settings], Front],
) -> RollbackPlan:
    """What rolling back to `snapshot` would do, by the same rules as `up` (nothing is
    changed). A fleet that moves (another name or state dir) frees its ports first."""
    text, target = load_target(snapshot)
    freed = ports_of(current) if fleet_moves(current, target) else frozenset()
    whole = plan(target, runtime_for(target), front_for(target), freed=freed)
    return RollbackPlan(snapshot, text, target, whole)


def rollback(
    current: Settings,
    config_path: Path,
    planned: RollbackPlan,
    *,
    runtime_for: Callable[[Settings], Runtime],
    front_for: Callable[[Settings], Front],
    progress: Progress = lambda _: None,
    batch: int = 2,
) -> RollbackResult:
    """Carry out a rollback plan that was not refused (`refuse(planned.plan)`); the caller
    holds the backends and tells the supervisor. conduit.toml is replaced only once the
    converge, planned again after the moves and the re-tags, is not refused."""
    started = time.monotonic()
    snapshot, target = planned.snapshot, planned.target
    runtime, front = runtime_for(current), front_for(current)
    saved = snapshots.take(current, runtime, front.installed_config, "rollback")
    write_atomic(saved.path / REPLACED, config_path.read_bytes(), secret=True)
    progress(f"snapshot {saved.id} (rollback to it to undo this one)")
    if fleet_moves(current, target):
        progress(f"stopping fleet {current.cluster.name} (its data is kept)")
        down(current, runtime, front, progress=progress)
    elif front_moves(current, target) and front.stop():
        progress(f"front {current.front.kind} stopped")
    target_runtime, target_front = runtime_for(target), front_for(target)
    retagged = retag_images(target_runtime, snapshot.images)
    for tag in retagged:
        progress(f"image {tag} points at {snapshot.images[tag]} again")
    whole = plan(target, target_runtime, target_front)  # the images may have moved back
    refuse(whole)
    replace_config(planned.text, config_path)
    progress(f"{config_path} restored from {snapshot.id}")
    result = execute(target, target_runtime, target_front, whole, progress=progress, batch=batch)
    snapshots.record_applied(target, config_path)
    return RollbackResult(snapshot.id, saved.id, result, retagged, time.monotonic() - started)

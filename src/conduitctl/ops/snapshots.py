"""Snapshots: before every change, what the fleet was (settings, the front's config, image
IDs, the backends and their config hashes), so `rollback` can return to it.

STATE_DIR/snapshots/<stamp>-<reason>/ holds conduit.toml (0600 when it holds secrets), the
front's config as installed, and manifest.json.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conduitctl.errors import BadInput
from conduitctl.runtime.base import Runtime, State
from conduitctl.settings import Settings
from conduitctl.statedir import StateDir, write_atomic, write_config_copy

KEEP = 50  # the newest snapshots kept; older ones are pruned
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Snapshot:
    id: str
    path: Path
    taken_at: float
    reason: str
    backends: list[dict[str, Any]] = field(default_factory=list)
    images: dict[str, str | None] = field(default_factory=dict)
    front: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": str(self.path),
            "taken_at": self.taken_at,
            "reason": self.reason,
            "backends": self.backends,
            "images": self.images,
            "front": self.front,
        }


def snapshot_dir(state_dir: Path) -> Path:
    return StateDir(state_dir).snapshots


def applied_path(state_dir: Path) -> Path:
    """A copy of the conduit.toml the fleet was last converged to."""
    return StateDir(state_dir).applied


def record_applied(settings: Settings, config_path: Path) -> None:
    """After a successful change: these are the settings the fleet now runs."""
    set_applied(settings.state_dir, config_path.read_text())


def set_applied(state_dir: Path, text: str) -> None:
    """The fleet now runs this conduit.toml text (private when it holds secrets)."""
    write_config_copy(text, applied_path(state_dir))


def take(
    settings: Settings,
    runtime: Runtime,
    front_config: Path | None,
    reason: str,
    now: float | None = None,
) -> Snapshot:
    """Record the fleet as it is now, before a change."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    base = snapshot_dir(settings.state_dir)
    path = base / f"{stamp}-{reason}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = base / f"{stamp}-{reason}-{suffix}"
    path.mkdir(parents=True, mode=0o700)
    # The settings the running fleet came from (the file on disk may already be edited).
    applied = applied_path(settings.state_dir)
    if applied.exists():
        write_config_copy(applied.read_text(), path / "conduit.toml")
    if front_config is not None and front_config.exists():
        write_atomic(path / front_config.name, front_config.read_bytes(), secret=False)
    statuses = runtime.backends()
    backends = [
        {
            "name": status.name,
            "state": status.state.value,
            "config_hash": status.config_hash,
            "running": status.state == State.RUNNING,
            "image_id": status.image_id,
        }
        for status in statuses
    ]
    image = settings.workload.effective_image
    # What the backends run, not what the tag names now (a pull may have moved it already).
    running = next((s.image_id for s in statuses if s.image_id), None)
    images = {image: running or runtime.image_id(image)} if image else {}
    snapshot = Snapshot(
        id=path.name,
        path=path,
        taken_at=now,
        reason=reason,
        backends=backends,
        images=images,
        front=settings.front.kind,
    )
    write_atomic(path / MANIFEST, json.dumps(snapshot.to_dict(), indent=2), secret=False)
    prune(base)
    return snapshot


def load(path: Path) -> Snapshot:
    data = json.loads((path / MANIFEST).read_text())
    return Snapshot(
        id=data["id"],
        path=path,
        taken_at=float(data["taken_at"]),
        reason=data["reason"],
        backends=list(data.get("backends", [])),
        images=dict(data.get("images", {})),
        front=data.get("front", "none"),
    )


def list_snapshots(state_dir: Path) -> list[Snapshot]:
    """Oldest first; unreadable directories are skipped."""
    base = snapshot_dir(state_dir)
    found = []
    for path in sorted(base.iterdir()) if base.is_dir() else []:
        try:
            found.append(load(path))
        except (OSError, ValueError, KeyError):
            continue
    return sorted(found, key=lambda s: s.taken_at)


def prune(base: Path, keep: int = KEEP) -> None:
    paths = sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.name)
    for old in paths[:-keep] if len(paths) > keep else []:
        shutil.rmtree(old, ignore_errors=True)


def settings_text(snapshot: Snapshot) -> str | None:
    """The conduit.toml the fleet ran when the snapshot was taken (None: taken before any)."""
    path = snapshot.path / "conduit.toml"
    return path.read_text() if path.exists() else None


def resolve(state_dir: Path, ref: str | None) -> Snapshot:
    """A snapshot by id, unique id prefix, or (None) the newest one that holds settings."""
    found = [s for s in list_snapshots(state_dir) if settings_text(s) is not None]
    if not found:
        raise BadInput(
            "no snapshot to roll back to (one is taken before every change: up, scale, rollout)"
        )
    if ref is None:
        return found[-1]
    matches = [s for s in found if s.id == ref] or [s for s in found if s.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise BadInput(f"no snapshot {ref!r}; `conduitctl snapshots` lists them")
    names = ", ".join(s.id for s in matches[:3])
    raise BadInput(f"{ref!r} matches {len(matches)} snapshots ({names}...); give more of the id")

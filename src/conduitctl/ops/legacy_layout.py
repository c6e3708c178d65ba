"""`rollback --legacy`: run the fleet in conduit-manager's layout on the same identity keys,
and come back.

conduit-manager ran no front, host networking, one container per station named `conduit`,
`conduit-2`, `conduit-3`, ... on a docker volume `conduit-data`, `conduit-data-2`, ... mounted
at the workload's data dir, restart policy unless-stopped. `to_legacy` replaces our backends by
those containers one at a time, each on a volume holding the same `conduit_key.json`;
`from_legacy` carries the keys back into our volumes and removes the legacy containers; the
caller then runs the normal `up`.

Name collisions: our containers are {cluster}-{i} and our volumes {cluster}-data-{i}. With the
default cluster name "conduit", our backend conduit-2 and the legacy container conduit-2 share a
name (ours is removed before the legacy one is made), and our volume conduit-data-2 *is* the
legacy volume conduit-data-2 (it is simply mounted: same volume, same key).

Safety: every backend is checked before anything changes; a container we did not make under a
name we need, or a volume holding another identity, refuses the whole switch. Keys are never
deleted or regenerated here, and no volume is ever removed. Legacy containers carry
LABEL_LEGACY (never the owner label: the runtime must not take them for its own).
STATE_DIR/legacy.json lists the legacy containers and volumes; it is rewritten after each one,
so a switch that stops half-way can still be undone.

The pure decisions (key actions, who holds a name, the plans) are in ops/legacy_plan.py; this
module keeps the record, observes, and carries the plans out through the runtime's
LegacyLayout (the docker calls are in runtime/docker_legacy.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from conduitctl import labels
from conduitctl.errors import BadInput, ConduitctlError
from conduitctl.front.base import Front
from conduitctl.labels import LegacySlot, legacy_index, legacy_slot
from conduitctl.ops.keys import sha256_hex
from conduitctl.ops.legacy_plan import (
    RETRY_HINT,
    BackView,
    KeyAction,
    LegacyEntry,
    Occupant,
    SlotView,
    ToStep,
    entry_for,
    key_action,
    new_volume_labels,
    plan_from_legacy,
    plan_to_legacy,
    refuse,
)
from conduitctl.ops.ready import READY_TIMEOUT, wait_ready
from conduitctl.runtime.base import (
    KEY_FILE,
    KeyStore,
    LaunchSpec,
    LegacyLayout,
    Runtime,
    launch_specs,
)
from conduitctl.settings import Settings
from conduitctl.statedir import StateDir, write_atomic

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
LEGACY_FILE = "legacy.json"  # its name in messages; the path is StateDir.legacy
RECORD_VERSION = 1


def _quiet(_: str) -> None:
    pass


# --- pure: names ----------------------------------------------------------------------------


def legacy_file(state_dir: Path) -> Path:
    return StateDir(state_dir).legacy


def legacy_active(state_dir: Path) -> bool:
    """True while the fleet runs in the legacy layout (STATE_DIR/legacy.json exists)."""
    return legacy_file(state_dir).is_file()


# --- the record: STATE_DIR/legacy.json ------------------------------------------------------


@dataclass(frozen=True)
class LegacyRecord:
    cluster: str
    created_at: float
    entries: tuple[LegacyEntry, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "version": RECORD_VERSION,
            "cluster": self.cluster,
            "created_at": self.created_at,
            "created": datetime.fromtimestamp(self.created_at, UTC).isoformat(),
            "containers": [e.to_dict() for e in self.entries],
        }


def parse_record(text: str, where: Path | str = LEGACY_FILE) -> LegacyRecord:
    """Read legacy.json.

    Raises:
        BadInput: not JSON, or its containers are not what this module writes.
    """
    fix = "fix or remove it (the legacy containers also carry the label " + labels.LABEL_LEGACY
    try:
        doc = json.loads(text)
        entries = tuple(
            LegacyEntry(
                backend=str(c["backend"]),
                index=int(c["index"]),
                container=str(c["container"]),
                volume=str(c["volume"]),
                our_volume=str(c["our_volume"]),
                key=str(c.get("key", KeyAction.NONE.value)),
                sha256=c.get("sha256"),
            )
            for c in doc["containers"]
        )
        return LegacyRecord(str(doc["cluster"]), float(doc["created_at"]), entries)
    except (ValueError, KeyError, TypeError):
        raise BadInput(f"{where} is not a legacy record conduitctl wrote; {fix})") from None


def read_record(state_dir: Path) -> LegacyRecord | None:
    path = legacy_file(state_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return parse_record(text, path)


def write_record(state_dir: Path, record: LegacyRecord) -> Path:
    """Write legacy.json atomically (temp file, fsync, rename)."""
    path = legacy_file(state_dir)
    write_atomic(path, json.dumps(record.to_dict(), indent=2) + "\n", secret=False)
    return path


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LegacyResult:
    direction: str  # to-legacy | from-legacy
    cluster: str
    entries: list[LegacyEntry] = field(default_factory=list)
    front_stopped: bool = False
    record: Path | None = None  # legacy.json written (to) or deleted (from)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "direction": self.direction,
            "cluster": self.cluster,
            "containers": [e.to_dict() for e in self.entries],
            "front_stopped": self.front_stopped,
            "record": str(self.record) if self.record else None,
            "elapsed_s": round(self.elapsed_s, 2),
        }


# --- the switch, through the runtime's LegacyLayout ----------------------------------------


def _layout(settings: Settings, runtime: Runtime) -> LegacyLayout:
    layout = runtime.legacy(settings)
    if layout is None:
        raise BadInput(
            f'cluster.runtime = "{settings.cluster.runtime}": the legacy layout is '
            'conduit-manager\'s docker containers; only a runtime = "docker" fleet can switch'
        )
    return layout


def _daemon_refusal(settings: Settings) -> str | None:
    from conduitctl.daemon_link import daemon_pid

    pid = daemon_pid(settings.state_dir)
    if pid is None:
        return None
    return (
        f"the supervisor (pid {pid}) would restart the backends the switch removes; stop it "
        "first (conduitctl daemon-stop)"
    )


def _image_refusal(layout: LegacyLayout, image: str | None) -> str | None:
    if image is None:
        return "workload.image is not set; set it in conduit.toml"
    if not layout.has_image(image):
        return f"image {image} is not present locally; build or load it first"
    return None


def _verify(layout: LegacyLayout, volume: str, via: str, data: bytes) -> None:
    back = layout.read_key(volume, via=via)
    if back != data:
        raise ConduitctlError(
            f"{volume}: the {KEY_FILE} read back differs from the one written; do not start "
            f"a station on it, check the volume and run the switch again"
        )


def to_legacy(
    settings: Settings, runtime: Runtime, front: Front, *, progress: Progress = _quiet
) -> LegacyResult:
    """Run every backend as conduit-manager's container, on a volume with the same key.

    Checks first, changing nothing on a refusal. Then stops the front and, one backend at a
    time: reads its key, stops and removes our container (its volume is kept), makes sure the
    legacy volume holds the same key bytes (owned by container.user, 0600), runs the legacy
    container and waits until it is ready. STATE_DIR/legacy.json is rewritten after each.

    Raises:
        BadInput: not a docker fleet, a supervisor running, a missing image, a container we
            did not make under a name we need, or a legacy volume with another key.
        ConduitctlError: a legacy container failed to start or get ready (that backend is
            put back on our layout; the ones before it stay legacy and are recorded).
    """
    started = time.monotonic()
    layout = _layout(settings, runtime)
    cluster = settings.cluster.name
    keys = runtime.key_store(settings)
    specs = launch_specs(settings)

    views = []
    for spec in specs:
        slot = legacy_slot(spec.backend.index)
        our_volume = labels.volume_name(cluster, spec.backend.index)
        views.append(
            SlotView(
                spec=spec,
                slot=slot,
                our_volume=our_volume,
                our_name_labels=layout.labels(spec.name),
                legacy_name_labels=layout.labels(slot.container),
                our_key=keys.read(spec.name),
                legacy_key=layout.read_key(slot.volume, via=slot.container),
            )
        )
    steps, refusals = plan_to_legacy(views, cluster)
    for why in (_daemon_refusal(settings), *{_image_refusal(layout, s.image) for s in specs}):
        if why:
            refusals.insert(0, why)
    refuse("the switch to the legacy layout", refusals)

    front_stopped = front.stop()
    if front_stopped:
        progress(f"front {settings.front.kind} stopped")
    record = LegacyRecord(cluster, time.time())
    done: list[LegacyEntry] = []
    path = legacy_file(settings.state_dir)
    for step in steps:
        entry = _switch_one(settings, runtime, layout, keys, step, progress)
        done.append(entry)
        path = write_record(settings.state_dir, LegacyRecord(cluster, record.created_at, (*done,)))
    return LegacyResult("to-legacy", cluster, done, front_stopped, path, time.monotonic() - started)


def _switch_one(
    settings: Settings,
    runtime: Runtime,
    layout: LegacyLayout,
    keys: KeyStore,
    step: ToStep,
    progress: Progress,
) -> LegacyEntry:
    spec, slot = step.spec, step.slot
    progress(f"{spec.name} -> {slot.container} (volume {slot.volume})")
    if step.our_occupant == Occupant.OURS:
        runtime.stop(spec.name)
    data = keys.read(spec.name)  # read once stopped (through its container, if need be)
    if step.our_occupant == Occupant.OURS:
        runtime.remove(spec.name, purge=False)
    if step.legacy_occupant == Occupant.LEGACY:  # a previous switch's: made again below
        layout.remove(slot.container)
    try:
        _create(layout, spec, slot, settings.cluster.name)
        action = _carry_key(layout, step, data, settings.cluster.name)
        layout.start(slot.container)
        if wait_ready(settings, [spec.backend], READY_TIMEOUT):
            raise ConduitctlError(
                f"{slot.container} not ready after {READY_TIMEOUT:g}s "
                f"(docker logs {slot.container}); {spec.name} was put back, the backends "
                f"before it run in the legacy layout ({LEGACY_FILE})"
            )
    except Exception:
        _put_back(runtime, layout, spec, slot)
        raise
    return LegacyEntry(
        backend=spec.name,
        index=spec.backend.index,
        container=slot.container,
        volume=slot.volume,
        our_volume=step.our_volume,
        key=action.value,
        sha256=sha256_hex(data) if data is not None else None,
    )


def _carry_key(layout: LegacyLayout, step: ToStep, data: bytes | None, cluster: str) -> KeyAction:
    """Make the legacy volume hold `data` (our key), before the legacy container first starts."""
    slot = step.slot
    if step.shared_volume:
        return key_action(data, data)  # the same volume: SAME, or NONE without a key yet
    action = key_action(data, layout.read_key(slot.volume, via=slot.container))
    if action == KeyAction.CONFLICT:  # appeared since the check
        raise ConduitctlError(
            f"volume {slot.volume} got a different {KEY_FILE} during the switch; keep a copy "
            f"of it, move it out of the volume, then run {RETRY_HINT} again"
        )
    if action == KeyAction.COPY:
        assert data is not None
        layout.write_key(
            slot.volume,
            data,
            via=slot.container,
            create_labels=new_volume_labels(cluster, step.spec.backend.index, slot.volume),
        )
        _verify(layout, slot.volume, slot.container, data)
    return action


def _create(layout: LegacyLayout, spec: LaunchSpec, slot: LegacySlot, cluster: str) -> None:
    """Create (not start) the legacy container; its volume is made here if missing."""
    volume_labels = new_volume_labels(cluster, spec.backend.index, slot.volume)
    refused = layout.create(spec, slot, cluster, volume_labels)
    if refused is not None:
        raise ConduitctlError(
            f"{slot.container}: docker could not create it ({refused}); {spec.name} was "
            f"put back; fix that and run {RETRY_HINT} again"
        )


def _put_back(runtime: Runtime, layout: LegacyLayout, spec: LaunchSpec, slot: LegacySlot) -> None:
    """Undo one backend's switch: remove its legacy container, start ours on our volume."""
    try:
        layout.remove(slot.container)
        runtime.start(spec)
    except Exception:  # the original error is the one to report; this one goes to the log
        log.exception("could not be put back after a failed switch", extra={"backend": spec.name})


def from_legacy(
    settings: Settings, runtime: Runtime, front: Front, *, progress: Progress = _quiet
) -> LegacyResult:
    """The way back: carry each legacy container's key into our volume, remove the legacy
    containers (never their volumes) and delete legacy.json.

    Every legacy container recorded in legacy.json or labelled for this cluster is checked
    first; a different key already in our volume refuses the whole way back. It does not
    start our fleet nor the front (`front` is left as it is): the caller then runs the
    normal converge (`conduitctl.ops.converge.up`).

    Raises:
        BadInput: not a docker fleet, no legacy fleet to return from, a legacy name now held
            by a container we did not make, or our volume holds a different key.
        ConduitctlError: a key read back differs from what was written.
    """
    started = time.monotonic()
    layout = _layout(settings, runtime)
    cluster = settings.cluster.name
    keys = runtime.key_store(settings)
    record = read_record(settings.state_dir)
    entries = {e.container: e for e in (record.entries if record else ())}
    for name in layout.containers():
        index = legacy_index(name)
        if index is not None and name not in entries:
            entries[name] = entry_for(cluster, index)
    if record is None and not entries:
        raise BadInput(
            f"no legacy fleet of cluster {cluster}: {legacy_file(settings.state_dir)} is absent "
            f"and no container carries {labels.LABEL_LEGACY}={cluster}; nothing to return from"
        )
    views = [
        BackView(
            entry=e,
            container_labels=layout.labels(e.container),
            legacy_key=layout.read_key(e.volume, via=e.container),
            our_key=keys.read(e.backend),
        )
        for e in sorted(entries.values(), key=lambda e: e.index)
    ]
    steps, refusals = plan_from_legacy(views, cluster)
    refuse("the way back from the legacy layout", refusals)

    done: list[LegacyEntry] = []
    for step in steps:
        e = step.entry
        progress(f"{e.container} -> {e.backend} (volume {e.our_volume})")
        data = layout.read_key(e.volume, via=e.container)
        if step.remove:
            layout.stop(e.container)
            data = layout.read_key(e.volume, via=e.container)  # as the stopped station left it
        action = key_action(data, keys.read(e.backend))
        if action == KeyAction.CONFLICT:
            raise ConduitctlError(
                f"{e.our_volume} got a {KEY_FILE} different from {e.volume}'s during the way "
                f"back; {e.container} is stopped, not removed; back up both keys, decide, retry"
            )
        if action == KeyAction.COPY:
            assert data is not None
            keys.write(e.backend, data)
            _verify(layout, e.our_volume, e.backend, data)
        if step.remove:
            layout.remove(e.container)
        sha = sha256_hex(data) if data is not None else None
        done.append(replace(e, key=action.value, sha256=sha))
    path = legacy_file(settings.state_dir)
    path.unlink(missing_ok=True)
    return LegacyResult("from-legacy", cluster, done, False, path, time.monotonic() - started)

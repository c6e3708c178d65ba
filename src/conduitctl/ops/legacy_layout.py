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

Pure decisions (names, key actions, who holds a name, the plans) come first; the edges follow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from conduitctl import labels
from conduitctl.errors import BadInput, ConduitctlError
from conduitctl.front.base import Front
from conduitctl.labels import LegacySlot, legacy_index, legacy_slot
from conduitctl.ops.keys import KEY_FILE, DockerKeys, sha256_hex
from conduitctl.ops.ready import READY_TIMEOUT, wait_ready
from conduitctl.runtime.base import LaunchSpec, Runtime, launch_specs
from conduitctl.settings import Settings
from conduitctl.statedir import StateDir, write_atomic
from conduitctl.units import format_size
from conduitctl.workloads import PROFILES

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
LEGACY_FILE = "legacy.json"  # its name in messages; the path is StateDir.legacy
RECORD_VERSION = 1
RETRY_HINT = "conduitctl rollback --legacy"


def _quiet(_: str) -> None:
    pass


# --- pure: names ----------------------------------------------------------------------------


def legacy_file(state_dir: Path) -> Path:
    return StateDir(state_dir).legacy


def legacy_active(state_dir: Path) -> bool:
    """True while the fleet runs in the legacy layout (STATE_DIR/legacy.json exists)."""
    return legacy_file(state_dir).is_file()


# --- pure: decisions ------------------------------------------------------------------------


class KeyAction(StrEnum):
    """What to do with the identity key when a backend changes layout (source -> target)."""

    SAME = "same"  # the target holds the same bytes (or is the same volume): nothing to do
    COPY = "copy"  # the target has no key: write the source's there
    NONE = "none"  # the source has no key yet: nothing to carry, the target is left alone
    CONFLICT = "conflict"  # the target holds another identity: refuse


def key_action(source: bytes | None, target: bytes | None) -> KeyAction:
    if source is None:
        return KeyAction.NONE
    if target is None:
        return KeyAction.COPY
    return KeyAction.SAME if source == target else KeyAction.CONFLICT


class Occupant(StrEnum):
    """Who holds a container name we need."""

    FREE = "free"
    OURS = "ours"  # this cluster's backend of the same index: removed first
    LEGACY = "legacy"  # a legacy container this cluster's switch made
    FOREIGN = "foreign"  # anything else: never touched


def occupant(container_labels: Mapping[str, str] | None, cluster: str, index: int) -> Occupant:
    """Classify the container holding a name we need, from its labels (None: no container)."""
    if container_labels is None:
        return Occupant.FREE
    if (
        container_labels.get(labels.LABEL_OWNER) == labels.OWNER
        and container_labels.get(labels.LABEL_CLUSTER) == cluster
        and container_labels.get(labels.LABEL_INDEX) == str(index)
    ):
        return Occupant.OURS
    if container_labels.get(labels.LABEL_LEGACY) == cluster and labels.LABEL_OWNER not in (
        container_labels
    ):
        return Occupant.LEGACY
    return Occupant.FOREIGN


def foreign_refusal(name: str) -> str:
    return (
        f"a container named {name} exists that conduitctl did not make (is conduit-manager "
        f"still running?); remove it (save the conduit_key.json in its volume first, then "
        f"docker rm -f {name}) and run {RETRY_HINT} again"
    )


def _short(data: bytes) -> str:
    return sha256_hex(data)[:12]


@dataclass(frozen=True)
class SlotView:
    """What is there now for one backend (observed), for the switch to the legacy layout."""

    spec: LaunchSpec
    slot: LegacySlot
    our_volume: str
    our_name_labels: Mapping[str, str] | None  # the container under our name, if any
    legacy_name_labels: Mapping[str, str] | None  # the container under the legacy name
    our_key: bytes | None
    legacy_key: bytes | None  # the key in the legacy volume (ours again when it is shared)


@dataclass(frozen=True)
class ToStep:
    """One backend's switch: remove what holds our name and the legacy name, then run the
    legacy container on `slot.volume`, after carrying the key as `key` says."""

    spec: LaunchSpec
    slot: LegacySlot
    our_volume: str
    our_occupant: Occupant
    legacy_occupant: Occupant
    key: KeyAction
    sha256: str | None

    @property
    def shared_volume(self) -> bool:
        return self.our_volume == self.slot.volume


def plan_to_legacy(views: Sequence[SlotView], cluster: str) -> tuple[list[ToStep], list[str]]:
    """The steps of the switch, and the refusals (one line each, naming the fix) (pure).

    A refusal means nothing may change: the caller raises before acting.
    """
    steps: list[ToStep] = []
    refusals: list[str] = []
    for view in views:
        index = view.spec.backend.index
        ours = occupant(view.our_name_labels, cluster, index)
        legacy = occupant(view.legacy_name_labels, cluster, index)
        if legacy == Occupant.FOREIGN:
            refusals.append(foreign_refusal(view.slot.container))
        if ours == Occupant.FOREIGN and view.spec.name != view.slot.container:
            refusals.append(
                f"a container named {view.spec.name} exists but conduitctl does not own it; "
                f"rename or remove it (docker rm {view.spec.name}) or change cluster.name"
            )
        action = key_action(view.our_key, view.legacy_key)
        if action == KeyAction.CONFLICT:
            assert view.our_key is not None and view.legacy_key is not None
            refusals.append(
                f"volume {view.slot.volume} already holds a {KEY_FILE} (sha256 "
                f"{_short(view.legacy_key)}...) different from {view.spec.name}'s in "
                f"{view.our_volume} ({_short(view.our_key)}...): another station's identity; "
                f"keep a copy of it, move it out of {view.slot.volume} (never delete it), then "
                f"run {RETRY_HINT} again"
            )
        sha = sha256_hex(view.our_key) if view.our_key is not None else None
        steps.append(ToStep(view.spec, view.slot, view.our_volume, ours, legacy, action, sha))
    return steps, refusals


@dataclass(frozen=True)
class LegacyEntry:
    """One legacy container of the record (and of a result)."""

    backend: str  # ours: {cluster}-{i}
    index: int
    container: str  # legacy: conduit, conduit-{i}
    volume: str  # legacy: conduit-data, conduit-data-{i}
    our_volume: str  # {cluster}-data-{i}
    key: str = KeyAction.NONE.value  # what was done with the key on the way
    sha256: str | None = None  # of the key carried (None: none yet)

    def to_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "index": self.index,
            "container": self.container,
            "volume": self.volume,
            "our_volume": self.our_volume,
            "shared_volume": self.volume == self.our_volume,
            "key": self.key,
            "sha256": self.sha256,
        }


def entry_for(cluster: str, index: int) -> LegacyEntry:
    """The entry of a legacy container found by its label (no record of it)."""
    slot = legacy_slot(index)
    return LegacyEntry(
        backend=f"{cluster}-{index}",
        index=index,
        container=slot.container,
        volume=slot.volume,
        our_volume=labels.volume_name(cluster, index),
    )


@dataclass(frozen=True)
class BackView:
    """What is there now for one legacy container, for the way back."""

    entry: LegacyEntry
    container_labels: Mapping[str, str] | None  # whatever holds the legacy name now
    legacy_key: bytes | None
    our_key: bytes | None


@dataclass(frozen=True)
class BackStep:
    entry: LegacyEntry
    remove: bool  # the legacy container is there (ours to remove)
    key: KeyAction
    sha256: str | None


def plan_from_legacy(views: Sequence[BackView], cluster: str) -> tuple[list[BackStep], list[str]]:
    """The steps of the way back, and the refusals (pure)."""
    steps: list[BackStep] = []
    refusals: list[str] = []
    for view in views:
        e = view.entry
        held = occupant(view.container_labels, cluster, e.index)
        if held == Occupant.FOREIGN:
            refusals.append(
                f"{e.container} is no longer the legacy container conduitctl made (is "
                f"conduit-manager running again?); stop and remove it yourself (its volume "
                f"{e.volume} is kept), then retry"
            )
        action = key_action(view.legacy_key, view.our_key)
        if action == KeyAction.CONFLICT:
            assert view.legacy_key is not None and view.our_key is not None
            refusals.append(
                f"{e.our_volume} holds a {KEY_FILE} ({_short(view.our_key)}...) different from "
                f"the one {e.container} ran with in {e.volume} ({_short(view.legacy_key)}...); "
                f"back up both (conduitctl keys backup, and a copy of {e.volume}'s key), put "
                f"the identity {e.backend} must keep in {e.our_volume}, then retry"
            )
        sha = sha256_hex(view.legacy_key) if view.legacy_key is not None else None
        steps.append(BackStep(e, held == Occupant.LEGACY, action, sha))
    return steps, refusals


def refuse(what: str, refusals: list[str]) -> None:
    """Raise BadInput with the first refusal (and how many more) when there are any."""
    if refusals:
        more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
        raise BadInput(f"{what} refused, nothing changed: {refusals[0]}{more}")


def legacy_container_kwargs(spec: LaunchSpec, slot: LegacySlot, cluster: str) -> dict[str, Any]:
    """docker create arguments of conduit-manager's container for this backend (pure).

    Same image and command line as our backend; host networking, the legacy volume at the
    data dir, restart unless-stopped, our user, memory/CPU limits and log rotation. Not our
    owner label: the runtime must never list, adopt or remove it as one of its own.
    """
    from docker.types import LogConfig

    h = spec.hardening
    b = spec.backend
    data_dir = PROFILES[spec.profile].data_dir
    return {
        "name": slot.container,
        "image": spec.image,
        "command": spec.argv(data_dir),
        "labels": {labels.LABEL_LEGACY: cluster},
        "user": h.user,
        "network_mode": "host",
        "volumes": {slot.volume: {"bind": data_dir, "mode": "rw"}},
        "restart_policy": {"Name": "unless-stopped"},
        "mem_limit": b.memory_bytes,
        "nano_cpus": int(b.cpus * 1e9),
        "log_config": LogConfig(
            type="json-file",
            config={"max-size": format_size(h.log_max_size), "max-file": str(h.log_max_files)},
        ),
    }


def new_volume_labels(cluster: str, index: int, volume: str) -> dict[str, str]:
    """Labels for a legacy volume made here: ours (as the runtime labels its volumes) when it
    is also our volume ({cluster}-data-{i}), else only the legacy label."""
    if volume == labels.volume_name(cluster, index):
        return {
            labels.LABEL_OWNER: labels.OWNER,
            labels.LABEL_CLUSTER: cluster,
            labels.LABEL_INDEX: str(index),
        }
    return {labels.LABEL_LEGACY: cluster}


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


# --- edges ----------------------------------------------------------------------------------


def _client(settings: Settings, runtime: Runtime) -> Any:
    if settings.cluster.runtime != "docker":
        raise BadInput(
            f'cluster.runtime = "{settings.cluster.runtime}": the legacy layout is '
            'conduit-manager\'s docker containers; only a runtime = "docker" fleet can switch'
        )
    client = getattr(runtime, "client", None)
    if client is None:
        raise BadInput("the legacy layout needs the docker runtime's client; use runtime_for()")
    return client


def _labels(client: Any, name: str) -> dict[str, str] | None:
    """The labels of the container called `name`, or None when there is none."""
    import docker.errors

    try:
        return dict(client.containers.get(name).labels or {})
    except docker.errors.NotFound:
        return None


def _daemon_refusal(settings: Settings) -> str | None:
    from conduitctl.daemon_link import daemon_pid

    pid = daemon_pid(settings.state_dir)
    if pid is None:
        return None
    return (
        f"the supervisor (pid {pid}) would restart the backends the switch removes; stop it "
        "first (conduitctl daemon-stop)"
    )


def _image_refusal(client: Any, image: str | None) -> str | None:
    import docker.errors

    if image is None:
        return "workload.image is not set; set it in conduit.toml"
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return f"image {image} is not present locally; build or load it first"
    return None


def _stop_container(client: Any, name: str, timeout: float = 10.0) -> None:
    import docker.errors

    with contextlib.suppress(docker.errors.NotFound):
        container = client.containers.get(name)
        if container.status in ("running", "restarting"):
            container.stop(timeout=int(max(timeout, 1)))


def _remove_container(client: Any, name: str, timeout: float = 10.0) -> None:
    """Stop and remove one container (never a volume: v=False)."""
    import docker.errors

    _stop_container(client, name, timeout)
    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(name).remove(v=False, force=True)


def _verify(keys: DockerKeys, volume: str, via: str, data: bytes) -> None:
    back = keys.read_volume(volume, via=via)
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
    client = _client(settings, runtime)
    cluster = settings.cluster.name
    keys = DockerKeys(settings, runtime)
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
                our_name_labels=_labels(client, spec.name),
                legacy_name_labels=_labels(client, slot.container),
                our_key=keys.read(spec.name),
                legacy_key=keys.read_volume(slot.volume, via=slot.container),
            )
        )
    steps, refusals = plan_to_legacy(views, cluster)
    for why in (_daemon_refusal(settings), *{_image_refusal(client, s.image) for s in specs}):
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
        entry = _switch_one(settings, runtime, client, keys, step, progress)
        done.append(entry)
        path = write_record(settings.state_dir, LegacyRecord(cluster, record.created_at, (*done,)))
    return LegacyResult("to-legacy", cluster, done, front_stopped, path, time.monotonic() - started)


def _switch_one(
    settings: Settings,
    runtime: Runtime,
    client: Any,
    keys: DockerKeys,
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
        _remove_container(client, slot.container)
    try:
        container = _create(client, spec, slot, settings.cluster.name, step)
        action = _carry_key(keys, step, data, settings.cluster.name)
        container.start()
        if wait_ready(settings, [spec.backend], READY_TIMEOUT):
            raise ConduitctlError(
                f"{slot.container} not ready after {READY_TIMEOUT:g}s "
                f"(docker logs {slot.container}); {spec.name} was put back, the backends "
                f"before it run in the legacy layout ({LEGACY_FILE})"
            )
    except Exception:
        _put_back(runtime, client, spec, slot)
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


def _carry_key(keys: DockerKeys, step: ToStep, data: bytes | None, cluster: str) -> KeyAction:
    """Make the legacy volume hold `data` (our key), before the legacy container first starts."""
    slot = step.slot
    if step.shared_volume:
        return key_action(data, data)  # the same volume: SAME, or NONE without a key yet
    action = key_action(data, keys.read_volume(slot.volume, via=slot.container))
    if action == KeyAction.CONFLICT:  # appeared since the check
        raise ConduitctlError(
            f"volume {slot.volume} got a different {KEY_FILE} during the switch; keep a copy "
            f"of it, move it out of the volume, then run {RETRY_HINT} again"
        )
    if action == KeyAction.COPY:
        assert data is not None
        keys.write_volume(
            slot.volume,
            data,
            via=slot.container,
            create_labels=new_volume_labels(cluster, step.spec.backend.index, slot.volume),
        )
        _verify(keys, slot.volume, slot.container, data)
    return action


def _create(client: Any, spec: LaunchSpec, slot: LegacySlot, cluster: str, step: ToStep) -> Any:
    """Create (not start) the legacy container; its volume is made here if missing."""
    import docker.errors

    try:
        client.volumes.get(slot.volume)
    except docker.errors.NotFound:
        client.volumes.create(
            name=slot.volume, labels=new_volume_labels(cluster, spec.backend.index, slot.volume)
        )
    try:
        return client.containers.create(**legacy_container_kwargs(spec, slot, cluster))
    except docker.errors.APIError as exc:
        explanation = str(exc.explanation or exc).strip().splitlines()[-1]
        raise ConduitctlError(
            f"{slot.container}: docker could not create it ({explanation}); {spec.name} was "
            f"put back; fix that and run {RETRY_HINT} again"
        ) from None


def _put_back(runtime: Runtime, client: Any, spec: LaunchSpec, slot: LegacySlot) -> None:
    """Undo one backend's switch: remove its legacy container, start ours on our volume."""
    try:
        _remove_container(client, slot.container)
        runtime.start(spec)
    except Exception:  # the original error is the one to report; this one goes to the log
        log.exception("backend=%s could not be put back after a failed switch", spec.name)


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
    client = _client(settings, runtime)
    cluster = settings.cluster.name
    keys = DockerKeys(settings, runtime)
    record = read_record(settings.state_dir)
    entries = {e.container: e for e in (record.entries if record else ())}
    found = client.containers.list(all=True, filters={"label": f"{labels.LABEL_LEGACY}={cluster}"})
    for container in found:
        index = legacy_index(container.name)
        if index is not None and container.name not in entries:
            entries[container.name] = entry_for(cluster, index)
    if record is None and not entries:
        raise BadInput(
            f"no legacy fleet of cluster {cluster}: {legacy_file(settings.state_dir)} is absent "
            f"and no container carries {labels.LABEL_LEGACY}={cluster}; nothing to return from"
        )
    views = [
        BackView(
            entry=e,
            container_labels=_labels(client, e.container),
            legacy_key=keys.read_volume(e.volume, via=e.container),
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
        data = keys.read_volume(e.volume, via=e.container)
        if step.remove:
            _stop_container(client, e.container)
            data = keys.read_volume(e.volume, via=e.container)  # as the stopped station left it
        action = key_action(data, keys.read(e.backend))
        if action == KeyAction.CONFLICT:
            raise ConduitctlError(
                f"{e.our_volume} got a {KEY_FILE} different from {e.volume}'s during the way "
                f"back; {e.container} is stopped, not removed; back up both keys, decide, retry"
            )
        if action == KeyAction.COPY:
            assert data is not None
            keys.write(e.backend, data)
            _verify(keys, e.our_volume, e.backend, data)
        if step.remove:
            _remove_container(client, e.container)
        sha = sha256_hex(data) if data is not None else None
        done.append(replace(e, key=action.value, sha256=sha))
    path = legacy_file(settings.state_dir)
    path.unlink(missing_ok=True)
    return LegacyResult("from-legacy", cluster, done, False, path, time.monotonic() - started)

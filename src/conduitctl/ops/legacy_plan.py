"""`rollback --legacy`, the pure part: what to do with each key and each name, and the plans.

The decisions of a switch to conduit-manager's layout and of the way back, from what was
observed (labels of the containers holding the names, the keys in the volumes); no I/O. A
refusal means nothing may change. ops/legacy_layout.py observes, then carries a plan out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from conduitctl import labels
from conduitctl.errors import BadInput
from conduitctl.labels import LegacySlot, legacy_slot
from conduitctl.ops.keys import sha256_hex
from conduitctl.runtime.base import KEY_FILE, LaunchSpec

RETRY_HINT = "conduitctl rollback --legacy"


# --- decisions ------------------------------------------------------------------------------


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

"""rollback --legacy: conduit-manager's names, key decisions, who holds a name, the plans."""

from __future__ import annotations

from pathlib import Path

import pytest

from conduitctl import labels
from conduitctl.errors import BadInput
from conduitctl.ops import legacy_layout as ll
from conduitctl.ops import legacy_plan as lp
from conduitctl.ops.keys import sha256_hex
from conduitctl.ops.legacy_layout import LegacyRecord, LegacySlot
from conduitctl.ops.legacy_plan import BackView, KeyAction, LegacyEntry, Occupant, SlotView
from conduitctl.runtime.base import LaunchSpec, launch_specs
from conduitctl.runtime.docker_legacy import legacy_container_kwargs
from conduitctl.settings import settings_from_dict

T = 1_795_000_000.0

# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "container", "volume"),
    [
        (1, "conduit", "conduit-data"),
        (2, "conduit-2", "conduit-data-2"),
        (3, "conduit-3", "conduit-data-3"),
        (12, "conduit-12", "conduit-data-12"),
    ],
)
def test_legacy_slot(index: int, container: str, volume: str) -> None:
    assert ll.legacy_slot(index) == LegacySlot(index, container, volume)
    assert ll.legacy_index(container) == index


@pytest.mark.parametrize("index", [0, -1])
def test_legacy_slot_starts_at_one(index: int) -> None:
    with pytest.raises(ValueError, match="start at 1"):
        ll.legacy_slot(index)


@pytest.mark.parametrize(
    "name", ["conduit-1", "conduit-0", "conduit-02", "conduit-data", "conduitx", "dkt-2", ""]
)
def test_legacy_index_rejects_other_names(name: str) -> None:
    assert ll.legacy_index(name) is None


def test_legacy_volume_is_ours_only_for_cluster_conduit_from_index_two() -> None:
    same = [i for i in range(1, 6) if ll.legacy_slot(i).volume == labels.volume_name("conduit", i)]
    assert same == [2, 3, 4, 5]
    assert all(ll.legacy_slot(i).volume != labels.volume_name("dkt", i) for i in range(1, 6))


# --- decisions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "action"),
    [
        (b"k", None, KeyAction.COPY),
        (b"k", b"k", KeyAction.SAME),
        (b"k", b"other", KeyAction.CONFLICT),
        (None, None, KeyAction.NONE),
        (None, b"k", KeyAction.NONE),  # nothing to carry; the target's key is left alone
    ],
)
def test_key_action(source: bytes | None, target: bytes | None, action: KeyAction) -> None:
    assert lp.key_action(source, target) == action


OURS_2 = {
    labels.LABEL_OWNER: labels.OWNER,
    labels.LABEL_CLUSTER: "conduit",
    labels.LABEL_INDEX: "2",
}


@pytest.mark.parametrize(
    ("found", "index", "expected"),
    [
        (None, 2, Occupant.FREE),
        (OURS_2, 2, Occupant.OURS),
        (OURS_2, 3, Occupant.FOREIGN),  # ours, but another backend
        ({**OURS_2, labels.LABEL_CLUSTER: "other"}, 2, Occupant.FOREIGN),
        ({labels.LABEL_LEGACY: "conduit"}, 2, Occupant.LEGACY),
        ({labels.LABEL_LEGACY: "other"}, 2, Occupant.FOREIGN),
        ({labels.LABEL_LEGACY: "conduit", labels.LABEL_OWNER: labels.OWNER}, 2, Occupant.FOREIGN),
        ({}, 2, Occupant.FOREIGN),  # conduit-manager's own container has no labels of ours
    ],
)
def test_occupant(found: dict[str, str] | None, index: int, expected: Occupant) -> None:
    assert lp.occupant(found, "conduit", index) == expected


# --- plans ----------------------------------------------------------------------------------


def specs(cluster: str = "conduit", containers: int = 3) -> list[LaunchSpec]:
    settings = settings_from_dict(
        {
            "cluster": {"name": cluster, "containers": containers, "runtime": "docker"},
            "workload": {"profile": "sim"},
        }
    )
    return launch_specs(settings)


def ours(cluster: str, index: int) -> dict[str, str]:
    return {
        labels.LABEL_OWNER: labels.OWNER,
        labels.LABEL_CLUSTER: cluster,
        labels.LABEL_INDEX: str(index),
    }


def view(
    spec: LaunchSpec,
    *,
    our_name: dict[str, str] | str | None = "ours",
    legacy_name: dict[str, str] | str | None = "same",
    our_key: bytes | None = b"key",
    legacy_key: bytes | str | None = "same",
) -> SlotView:
    """A running fleet of ours by default; 'same' follows the name/volume collisions."""
    i = spec.backend.index
    slot = ll.legacy_slot(i)
    our_volume = labels.volume_name(spec.cluster, i)
    mine = ours(spec.cluster, i)
    resolved_our_name = mine if our_name == "ours" else our_name
    if legacy_name == "same":
        legacy_name = resolved_our_name if slot.container == spec.name else None
    if legacy_key == "same":
        legacy_key = our_key if slot.volume == our_volume else None
    assert not isinstance(resolved_our_name, str) and not isinstance(legacy_name, str)
    assert not isinstance(legacy_key, str)
    return SlotView(spec, slot, our_volume, resolved_our_name, legacy_name, our_key, legacy_key)


def test_plan_for_cluster_conduit_handles_both_collisions() -> None:
    fleet = specs("conduit")
    keys = [b"k1", b"k2", b"k3"]
    steps, refusals = lp.plan_to_legacy(
        [view(s, our_key=k) for s, k in zip(fleet, keys, strict=True)], "conduit"
    )
    assert refusals == []
    assert [(s.spec.name, s.slot.container, s.slot.volume) for s in steps] == [
        ("conduit-1", "conduit", "conduit-data"),
        ("conduit-2", "conduit-2", "conduit-data-2"),
        ("conduit-3", "conduit-3", "conduit-data-3"),
    ]
    assert [s.shared_volume for s in steps] == [False, True, True]
    # conduit-2 and conduit-3: the container under the legacy name is our own backend
    assert [s.legacy_occupant for s in steps] == [Occupant.FREE, Occupant.OURS, Occupant.OURS]
    assert [s.key for s in steps] == [KeyAction.COPY, KeyAction.SAME, KeyAction.SAME]
    assert [s.sha256 for s in steps] == [sha256_hex(k) for k in keys]


def test_plan_for_another_cluster_copies_every_key() -> None:
    steps, refusals = lp.plan_to_legacy([view(s) for s in specs("dkt")], "dkt")
    assert refusals == []
    assert [s.key for s in steps] == [KeyAction.COPY] * 3
    assert not any(s.shared_volume for s in steps)


def test_plan_after_a_partial_switch_takes_its_own_legacy_containers_again() -> None:
    fleet = specs("conduit", 2)
    legacy = {labels.LABEL_LEGACY: "conduit"}
    views = [
        view(fleet[0], our_name=None, legacy_name=legacy, legacy_key=b"key"),
        view(fleet[1], our_name=legacy),
    ]
    steps, refusals = lp.plan_to_legacy(views, "conduit")
    assert refusals == []
    assert [(s.our_occupant, s.legacy_occupant) for s in steps] == [
        (Occupant.FREE, Occupant.LEGACY),
        (Occupant.LEGACY, Occupant.LEGACY),
    ]
    assert [s.key for s in steps] == [KeyAction.SAME, KeyAction.SAME]


def test_a_foreign_conduit_container_refuses_naming_conduit_manager() -> None:
    fleet = specs("conduit")
    views = [view(fleet[0], legacy_name={}), *(view(s) for s in fleet[1:])]
    _, refusals = lp.plan_to_legacy(views, "conduit")
    assert len(refusals) == 1
    assert "a container named conduit exists" in refusals[0]
    assert "conduit-manager still running?" in refusals[0]
    assert "docker rm -f conduit" in refusals[0]


def test_a_foreign_container_under_a_shared_name_refuses_once() -> None:
    fleet = specs("conduit")
    views = [view(fleet[0]), view(fleet[1], our_name={}), view(fleet[2])]
    _, refusals = lp.plan_to_legacy(views, "conduit")
    assert len(refusals) == 1 and "a container named conduit-2 exists" in refusals[0]


def test_a_legacy_volume_with_another_key_refuses_naming_both() -> None:
    fleet = specs("dkt")
    views = [view(fleet[0], our_key=b"ours", legacy_key=b"theirs"), *(view(s) for s in fleet[1:])]
    _, refusals = lp.plan_to_legacy(views, "dkt")
    assert len(refusals) == 1
    why = refusals[0]
    assert "conduit-data" in why and "dkt-data-1" in why and "dkt-1" in why
    assert sha256_hex(b"ours")[:12] in why and sha256_hex(b"theirs")[:12] in why
    assert "never delete it" in why


def test_refuse_raises_the_first_and_counts_the_rest() -> None:
    lp.refuse("the switch", [])
    with pytest.raises(BadInput, match=r"the switch refused, nothing changed: a \(and 2 more\)"):
        lp.refuse("the switch", ["a", "b", "c"])


def entry(cluster: str, index: int) -> LegacyEntry:
    return lp.entry_for(cluster, index)


def test_entry_for_a_labelled_container() -> None:
    assert entry("conduit", 1) == LegacyEntry(
        "conduit-1", 1, "conduit", "conduit-data", "conduit-data-1"
    )
    assert entry("conduit", 2).volume == entry("conduit", 2).our_volume == "conduit-data-2"


LEGACY = {labels.LABEL_LEGACY: "conduit"}


@pytest.mark.parametrize(
    ("found", "legacy_key", "our_key", "remove", "action"),
    [
        (LEGACY, b"k", None, True, KeyAction.COPY),  # our volume lost its key: carried back
        (LEGACY, b"k", b"k", True, KeyAction.SAME),
        (LEGACY, None, b"k", True, KeyAction.NONE),
        (None, b"k", b"k", False, KeyAction.SAME),  # already removed (a second way back)
        (ours("conduit", 1), b"k", b"k", False, KeyAction.SAME),  # ours again: not removed
    ],
)
def test_plan_back(
    found: dict[str, str] | None,
    legacy_key: bytes | None,
    our_key: bytes | None,
    remove: bool,
    action: KeyAction,
) -> None:
    steps, refusals = lp.plan_from_legacy(
        [BackView(entry("conduit", 1), found, legacy_key, our_key)], "conduit"
    )
    assert refusals == []
    assert [(s.remove, s.key) for s in steps] == [(remove, action)]


def test_plan_back_refuses_a_different_key_in_our_volume() -> None:
    _, refusals = lp.plan_from_legacy(
        [BackView(entry("conduit", 1), LEGACY, b"legacy", b"ours")], "conduit"
    )
    assert len(refusals) == 1
    assert "conduit-data-1" in refusals[0] and "conduit-data " in refusals[0]


def test_plan_back_refuses_a_container_it_did_not_make() -> None:
    _, refusals = lp.plan_from_legacy([BackView(entry("conduit", 2), {}, b"k", b"k")], "conduit")
    assert len(refusals) == 1 and "conduit-2 is no longer the legacy container" in refusals[0]


# --- the container and its volume -----------------------------------------------------------


def test_legacy_container_kwargs() -> None:
    spec = specs("conduit")[0]
    kwargs = legacy_container_kwargs(spec, ll.legacy_slot(1), "conduit")
    assert kwargs["name"] == "conduit"
    assert kwargs["image"] == spec.image == "conduit-sim:local"
    assert kwargs["command"] == spec.argv("/home/conduit/data")
    assert kwargs["network_mode"] == "host"
    assert kwargs["volumes"] == {"conduit-data": {"bind": "/home/conduit/data", "mode": "rw"}}
    assert kwargs["restart_policy"] == {"Name": "unless-stopped"}
    assert kwargs["user"] == "1000:1000"
    # the legacy label only: never the owner label the runtime lists its own by
    assert kwargs["labels"] == {labels.LABEL_LEGACY: "conduit"}
    assert "ports" not in kwargs


def test_new_volume_labels() -> None:
    assert lp.new_volume_labels("conduit", 1, "conduit-data") == {labels.LABEL_LEGACY: "conduit"}
    assert lp.new_volume_labels("conduit", 2, "conduit-data-2") == ours("conduit", 2)


# --- the record -----------------------------------------------------------------------------


def test_record_round_trip(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert not ll.legacy_active(state) and ll.read_record(state) is None
    record = LegacyRecord(
        "conduit",
        T,
        (
            LegacyEntry("conduit-1", 1, "conduit", "conduit-data", "conduit-data-1", "copy", "ab"),
            LegacyEntry("conduit-2", 2, "conduit-2", "conduit-data-2", "conduit-data-2", "same"),
        ),
    )
    path = ll.write_record(state, record)
    assert path == state / "legacy.json" and ll.legacy_active(state)
    assert ll.read_record(state) == record
    assert record.to_dict()["created"] == "2026-11-18T11:06:40+00:00"
    assert [e.to_dict()["shared_volume"] for e in record.entries] == [False, True]
    assert [p.name for p in state.iterdir()] == ["legacy.json"]  # no temp file left


@pytest.mark.parametrize("text", ["not json", "{}", '{"cluster": "c", "containers": [{}]}'])
def test_a_damaged_record_is_bad_input(text: str) -> None:
    with pytest.raises(BadInput, match=r"legacy\.json is not a legacy record"):
        ll.parse_record(text, "legacy.json")

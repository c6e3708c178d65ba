"""Identity key backup/restore: names, manifest, decisions, and backup/restore on a fake store."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from conduitctl.errors import BadInput
from conduitctl.ops import keys
from conduitctl.ops.keys import Change, Manifest, Status
from conduitctl.runtime.docker_keys import parse_user
from conduitctl.settings import Settings, settings_from_dict

T = 1_795_000_000.0  # 2026-11-18T...Z


def fleet(tmp_path: Path, containers: int = 3) -> Settings:
    return settings_from_dict(
        {
            "cluster": {
                "name": "c",
                "containers": containers,
                "runtime": "process",
                "state_dir": str(tmp_path / "state"),
            },
            "workload": {"profile": "sim"},
            "front": {"kind": "nginx", "listeners": ["tcp:127.0.0.1:443"]},
        }
    )


class FakeStore:
    """Keys in a dict; `running` names the backends that are up."""

    def __init__(self, data: dict[str, bytes], running: set[str] | None = None) -> None:
        self.data = dict(data)
        self.up = running or set()
        self.writes: list[str] = []

    def read(self, backend: str) -> bytes | None:
        return self.data.get(backend)

    def write(self, backend: str, data: bytes) -> None:
        self.writes.append(backend)
        self.data[backend] = data

    def running(self, backend: str) -> bool:
        return backend in self.up

    def names(self) -> list[str]:
        return list(self.data)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- pure helpers -----------------------------------------------------------------------------


def test_stamp_is_utc_and_sorts_by_time() -> None:
    assert keys.stamp(0) == "19700101T000000Z"
    assert keys.stamp(T) < keys.stamp(T + 1) < keys.stamp(T + 86400)


def test_free_stamp_dir_never_reuses_a_directory(tmp_path: Path) -> None:
    first = keys.free_stamp_dir(tmp_path, T)
    first.mkdir()
    second = keys.free_stamp_dir(tmp_path, T)
    assert second.name == f"{first.name}-2"


def test_latest_backup_picks_newest_with_a_manifest(tmp_path: Path) -> None:
    assert keys.latest_backup(tmp_path / "none") is None
    assert keys.latest_backup(tmp_path) is None
    for name in ("20260101T000000Z", "20260102T000000Z", "20260102T000000Z-2",
                 "20260102T000000Z-10"):  # fmt: skip
        (tmp_path / name).mkdir()
        (tmp_path / name / keys.MANIFEST).write_text("{}")
    (tmp_path / "20270101T000000Z").mkdir()  # no manifest: an unfinished backup
    assert keys.latest_backup(tmp_path) == tmp_path / "20260102T000000Z-10"
    # a backup directory given directly is the answer
    assert keys.latest_backup(tmp_path / "20260101T000000Z") == tmp_path / "20260101T000000Z"
    assert keys.all_backups(tmp_path)[0].name == "20260101T000000Z"


def test_manifest_round_trip_and_order() -> None:
    digest = keys.sha256_hex(b"x")
    m = Manifest("c", "process", T, {"c-10": digest, "c-2": digest}, ("c-3",))
    doc = json.loads(m.dumps())
    assert list(doc["keys"]) == ["c-2", "c-10"]
    assert doc["version"] == 1 and doc["no_key"] == ["c-3"]
    assert keys.parse_manifest(m.dumps()) == m


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"keys": []}', '{"keys": {"c-1": "abc"}}', '{"keys": {"c-1": 5}}'],
)
def test_parse_manifest_rejects_damage(text: str) -> None:
    with pytest.raises(BadInput, match=r"manifest\.json"):
        keys.parse_manifest(text)


@pytest.mark.parametrize(
    ("current", "wanted", "change"),
    [
        (None, b"k", Change.ABSENT),
        (b"k", b"k", Change.IDENTICAL),
        (b"j", b"k", Change.DIFFERENT),
    ],
)
def test_compare(current: bytes | None, wanted: bytes, change: Change) -> None:
    assert keys.compare(current, wanted) == change


@pytest.mark.parametrize(
    ("change", "running", "force", "refused"),
    [
        (Change.ABSENT, False, False, None),
        (Change.ABSENT, True, False, "conduitctl down"),
        (Change.IDENTICAL, True, False, None),  # a no-op is safe while it runs
        (Change.DIFFERENT, False, False, "--force"),
        (Change.DIFFERENT, False, True, None),
        (Change.DIFFERENT, True, True, "conduitctl down"),  # force never restores a live one
    ],
)
def test_restore_refusal(change: Change, running: bool, force: bool, refused: str | None) -> None:
    why = keys.restore_refusal("c-1", change, running, force)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why and "c-1" in why and "\n" not in why


@pytest.mark.parametrize(("user", "ids"), [("1000:1000", (1000, 1000)), ("1000", (1000, 1000)),
                                           ("0:5", (0, 5))])  # fmt: skip
def test_parse_user(user: str, ids: tuple[int, int]) -> None:
    assert parse_user(user) == ids


# --- backup and restore on a fake store -------------------------------------------------------


def test_backup_writes_private_copies_and_a_manifest(tmp_path: Path) -> None:
    settings = fleet(tmp_path)
    store = FakeStore({"c-1": b"one", "c-2": b"two"})
    report = keys.backup(settings, now=T, store=store)
    directory = report.directory
    assert directory.parent == settings.state_dir / "keys"
    assert directory.name == keys.stamp(T)
    assert mode(directory) == 0o700 and mode(directory.parent) == 0o700
    assert [(e.backend, e.status) for e in report.entries] == [
        ("c-1", Status.BACKED_UP),
        ("c-2", Status.BACKED_UP),
        ("c-3", Status.NO_KEY),
    ]
    manifest = keys.parse_manifest((directory / "manifest.json").read_text())
    assert manifest.keys == {"c-1": keys.sha256_hex(b"one"), "c-2": keys.sha256_hex(b"two")}
    assert manifest.no_key == ("c-3",)
    for name, data in (("c-1", b"one"), ("c-2", b"two")):
        copy = directory / f"{name}.conduit_key.json"
        assert copy.read_bytes() == data and mode(copy) == 0o600
    assert report.entries[2].to_dict()["status"] == "no key yet"


def test_backup_includes_backends_beyond_the_desired_count(tmp_path: Path) -> None:
    store = FakeStore({"c-5": b"five"})  # scaled down: its data (identity) outlives it
    report = keys.backup(fleet(tmp_path, containers=1), tmp_path / "b", now=T, store=store)
    assert [(e.backend, e.status) for e in report.entries] == [
        ("c-1", Status.NO_KEY),
        ("c-5", Status.BACKED_UP),
    ]


def test_restore_writes_missing_keys_and_skips_identical(tmp_path: Path) -> None:
    settings = fleet(tmp_path)
    keys.backup(settings, now=T, store=FakeStore({"c-1": b"one", "c-2": b"two"}))
    store = FakeStore({"c-2": b"two"}, running={"c-2"})  # identical: fine even while running
    report = keys.restore(settings, store=store)
    assert store.data == {"c-1": b"one", "c-2": b"two"}
    assert store.writes == ["c-1"]
    assert [(e.backend, e.status) for e in report.entries] == [
        ("c-1", Status.RESTORED),
        ("c-2", Status.UNCHANGED),
    ]


def test_restore_refuses_a_different_key_and_writes_nothing(tmp_path: Path) -> None:
    settings = fleet(tmp_path)
    keys.backup(settings, now=T, store=FakeStore({"c-1": b"one", "c-2": b"two"}))
    store = FakeStore({"c-2": b"other"})
    with pytest.raises(BadInput, match=r"c-2 already has a different key.*--force"):
        keys.restore(settings, store=store)
    assert store.writes == []  # all checked before anything is written


def test_restore_force_keeps_the_replaced_key(tmp_path: Path) -> None:
    settings = fleet(tmp_path)
    keys.backup(settings, now=T, store=FakeStore({"c-1": b"one"}))
    store = FakeStore({"c-1": b"other"})
    report = keys.restore(settings, force=True, store=store, now=T + 60)
    assert store.data["c-1"] == b"one"
    (entry,) = report.entries
    assert entry.status == Status.REPLACED
    assert entry.saved_old is not None and entry.saved_old.read_bytes() == b"other"
    assert mode(entry.saved_old) == 0o600


def test_restore_refuses_a_running_backend(tmp_path: Path) -> None:
    settings = fleet(tmp_path)
    keys.backup(settings, now=T, store=FakeStore({"c-1": b"one"}))
    with pytest.raises(BadInput, match=r"c-1 is running.*conduitctl down"):
        keys.restore(settings, force=True, store=FakeStore({}, running={"c-1"}))


def test_restore_uses_the_newest_backup_and_one_backend(tmp_path: Path) -> None:
    settings = fleet(tmp_path)
    keys.backup(settings, now=T, store=FakeStore({"c-1": b"old", "c-2": b"two"}))
    keys.backup(settings, now=T + 1, store=FakeStore({"c-1": b"new", "c-2": b"two"}))
    store = FakeStore({})
    keys.restore(settings, backend="c-1", store=store)
    assert store.data == {"c-1": b"new"}
    with pytest.raises(BadInput, match="--backend c-9"):
        keys.restore(settings, backend="c-9", store=store)


def test_restore_refuses_a_damaged_backup(tmp_path: Path) -> None:
    settings = fleet(tmp_path)
    report = keys.backup(settings, now=T, store=FakeStore({"c-1": b"one"}))
    (report.directory / "c-1.conduit_key.json").write_bytes(b"tampered")
    store = FakeStore({})
    with pytest.raises(BadInput, match="does not match its sha256"):
        keys.restore(settings, store=store)
    assert store.data == {}


def test_restore_without_a_backup_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="keys backup"):
        keys.restore(fleet(tmp_path), store=FakeStore({}))


def test_would_regenerate(tmp_path: Path) -> None:
    settings = fleet(tmp_path)
    assert keys.would_regenerate(settings, store=FakeStore({})) == []  # no backup at all
    keys.backup(settings, now=T, store=FakeStore({"c-1": b"one", "c-2": b"two"}))
    assert keys.would_regenerate(settings, store=FakeStore({"c-1": b"one"})) == ["c-2"]
    full = FakeStore({"c-1": b"one", "c-2": b"two"})
    assert keys.would_regenerate(settings, store=full) == []

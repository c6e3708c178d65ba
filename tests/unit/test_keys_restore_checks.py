"""keys restore trusts nothing a backup's manifest says: its cluster must be ours and its
names our backends, checked before any key is read or written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conduitctl.errors import BadInput
from conduitctl.ops import keys
from conduitctl.settings import settings_from_dict

KEY = b'{"privateKeyBase64": "AAAA"}'


class DictKeys:
    """A key store in a dict: what a restore would write, and nothing else."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}
        self.writes: list[str] = []

    def read(self, backend: str) -> bytes | None:
        return self.keys.get(backend)

    def write(self, backend: str, data: bytes) -> None:
        self.writes.append(backend)
        self.keys[backend] = data

    def running(self, backend: str) -> bool:
        return False

    def names(self) -> list[str]:
        return sorted(self.keys)


def backup_dir(tmp_path: Path, cluster: str, names: list[str]) -> Path:
    directory = tmp_path / "backups" / "20261201T000000Z"
    directory.mkdir(parents=True)
    for name in names:
        target = directory / keys.backup_file_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(KEY)
    digest = keys.sha256_hex(KEY)
    manifest = {"cluster": cluster, "runtime": "process", "created_at": 0.0,
                "keys": {n: digest for n in names}}  # fmt: skip
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    return settings_from_dict({"cluster": {"name": "kc", "containers": 2,
                                           "state_dir": str(tmp_path / "state")}})  # fmt: skip


def test_a_backup_of_another_cluster_is_refused(tmp_path):
    store = DictKeys()
    directory = backup_dir(tmp_path, "other", ["other-1"])
    with pytest.raises(BadInput, match="a backup of cluster 'other', not of 'kc'"):
        keys.restore(settings(tmp_path), directory, store=store)
    assert store.writes == []


@pytest.mark.parametrize("name", ["../kc-1", "kc-1/../../etc", "kc-01", "kc-0", "kc-1x", "kd-1"])
def test_a_name_that_is_not_one_of_our_backends_is_refused(tmp_path, name):
    store = DictKeys()
    directory = backup_dir(tmp_path, "kc", ["kc-2"])
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["keys"][name] = keys.sha256_hex(KEY)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInput, match="is not a backend of kc"):
        keys.restore(settings(tmp_path), directory, store=store)
    assert store.writes == []


def test_our_own_backup_restores(tmp_path):
    store = DictKeys()
    directory = backup_dir(tmp_path, "kc", ["kc-1", "kc-2"])
    report = keys.restore(settings(tmp_path), directory, store=store)
    assert [e.status for e in report.entries] == [keys.Status.RESTORED] * 2
    assert store.keys == {"kc-1": KEY, "kc-2": KEY}

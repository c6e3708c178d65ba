"""Identity key backup and restore against a real fleet (processes, and docker volumes)."""

from __future__ import annotations

import hashlib
import json
import stat
import time
from pathlib import Path

import pytest
from fleet_helpers import PURGE, cli, wait_keys, write_config

from conduitctl.errors import BadInput
from conduitctl.labels import volume_name
from conduitctl.ops import keys
from conduitctl.runtime import runtime_for
from conduitctl.settings import Settings, load_settings
from conduitctl.sim.keys import key_document, new_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def process_fleet(tmp_path, free_block):
    base = free_block(140)
    config = write_config(tmp_path, base, name="kp", containers=2, front="none")
    cli("up", "--no-daemon", "--config", str(config))
    settings = load_settings(config)
    yield config, settings
    cli(*PURGE, "--config", str(config), check=False)


def key_path(settings: Settings, name: str) -> Path:
    return settings.state_dir / "process" / name / "data" / "conduit_key.json"


def test_backup_copies_are_private_and_match_the_manifest(process_fleet):
    _, settings = process_fleet
    originals = wait_keys(keys.store_for(settings), ["kp-1", "kp-2"])
    report = keys.backup(settings)
    assert [(e.backend, e.status) for e in report.entries] == [
        ("kp-1", keys.Status.BACKED_UP),
        ("kp-2", keys.Status.BACKED_UP),
    ]
    assert mode(report.directory) == 0o700
    manifest = json.loads((report.directory / "manifest.json").read_text())
    for name, data in originals.items():
        copy = report.directory / f"{name}.conduit_key.json"
        assert mode(copy) == 0o600
        assert copy.read_bytes() == data
        assert manifest["keys"][name] == hashlib.sha256(data).hexdigest()


def test_restore_brings_back_a_deleted_key_byte_identical(process_fleet):
    config, settings = process_fleet
    originals = wait_keys(keys.store_for(settings), ["kp-1", "kp-2"])
    keys.backup(settings)
    # a running backend is never written to
    key_path(settings, "kp-2").unlink()
    with pytest.raises(BadInput, match=r"kp-2 is running.*conduitctl down"):
        keys.restore(settings)
    cli("down", "--config", str(config))
    assert keys.would_regenerate(settings) == ["kp-2"]
    report = keys.restore(settings)
    statuses = {e.backend: e.status for e in report.entries}
    assert statuses == {"kp-1": keys.Status.UNCHANGED, "kp-2": keys.Status.RESTORED}
    restored = key_path(settings, "kp-2")
    assert restored.read_bytes() == originals["kp-2"] and mode(restored) == 0o600
    assert keys.would_regenerate(settings) == []
    # the backend starts with its restored identity and keeps it
    cli("up", "--no-daemon", "--config", str(config))
    assert wait_keys(keys.store_for(settings), ["kp-1", "kp-2"]) == originals


def test_restore_over_a_different_key_needs_force(process_fleet):
    config, settings = process_fleet
    originals = wait_keys(keys.store_for(settings), ["kp-1", "kp-2"])
    keys.backup(settings)
    cli("down", "--config", str(config))
    # another identity in kp-1's data (as if it had been recreated from scratch)
    fresh = {"kp-1": key_document(new_key()).encode()}
    key_path(settings, "kp-1").write_bytes(fresh["kp-1"])
    with pytest.raises(BadInput, match=r"kp-1 already has a different key.*--force"):
        keys.restore(settings)
    assert key_path(settings, "kp-1").read_bytes() == fresh["kp-1"]  # untouched
    report = keys.restore(settings, backend="kp-1", force=True)
    (entry,) = report.entries
    assert entry.status == keys.Status.REPLACED
    assert key_path(settings, "kp-1").read_bytes() == originals["kp-1"]
    assert entry.saved_old is not None and entry.saved_old.read_bytes() == fresh["kp-1"]


@pytest.mark.docker
def test_docker_keys_survive_a_purged_volume(tmp_path, free_block, sim_image):
    import docker

    base = free_block(140)
    config = write_config(tmp_path, base, name="dkk", containers=2, runtime="docker", front="none")
    try:
        cli("up", "--no-daemon", "--config", str(config))
        settings = load_settings(config)
        names = ["dkk-1", "dkk-2"]
        originals = wait_keys(keys.store_for(settings), names)
        report = keys.backup(settings, tmp_path / "backups")
        assert {e.backend for e in report.entries if e.status == keys.Status.BACKED_UP} == set(
            names
        )
        cli(*PURGE, "--config", str(config))
        client = docker.from_env()
        assert client.volumes.list(filters={"label": "io.conduitctl.cluster=dkk"}) == []
        assert keys.would_regenerate(settings, backups=tmp_path / "backups") == names

        restored = keys.restore(settings, tmp_path / "backups")
        assert {e.status for e in restored.entries} == {keys.Status.RESTORED}
        for name in names:
            volume = client.volumes.get(volume_name("dkk", int(name[-1])))
            assert volume.attrs["Labels"]["io.conduitctl.cluster"] == "dkk"
            path = Path(volume.attrs["Mountpoint"]) / "conduit_key.json"
            info = path.stat()
            assert path.read_bytes() == originals[name]
            assert (info.st_uid, info.st_gid, mode(path)) == (1000, 1000, 0o600)

        # the containers start on the restored volumes and keep those identities
        cli("up", "--no-daemon", "--config", str(config))
        status = json.loads(cli("status", "--json", "--config", str(config)).stdout)
        deadline = time.monotonic() + 15
        while any(b["health"] != "healthy" for b in status["backends"]):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
            status = json.loads(cli("status", "--json", "--config", str(config)).stdout)
        assert wait_keys(keys.store_for(settings), names) == originals
    finally:
        cli(*PURGE, "--config", str(config), check=False)


def test_up_refuses_to_regenerate_a_backed_up_key(tmp_path, free_block):
    from fleet_helpers import cli, write_config

    config = write_config(tmp_path, free_block(140), name="kg", containers=2)
    try:
        cli("up", "--config", str(config))
        key = tmp_path / "state/process/kg-1/data/conduit_key.json"
        deadline = time.monotonic() + 10
        while not key.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        original = key.read_bytes()
        cli("keys", "backup", "--config", str(config))
        cli(*PURGE, "--config", str(config))  # the keys are gone, the backup is not
        refused = cli("up", "--config", str(config), check=False)
        assert refused.returncode == 2
        assert "backup exists" in refused.stderr and "--new-keys" in refused.stderr
        assert not key.exists()  # nothing was started
        cli("keys", "restore", "--config", str(config))
        cli("up", "--config", str(config))
        assert key.read_bytes() == original  # the same station, same reputation
    finally:
        cli(*PURGE, "--config", str(config), check=False)


def test_purge_asks_for_yes_then_backs_the_keys_up_before_deleting_them(process_fleet):
    config, settings = process_fleet
    originals = wait_keys(keys.store_for(settings), ["kp-1", "kp-2"])
    refused = cli("down", "--purge", "--config", str(config), check=False)
    assert refused.returncode == 2 and "add --yes" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert all(key_path(settings, n).exists() for n in originals)  # nothing stopped or lost
    assert (
        json.loads(cli("status", "--json", "--config", str(config)).stdout)["backends"][0]["state"]
        == "running"
    )

    done = json.loads(cli("down", "--purge", "--yes", "--json", "--config", str(config)).stdout)
    saved = Path(done["keys_backup"])
    assert not any(key_path(settings, n).exists() for n in originals)  # purged...
    for name, data in originals.items():  # ...after a verified copy was made
        assert (saved / f"{name}.conduit_key.json").read_bytes() == data
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["cluster"] == "kp" and set(manifest["keys"]) == set(originals)


def test_up_never_starts_a_station_on_a_key_it_would_replace(tmp_path, free_block):
    """Conduit replaces a key file it cannot parse with a new identity: `up` refuses whole,
    and the file stays as it was, for a restore or a closer look."""
    config = write_config(tmp_path, free_block(140), name="kbr", containers=2, front="none")
    try:
        cli("up", "--no-daemon", "--config", str(config))
        settings = load_settings(config)
        store = keys.store_for(settings)
        wait_keys(store, settings.backend_names())
        cli("down", "--config", str(config))
        damaged = tmp_path / "state/process/kbr-2/data/conduit_key.json"
        damaged.write_bytes(b'{"mnemonic": "", "privateKeyBa')  # cut short
        refused = cli("up", "--no-daemon", "--config", str(config), check=False)
        assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
        assert "kbr-2: its key file does not parse (not JSON)" in refused.stderr
        assert "keys restore" in refused.stderr and "nothing changed" in refused.stderr
        assert damaged.read_bytes() == b'{"mnemonic": "", "privateKeyBa'
        assert not [s for s in runtime_for(settings).backends() if s.pid]  # none started
    finally:
        cli(*PURGE, "--config", str(config), check=False)

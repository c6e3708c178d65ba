"""rollback --legacy against a real dockerd: a fleet named "conduit" (so our container
conduit-2 and our volume conduit-data-2 collide with conduit-manager's) goes to the legacy
layout on the same identity keys, and comes back."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from fleet_helpers import PURGE, cli, wait_keys, write_config

from conduitctl import labels
from conduitctl.errors import BadInput, ConduitctlError
from conduitctl.fleet import desired_backends
from conduitctl.front import front_for
from conduitctl.hostinfo import render_env
from conduitctl.observe.scrape import scrape
from conduitctl.ops import converge
from conduitctl.ops.keys import KEY_FILE
from conduitctl.ops.legacy_layout import (
    from_legacy,
    legacy_active,
    legacy_file,
    legacy_slot,
    read_record,
    to_legacy,
)
from conduitctl.runtime import runtime_for
from conduitctl.runtime.base import State
from conduitctl.runtime.docker_keys import DockerKeys
from conduitctl.settings import Settings, load_settings

pytestmark = [pytest.mark.docker]

CLUSTER = "conduit"  # the default name: the collisions with conduit-manager's names happen
DATA_DIR = "/home/conduit/data"
TEST_LABEL = "io.conduitctl.test"  # marks the foreign container this file makes


# The names a fleet called "conduit" and its legacy layout use (not conduit-sim-..., say).
CONTAINER_NAMES = re.compile(rf"^{CLUSTER}(-\d+)?$")
VOLUME_NAMES = re.compile(rf"^{CLUSTER}-data(-\d+)?$")


def taken_names(client: Any) -> list[str]:
    return [
        c.name
        for c in client.containers.list(all=True, ignore_removed=True)
        if CONTAINER_NAMES.match(c.name)
    ]


def taken_volumes(client: Any) -> list[str]:
    return [v.name for v in client.volumes.list() if VOLUME_NAMES.match(v.name)]


@pytest.fixture
def client(sim_image: str) -> docker.DockerClient:
    """The docker client, once sure no conduit* container or volume belongs to someone else."""
    found = docker.from_env()
    if taken_names(found) or taken_volumes(found):
        pytest.skip(
            f"containers/volumes named conduit* exist ({taken_names(found)}, "
            f"{taken_volumes(found)}): not this test's to touch"
        )
    return found


def cleanup(client: Any, config: Path) -> None:
    """Remove only what this test made: containers we labelled (legacy, ours, the foreign
    one), then our fleet and volumes, then the legacy volumes the switch created."""
    for container in client.containers.list(all=True, ignore_removed=True):
        found = container.labels or {}
        made_here = (
            found.get(labels.LABEL_LEGACY) == CLUSTER
            or found.get(TEST_LABEL) == "legacy-layout"
            or (
                found.get(labels.LABEL_OWNER) == labels.OWNER
                and found.get(labels.LABEL_CLUSTER) == CLUSTER
            )
        )
        if made_here and CONTAINER_NAMES.match(container.name):
            container.remove(force=True)
    cli(*PURGE, "--config", str(config), check=False)
    for volume in client.volumes.list(filters={"label": f"{labels.LABEL_LEGACY}={CLUSTER}"}):
        volume.remove(force=True)


@pytest.fixture
def fleet(tmp_path: Path, free_block: Any, sim_image: str, client: Any) -> Iterator[Path]:
    base = free_block(140)
    config = write_config(
        tmp_path, base, name=CLUSTER, containers=3, runtime="docker", image=sim_image
    )
    try:
        yield config
    finally:
        cleanup(client, config)


def volume_key(client: Any, volume: str) -> bytes | None:
    path = Path(client.volumes.get(volume).attrs["Mountpoint"]) / KEY_FILE
    return path.read_bytes() if path.exists() else None


def sha(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def edges(config: Path) -> tuple[Settings, Any, Any]:
    settings = load_settings(config)
    return settings, runtime_for(settings), front_for(settings, render_env(settings, config))


def test_to_legacy_and_back_keeps_every_key(fleet: Path, client: Any) -> None:
    config = fleet
    cli("up", "--no-daemon", "--config", str(config))
    settings, runtime, front = edges(config)
    names = settings.backend_names()
    assert names == ["conduit-1", "conduit-2", "conduit-3"]
    keys = DockerKeys(settings, runtime)
    originals = {n: sha(k) for n, k in wait_keys(keys, names).items()}
    assert front.status().running

    lines: list[str] = []
    started = time.monotonic()
    result = to_legacy(settings, runtime, front, progress=lines.append)
    switched_s = time.monotonic() - started

    # conduit-manager's layout: conduit, conduit-2, conduit-3 on conduit-data, -2, -3
    for backend, i in zip(names, (1, 2, 3), strict=True):
        slot = legacy_slot(i)
        container = client.containers.get(slot.container)
        attrs = container.attrs
        assert container.status == "running"
        assert attrs["HostConfig"]["NetworkMode"] == "host"
        assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert attrs["Config"]["User"] == "1000:1000"
        assert attrs["Config"]["Labels"][labels.LABEL_LEGACY] == CLUSTER
        assert labels.LABEL_OWNER not in attrs["Config"]["Labels"]
        assert {m["Destination"]: m["Name"] for m in attrs["Mounts"]} == {DATA_DIR: slot.volume}
        assert sha(volume_key(client, slot.volume)) == originals[backend]
        backend_spec = next(s for s in desired_backends(settings) if s.name == backend)
        assert scrape(backend_spec.host, backend_spec.metrics_port, timeout=2).live
    # none of ours left; our volumes (and keys) kept; the front stopped
    owned = {"label": [f"{labels.LABEL_OWNER}={labels.OWNER}", f"{labels.LABEL_CLUSTER}={CLUSTER}"]}
    assert client.containers.list(all=True, filters=owned) == []
    assert runtime.backends() == []
    assert sorted(runtime.data_names()) == names
    for backend in names:
        assert sha(volume_key(client, keys.volume_of(backend))) == originals[backend]
    assert not front.status().running and result.front_stopped
    # the record, and what the result says was done with each key
    assert legacy_active(settings.state_dir)
    doc = result.to_dict()
    assert [c["container"] for c in doc["containers"]] == ["conduit", "conduit-2", "conduit-3"]
    assert [c["key"] for c in doc["containers"]] == ["copy", "same", "same"]
    assert [c["shared_volume"] for c in doc["containers"]] == [False, True, True]
    assert [c["sha256"] for c in doc["containers"]] == [originals[n] for n in names]
    assert str(legacy_file(settings.state_dir)) == doc["record"]
    record = read_record(settings.state_dir)
    assert record is not None and record.created_at > 0
    assert [(e.container, e.volume) for e in record.entries] == [
        ("conduit", "conduit-data"),
        ("conduit-2", "conduit-data-2"),
        ("conduit-3", "conduit-data-3"),
    ]
    # the copied key: owned by the container's user, 0600, like the runtime's own
    key_path = Path(client.volumes.get("conduit-data").attrs["Mountpoint"]) / KEY_FILE
    info = key_path.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (1000, 1000, 0o600)
    assert len(lines) == 4  # the front, then one line per backend

    # the way back, then the normal converge
    started = time.monotonic()
    back = from_legacy(settings, runtime, front)
    up = converge.up(settings, runtime, front)
    back_s = time.monotonic() - started
    assert [e.key for e in back.entries] == ["same", "same", "same"]
    assert not legacy_active(settings.state_dir)
    assert (
        client.containers.list(all=True, filters={"label": f"{labels.LABEL_LEGACY}={CLUSTER}"})
        == []
    )
    assert [s.name for s in runtime.backends()] == names
    assert all(s.state == State.RUNNING for s in runtime.backends())
    assert converge.wait_ready(settings, list(desired_backends(settings)), 15) == []
    assert up.front == "started" and front.status().running
    # keys byte-identical in our volumes; the legacy volume conduit-data kept with its copy
    assert {n: sha(k) for n, k in wait_keys(keys, names).items()} == originals
    assert sha(volume_key(client, "conduit-data")) == originals["conduit-1"]
    # and the front serves through our backends again
    with socket.create_connection(("127.0.0.1", settings.front.listeners[0].port), timeout=3) as s:
        assert s.recv(100).startswith(b"CONDUIT-SIM conduit-")
    print(f"to_legacy: {switched_s:.2f}s, from_legacy + up: {back_s:.2f}s")


def test_a_foreign_conduit_container_refuses_and_changes_nothing(
    fleet: Path, client: Any, sim_image: str
) -> None:
    config = fleet
    cli("up", "--no-daemon", "--config", str(config))
    settings, runtime, front = edges(config)
    keys = DockerKeys(settings, runtime)
    originals = wait_keys(keys, settings.backend_names())
    # conduit-manager's container, as it would be: a name, none of our labels
    foreign = client.containers.create(
        sim_image, name="conduit", labels={TEST_LABEL: "legacy-layout"}, command=["--help"]
    )
    before = {s.name: (s.container_id, s.state) for s in runtime.backends()}

    with pytest.raises(BadInput, match="a container named conduit exists") as refused:
        to_legacy(settings, runtime, front)
    assert "conduit-manager still running?" in str(refused.value)

    assert {s.name: (s.container_id, s.state) for s in runtime.backends()} == before
    assert all(state == State.RUNNING for _, state in before.values())
    assert front.status().running
    assert not legacy_active(settings.state_dir)
    assert client.containers.get("conduit").id == foreign.id
    assert "conduit-data" not in [v.name for v in client.volumes.list()]
    assert wait_keys(keys, settings.backend_names()) == originals


def test_a_backend_that_fails_to_switch_is_put_back_and_the_way_back_works(
    fleet: Path, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conduitctl.ops.legacy_layout as legacy_layout

    config = fleet
    cli("up", "--no-daemon", "--config", str(config))
    settings, runtime, front = edges(config)
    keys = DockerKeys(settings, runtime)
    originals = wait_keys(keys, settings.backend_names())
    real_wait = legacy_layout.wait_ready

    def conduit_2_never_ready(settings: Settings, backends: list[Any], timeout: float) -> Any:
        # (waits for the real thing first: a station stopped while still starting up may not
        # have its SIGTERM handler yet, and docker then waits 10 s before it kills it)
        late = real_wait(settings, backends, timeout)
        return ["conduit-2"] if [b.name for b in backends] == ["conduit-2"] else late

    monkeypatch.setattr(legacy_layout, "wait_ready", conduit_2_never_ready)
    with pytest.raises(ConduitctlError, match=r"conduit-2 not ready .* conduit-2 was put back"):
        to_legacy(settings, runtime, front)

    # conduit-1 runs as legacy `conduit` (recorded); conduit-2 is ours again; conduit-3 untouched
    assert client.containers.get("conduit").status == "running"
    record = read_record(settings.state_dir)
    assert record is not None and [e.container for e in record.entries] == ["conduit"]
    assert {s.name: s.state for s in runtime.backends()} == {
        "conduit-2": State.RUNNING,
        "conduit-3": State.RUNNING,
    }
    assert client.containers.get("conduit-2").labels[labels.LABEL_OWNER] == labels.OWNER

    from_legacy(settings, runtime, front)
    converge.up(settings, runtime, front)
    assert [s.name for s in runtime.backends()] == settings.backend_names()
    assert wait_keys(keys, settings.backend_names()) == originals
    assert "conduit" not in [c.name for c in client.containers.list(all=True, ignore_removed=True)]


def test_cli_rollback_legacy_then_up_comes_back(fleet: Path, client: Any) -> None:
    """The operator's path: `rollback --legacy` (the supervisor is stopped first) and `up`."""
    config = fleet
    cli("up", "--config", str(config))  # with the supervisor
    settings, runtime, _ = edges(config)
    keys = DockerKeys(settings, runtime)
    originals = {n: sha(k) for n, k in wait_keys(keys, settings.backend_names()).items()}

    went = cli("rollback", "--legacy", "--config", str(config))
    assert "conduit-manager's layout: conduit, conduit-2, conduit-3" in went.stdout
    assert "supervisor stopped" in went.stderr
    assert sorted(taken_names(client)) == ["conduit", "conduit-2", "conduit-3"]
    refused = cli("daemon", "--config", str(config), check=False)
    assert refused.returncode == 2 and "`conduitctl up` brings" in refused.stderr

    back = cli("up", "--config", str(config))
    assert "leaving conduit-manager's layout" in back.stderr
    assert sorted(taken_names(client)) == ["conduit-1", "conduit-2", "conduit-3"]
    assert {n: sha(k) for n, k in wait_keys(keys, settings.backend_names()).items()} == originals
    assert not legacy_active(settings.state_dir)
    cli("daemon-stop", "--config", str(config))


# --- conduitctl migrate: conduit-manager's own stations, not ours -----------------------------

SSMIRR = "ghcr.io/ssmirr/conduit/conduit:latest"  # conduit-manager's image name
# Serial: running stations named `conduit*` without our labels make every docker fleet on
# this host refuse `up` (a conduit-manager station runs here), as they should.
HOST_WIDE = pytest.mark.serial
MANAGER_LAYOUT = [("conduit", "conduit-data"), ("conduit-2", "conduit-data-2"),
                  ("conduit-3", "conduit-data-3")]  # fmt: skip


@pytest.fixture
def ssmirr_image(client: Any, sim_image: str) -> Iterator[str]:
    """conduit-manager's image name on a simulator that speaks the CLI 1.x (--max-clients),
    as the ssmirr fork does; built here from the local simulator, untagged afterwards."""
    dockerfile = f"FROM {sim_image}\nENV CONDUIT_SIM_CLI_VERSION=1.5.0\n".encode()
    client.images.build(fileobj=io.BytesIO(dockerfile), tag=SSMIRR, pull=False, rm=True)
    try:
        yield SSMIRR
    finally:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(SSMIRR)


@pytest.fixture
def manager_host(client: Any, ssmirr_image: str) -> Iterator[dict[str, str]]:
    """Three stations as conduit-manager runs them: `conduit`, `conduit-2`, `conduit-3` on
    `conduit-data`, `conduit-data-2`, `conduit-data-3`, host networking, the 1.x flags, no
    label of ours. Yields each container's key sha256 once every station wrote its key.
    Ask for it before `fleet`: the fleet goes first at teardown, then these volumes."""
    made = []
    try:
        for name, volume in MANAGER_LAYOUT:
            made.append(client.containers.run(
                ssmirr_image, name=name, detach=True, network_mode="host",
                labels={TEST_LABEL: "legacy-layout"}, restart_policy={"Name": "unless-stopped"},
                volumes={volume: {"bind": DATA_DIR, "mode": "rw"}},
                command=["start", "--max-clients", "40", "-b", "5", "--data-dir", DATA_DIR],
            ))  # fmt: skip
        deadline = time.monotonic() + 20
        keys: dict[str, str] = {}
        while len(keys) < len(MANAGER_LAYOUT) and time.monotonic() < deadline:
            keys = {n: k for n, v in MANAGER_LAYOUT if (k := sha(volume_key(client, v)))}
            time.sleep(0.1)
        assert len(keys) == len(MANAGER_LAYOUT), keys
        yield keys
    finally:
        for container in client.containers.list(all=True, ignore_removed=True):
            if (container.labels or {}).get(TEST_LABEL) == "legacy-layout":
                container.remove(force=True)
        for _, volume in MANAGER_LAYOUT:
            with contextlib.suppress(docker.errors.NotFound):
                client.volumes.get(volume).remove(force=True)


@HOST_WIDE
def test_migrate_moves_three_manager_stations_with_every_key(
    manager_host: dict[str, str], fleet: Path, client: Any
) -> None:
    config = fleet
    shown = json.loads(cli("migrate", "--config", str(config), "--json").stdout)
    assert shown["layout"] == "standard" and shown["v1_flags"] and shown["image"] == SSMIRR
    assert [(s["container"], s["backend"], s["target_volume"]) for s in shown["stations"]] == [
        ("conduit", "conduit-1", "conduit-data-1"),
        ("conduit-2", "conduit-2", "conduit-data-2"),
        ("conduit-3", "conduit-3", "conduit-data-3"),
    ]
    assert {s["container"]: s["key_sha256"] for s in shown["stations"]} == manager_host
    assert shown["moved"] == [] and shown["refusals"] == []
    # without --yes nothing changed: the stations still run as conduit-manager made them
    assert {c.name for c in client.containers.list() if c.name in manager_host} == set(manager_host)

    done = json.loads(cli("migrate", "--yes", "--config", str(config), "--json").stdout)
    assert done["moved"] == ["conduit-1", "conduit-2", "conduit-3"]
    assert done["removed"] == ["conduit", "conduit-2", "conduit-3"]
    settings, runtime, _ = edges(config)
    keys = DockerKeys(settings, runtime)
    # every key byte-identical, each under the station of the same number
    assert {n: sha(keys.read(b)) for n, b in
            (("conduit", "conduit-1"), ("conduit-2", "conduit-2"), ("conduit-3", "conduit-3"))} \
        == manager_host  # fmt: skip
    assert all(b.state == State.RUNNING for b in runtime.backends())
    left = {c.name for c in client.containers.list(all=True, ignore_removed=True)}
    assert "conduit" not in left and not any(n.endswith("-pre-conduitctl") for n in left)
    volumes = {v.name for v in client.volumes.list()}
    assert {"conduit-data", "conduit-data-2", "conduit-data-3"} <= volumes  # never removed
    journal = json.loads((settings.state_dir / "migration.json").read_text())
    assert {s["state"] for s in journal["stations"]} == {"removed (volume kept)"}


@HOST_WIDE
def test_migrate_refuses_two_keys_for_one_station_and_changes_nothing(
    manager_host: dict[str, str], fleet: Path, client: Any
) -> None:
    """The issue's host: an earlier `up` made conduit-1 on a new volume with a new key."""
    config = fleet
    settings, runtime, _ = edges(config)
    keys = DockerKeys(settings, runtime)
    other = b'{"mnemonic": "x", "privateKeyBase64": "eA=="}'
    keys.write_volume("conduit-data-1", other, via="conduit-1",
                      create_labels=keys.owned_labels("conduit-1"))  # fmt: skip
    before = {c.name: (c.id, c.status) for c in client.containers.list(all=True)}
    result = cli("migrate", "--yes", "--config", str(config), check=False)
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.count("\n") == 1
        and "nothing changed: two keys for station 1" in result.stderr
    )
    assert {c.name: (c.id, c.status) for c in client.containers.list(all=True)} == before
    assert keys.read("conduit-1") == other
    assert not (settings.state_dir / "migration.json").exists()


@HOST_WIDE
def test_a_station_that_does_not_come_up_runs_in_its_own_container_again(
    manager_host: dict[str, str], fleet: Path, client: Any
) -> None:
    config = fleet
    text = re.sub(
        r"(?m)^extra_args = .*$", 'extra_args = ["--crash-after", "0"]', config.read_text()
    )
    config.write_text(text)  # every backend of ours dies at once
    client.containers.get("conduit").update(
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 3}
    )
    result = cli("migrate", "--yes", "--config", str(config), check=False, timeout=90)
    assert result.returncode == 1, result.stderr
    assert "conduit-1 did not come up on conduit's key (it exited" in result.stderr
    assert "conduit runs again in its own container" in result.stderr
    station = client.containers.get("conduit")
    assert station.status == "running"
    assert station.attrs["HostConfig"]["RestartPolicy"] == {
        "Name": "on-failure",
        "MaximumRetryCount": 3,
    }
    settings, runtime, _ = edges(config)
    assert [b.name for b in runtime.backends()] == []  # ours removed, its volume kept
    assert sha(DockerKeys(settings, runtime).read("conduit-1")) == manager_host["conduit"]
    for name in ("conduit-2", "conduit-3"):  # the stations after it were not touched
        assert client.containers.get(name).status == "running"


@HOST_WIDE
def test_migrate_picks_up_a_migration_killed_half_way(
    manager_host: dict[str, str], fleet: Path, client: Any
) -> None:
    """What a kill between the rename and our start leaves: conduit-2 stopped, its restart
    policy "no", renamed aside. The next run still knows it as station 2 and moves it."""
    config = fleet
    aside = client.containers.get("conduit-2")
    aside.update(restart_policy={"Name": "no"})
    aside.stop(timeout=5)
    aside.rename("conduit-2-pre-conduitctl")
    shown = json.loads(cli("migrate", "--config", str(config), "--json").stdout)
    assert shown["refusals"] == []
    assert [(s["container"], s["set_aside"]) for s in shown["stations"]] == [
        ("conduit", False), ("conduit-2", True), ("conduit-3", False)
    ]  # fmt: skip
    done = json.loads(cli("migrate", "--yes", "--config", str(config), "--json").stdout)
    assert done["moved"] == ["conduit-1", "conduit-2", "conduit-3"]
    settings, runtime, _ = edges(config)
    assert sha(DockerKeys(settings, runtime).read("conduit-2")) == manager_host["conduit-2"]
    left = {c.name for c in client.containers.list(all=True, ignore_removed=True)}
    assert not any(n.endswith("-pre-conduitctl") for n in left)

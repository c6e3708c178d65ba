"""A docker fleet: hardened simulator containers behind a real front."""

from __future__ import annotations

import socket

import docker
import pytest
from fleet_helpers import PURGE, cli, cli_json, write_config

pytestmark = [pytest.mark.docker]


@pytest.fixture
def docker_fleet(tmp_path, free_block, sim_image):
    base = free_block(140)
    config = write_config(tmp_path, base, name="dkt", containers=3, runtime="docker")
    yield config, base
    cli(*PURGE, "--config", str(config), check=False)


def test_containers_are_hardened(docker_fleet):
    config, _ = docker_fleet
    cli("up", "--config", str(config))
    client = docker.from_env()
    attrs = client.containers.get("dkt-2").attrs
    host = attrs["HostConfig"]
    assert attrs["Config"]["User"] == "1000:1000"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["PidsLimit"] == 256
    assert host["Memory"] == 512 * 1024**2 and host["MemorySwap"] == host["Memory"]
    assert host["NanoCpus"] == 1_000_000_000
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 16384, "Hard": 16384}]
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-file": "3", "max-size": "10m"},
    }
    assert host["NetworkMode"] == "host"
    assert "/tmp" in host["Tmpfs"]
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/home/conduit/data"]["Name"] == "dkt-data-2"
    labels = attrs["Config"]["Labels"]
    assert labels["io.conduitctl.owner"] == "conduitctl"
    assert labels["io.conduitctl.cluster"] == "dkt"
    # the backend's ports are bound to loopback only
    status = cli_json("status", "--config", str(config))
    assert all(b["listen"].startswith("127.0.0.1:") for b in status["backends"])
    assert [b["health"] for b in status["backends"]] == ["healthy"] * 3


def test_up_twice_then_down_keeps_keys(docker_fleet):
    config, base = docker_fleet
    assert cli_json("up", "--config", str(config))["changed"] is True
    again = cli_json("up", "--config", str(config))
    assert again["changed"] is False and again["front"] == "unchanged"
    with socket.create_connection(("127.0.0.1", base), timeout=3) as sock:
        assert sock.recv(100).startswith(b"CONDUIT-SIM dkt-")
    client = docker.from_env()
    cli("down", "--config", str(config))
    assert client.containers.list(all=True, filters={"label": "io.conduitctl.cluster=dkt"}) == []
    volumes = client.volumes.list(filters={"label": "io.conduitctl.cluster=dkt"})
    assert sorted(v.name for v in volumes) == ["dkt-data-1", "dkt-data-2", "dkt-data-3"]
    cli(*PURGE, "--config", str(config))
    assert client.volumes.list(filters={"label": "io.conduitctl.cluster=dkt"}) == []


def test_changed_config_recreates_one_at_a_time_keeping_keys(docker_fleet):
    config, _ = docker_fleet
    cli("up", "--config", str(config))
    client = docker.from_env()
    ids = {
        c.name: c.id for c in client.containers.list(filters={"label": "io.conduitctl.cluster=dkt"})
    }
    text = config.read_text().replace("max_clients = 1000", "max_clients = 900")
    config.write_text(text)
    result = cli_json("up", "--config", str(config))
    assert [a["kind"] for a in result["actions"]] == ["recreate"] * 3
    new_ids = {
        c.name: c.id for c in client.containers.list(filters={"label": "io.conduitctl.cluster=dkt"})
    }
    assert set(new_ids) == set(ids) and not set(new_ids.values()) & set(ids.values())
    status = cli_json("status", "--config", str(config))
    assert [b["health"] for b in status["backends"]] == ["healthy"] * 3


def test_missing_image_is_a_clear_error(tmp_path, free_block, sim_image):
    base = free_block(140)
    config = write_config(
        tmp_path, base, name="dkm", containers=1, runtime="docker", image="conduit-sim:nope"
    )
    result = cli("up", "--config", str(config), check=False)
    cli(*PURGE, "--config", str(config), check=False)
    assert result.returncode == 2
    assert "image conduit-sim:nope is not present locally" in result.stderr


def test_a_foreign_container_refuses_the_whole_up_before_any_step(tmp_path, free_block, sim_image):
    """Seen on a host that still ran other containers: up created the first backend, then
    stopped on the second's name. The whole plan refuses first: nothing is created."""
    base = free_block(140)
    config = write_config(tmp_path, base, name="dkf", containers=3, runtime="docker")
    client = docker.from_env()
    squatter = client.containers.create(sim_image, name="dkf-2", command=["--help"])
    try:
        dry = cli("up", "--dry-run", "--config", str(config), check=False)
        assert dry.returncode == 2, dry.stderr
        assert "refused" in dry.stdout and "dkf-2" in dry.stdout
        result = cli("up", "--config", str(config), check=False)
        assert result.returncode == 2
        assert "nothing changed: dkf-2: a container conduitctl does not own" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
        names = {c.name for c in client.containers.list(all=True, ignore_removed=True)}
        assert "dkf-1" not in names and "dkf-3" not in names
        assert not any(v.name.startswith("dkf-data") for v in client.volumes.list())
    finally:
        squatter.remove(force=True)
        cli(*PURGE, "--config", str(config), check=False)


@pytest.mark.serial  # a running conduit-manager station refuses every docker fleet on the host
def test_a_running_conduit_manager_station_refuses_the_whole_up(tmp_path, free_block, sim_image):
    """Seen on a host that still ran conduit-manager: up started new stations (new keys)
    beside the old one. Its running, unlabelled `conduit-N` refuses the whole up first."""
    base = free_block(140)
    config = write_config(tmp_path, base, name="dkm", containers=2, runtime="docker")
    client = docker.from_env()
    station = client.containers.run(
        sim_image, name="conduit-7", entrypoint=["sleep", "60"], network_mode="none", detach=True
    )
    try:
        result = cli("up", "--config", str(config), check=False)
        assert result.returncode == 2
        assert "conduit-7: conduit-manager's station runs here" in result.stderr
        assert "docker stop conduit-7" in result.stderr  # the fix, in the one line
        names = {c.name for c in client.containers.list(all=True, ignore_removed=True)}
        assert not names & {"dkm-1", "dkm-2"}
        assert not any(v.name.startswith("dkm-data") for v in client.volumes.list())
    finally:
        station.remove(force=True)
        cli(*PURGE, "--config", str(config), check=False)

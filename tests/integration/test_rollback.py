"""Rollback to a snapshot on real fleets: 8 docker backends behind nginx inside 10 s with
every identity key intact, and a process fleet rolled back and forth (undo)."""

from __future__ import annotations

import pytest
from fleet_helpers import (
    PURGE,
    cli,
    cli_json,
    key_hashes,
    running_hashes,
    wanted_hashes,
    write_config,
)


@pytest.mark.docker
def test_rollback_of_8_docker_backends_restores_them_and_keeps_keys(
    tmp_path, free_block, sim_image
):
    """Its speed (<= 10 s for 8) is measured in benchmarks/bench_change.py, not here: a
    wall-clock bound in a test on a busy 2-core machine measures the neighbours."""
    base = free_block(140)
    config = write_config(
        tmp_path, base, name="rb", containers=8, runtime="docker", image=sim_image, memory="96m"
    )
    try:
        cli("up", "--no-daemon", "--config", str(config), timeout=180)
        original_text = config.read_text()
        original = wanted_hashes(config)
        keys_before = key_hashes(config)
        assert len(keys_before) == 8
        config.write_text(original_text.replace("max_clients = 1000", "max_clients = 500"))
        cli("up", "--no-daemon", "--config", str(config), timeout=180)
        changed = running_hashes(config)
        assert all(changed[n] != original[n] for n in original)  # all 8 were recreated

        result = cli_json("rollback", "--config", str(config))
        assert config.read_text() == original_text
        assert running_hashes(config) == original
        assert sorted(a["name"] for a in result["actions"] if a["kind"] == "recreate") == sorted(
            original
        )
        assert key_hashes(config) == keys_before  # byte-identical identity keys
        rows = cli_json("status", "--config", str(config))["backends"]
        assert [r["health"] for r in rows] == ["healthy"] * 8
    finally:
        cli(
            "down",
            "--purge",
            "--yes",
            "--discard-keys",
            "--config",
            str(config),
            check=False,
            timeout=180,
        )


def test_rollback_twice_undoes_it_and_picks_named_snapshots(tmp_path, free_block):
    base = free_block(140)
    config = write_config(tmp_path, base, name="rp", containers=2, front="haproxy")
    try:
        cli("up", "--no-daemon", "--config", str(config))
        first = config.read_text()
        keys_before = key_hashes(config)
        config.write_text(first.replace("max_clients = 1000", "max_clients = 300"))
        cli("up", "--no-daemon", "--config", str(config))
        second = config.read_text()

        undo = cli_json("rollback", "--batch", "1", "--config", str(config))
        assert config.read_text() == first
        assert running_hashes(config) == wanted_hashes(config)
        # The rollback saved the fleet it replaced; rolling back to it redoes the change.
        cli_json("rollback", undo["saved_as"], "--config", str(config))
        assert config.read_text() == second
        assert running_hashes(config) == wanted_hashes(config)
        assert key_hashes(config) == keys_before

        plan = cli_json("rollback", "--dry-run", undo["snapshot"][:-1], "--config", str(config))
        assert plan["dry_run"] and {a["kind"] for a in plan["actions"]} == {"recreate"}
        assert config.read_text() == second  # a dry run changes nothing

        missing = cli("rollback", "no-such-snapshot", "--config", str(config), check=False)
        assert missing.returncode == 2
        assert "no snapshot 'no-such-snapshot'" in missing.stderr
    finally:
        cli(*PURGE, "--config", str(config), check=False)


@pytest.mark.docker
def test_an_image_rebuilt_under_its_tag_is_rolled_out_and_back(tmp_path, free_block, sim_image):
    """`docker pull`/a rebuild moves a tag: `up` recreates onto the new image; `rollback`
    points the tag at the recorded image again and recreates back onto it."""
    import docker
    from sim_images import build_faulty_image, remove_faulty_image

    tag = "conduit-sim:retag-test"
    client = docker.from_env()
    first = client.images.get(build_faulty_image(tag, {"CONDUIT_SIM_SESSION_MB": "0"})).id
    built = [first]
    base = free_block(140)
    config = write_config(tmp_path, base, name="rt", containers=2, runtime="docker", image=tag)
    try:
        cli("up", "--no-daemon", "--config", str(config), timeout=180)
        keys_before = key_hashes(config)
        second = client.images.get(build_faulty_image(tag, {"CONDUIT_SIM_SESSION_MB": "1"})).id
        built.append(second)
        assert second != first
        plan = cli_json("up", "--dry-run", "--config", str(config))
        assert [a["reason"] for a in plan["actions"]] == [f"{tag} is another image now"] * 2

        cli("up", "--no-daemon", "--config", str(config), timeout=180)

        def images() -> set[str]:
            return {client.containers.get(f"rt-{i}").attrs["Image"] for i in (1, 2)}

        assert images() == {second}
        result = cli_json("rollback", "--config", str(config))
        assert result["retagged"] == [tag]
        assert client.images.get(tag).id == first and images() == {first}
        assert key_hashes(config) == keys_before
    finally:
        cli(
            "down",
            "--purge",
            "--yes",
            "--discard-keys",
            "--config",
            str(config),
            check=False,
            timeout=180,
        )
        remove_faulty_image(tag)
        # Only the images built here (the one the tag moved off is left untagged): the
        # faulty images other tests build at the same time are theirs to remove.
        for image in client.images.list(filters={"label": "conduitctl.test=sim-faulty-image"}):
            if image.id in built:
                client.images.remove(image.id, force=True)

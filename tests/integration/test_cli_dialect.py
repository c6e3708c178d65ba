"""An image whose Conduit CLI rejects our flags is refused by `up` and `rollout` before any
station is touched, naming the flag and the dialect to set: the image is asked itself
(`--version` in a throwaway container, once per image id)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from fleet_helpers import PURGE, cli, write_config

pytestmark = [pytest.mark.docker]
CLI1_TAG = "conduit-sim:cli-1.5.0-dialect-test"


@pytest.fixture(scope="module")
def cli1_image(sim_image: str) -> Iterator[str]:
    """The simulator as the CLI 1.5.0 (conduit-manager's ssmirr image speaks that one)."""
    client = docker.from_env()
    dockerfile = f"FROM {sim_image}\nENV CONDUIT_SIM_CLI_VERSION=1.5.0\n".encode()
    client.images.build(fileobj=io.BytesIO(dockerfile), tag=CLI1_TAG, rm=True)
    yield CLI1_TAG
    client.images.remove(CLI1_TAG, noprune=True)


def ours(name: str) -> dict[str, str]:
    """This fleet's containers: name -> id."""
    found = docker.from_env().containers.list(
        all=True, filters={"label": f"io.conduitctl.cluster={name}"}
    )
    return {c.name: c.id for c in found}


def test_up_refuses_an_image_whose_cli_rejects_the_flags_and_creates_nothing(
    tmp_path: Path, free_block, cli1_image: str
) -> None:
    config = write_config(tmp_path, free_block(140), name="dlu", containers=2,
                          runtime="docker", image=cli1_image)  # fmt: skip
    result = cli("up", "--config", str(config), check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert (f"image {cli1_image} runs the Conduit CLI 1.5.0, which rejects --max-common-clients; "
            'set workload.flag_dialect = "v1"') in result.stderr  # fmt: skip
    assert ours("dlu") == {}
    cached = json.loads((tmp_path / "state" / "cli-versions.json").read_text())
    assert list(cached.values()) == ["1.5.0"]  # asked once, by image id
    # The dialect it speaks: the same plan passes.
    v1 = config.read_text().replace('profile = "sim"', 'profile = "sim"\nflag_dialect = "v1"')
    config.write_text(v1)
    assert cli("up", "--dry-run", "--config", str(config), check=False).returncode == 0


def test_rollout_to_such_an_image_is_refused_before_any_station_is_touched(
    tmp_path: Path, free_block, cli1_image: str
) -> None:
    config = write_config(tmp_path, free_block(140), name="dlr", containers=2, runtime="docker",
                          front="none")  # fmt: skip
    try:
        cli("up", "--no-daemon", "--config", str(config))
        before = ours("dlr")
        assert len(before) == 2
        text = re.sub(r'(?m)^profile = "sim"$', f'profile = "sim"\nimage = "{cli1_image}"',
                      config.read_text())  # fmt: skip
        config.write_text(text)
        result = cli("rollout", "--soak", "5s", "--config", str(config), check=False)
        assert result.returncode == 2, result.stderr
        assert "nothing changed: dlr-1: image" in result.stderr
        assert "rejects --max-common-clients" in result.stderr
        assert ours("dlr") == before  # the same containers, untouched
        assert not (tmp_path / "state" / "rollout").exists()
    finally:
        cli(*PURGE, "--config", str(config), check=False)


DEV_TAG = "conduit-sim:cli-dev-dialect-test"
# A development build of the 1.x CLI, as the published image is one: `--version` names no
# version, and only `start --help`'s flag list tells which CLI it is.
DEV_ENTRYPOINT = (
    'case "$1" in --version) echo "conduit version dev";; '
    'start) echo "  -m, --max-clients int   maximum number of proxy clients";; esac'
)


def test_a_dev_build_is_known_by_its_flags(tmp_path: Path, free_block, sim_image: str) -> None:
    client = docker.from_env()
    dockerfile = (
        f"FROM {sim_image}\nENTRYPOINT {json.dumps(['/bin/sh', '-c', DEV_ENTRYPOINT, 'conduit'])}\n"
    )
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=DEV_TAG, rm=True)
    try:
        config = write_config(tmp_path, free_block(140), name="dld", containers=1,
                              runtime="docker", image=DEV_TAG)  # fmt: skip
        result = cli("up", "--dry-run", "--config", str(config), check=False)
        assert result.returncode == 2, result.stderr
        assert (f"image {DEV_TAG} runs the Conduit CLI 1.x, which rejects --max-common-clients; "
                'set workload.flag_dialect = "v1"') in result.stderr  # fmt: skip
        cached = json.loads((tmp_path / "state" / "cli-versions.json").read_text())
        assert list(cached.values()) == ["1"]
        assert not client.containers.list(all=True, filters={"ancestor": DEV_TAG})  # removed
    finally:
        client.images.remove(DEV_TAG, noprune=True)


def test_a_probe_that_hangs_is_killed_and_remembered_as_no_version(
    tmp_path: Path, sim_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conduitctl.runtime import cli_versions

    client = docker.from_env()
    tag = "conduit-sim:cli-hangs-dialect-test"
    dockerfile = f'FROM {sim_image}\nENTRYPOINT ["sleep", "60"]\n'
    image = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)[0]
    monkeypatch.setattr(cli_versions, "ASK_TIMEOUT_S", 1.0)
    try:
        cache = tmp_path / "cli-versions.json"
        asked = cli_versions.CliVersions(client, cache)
        assert asked.version(image.id) is None
        assert json.loads(cache.read_text()) == {image.id: ""}  # asked once, not every time
        assert not client.containers.list(all=True, filters={"ancestor": tag})  # killed, removed
    finally:
        client.images.remove(tag, noprune=True)

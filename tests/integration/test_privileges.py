"""Run as root, conduitctl starts process backends as container.user: no supplementary
groups, that uid and gid, no capabilities, no_new_privs; their data dir and identity key are
theirs. A backend that user could not start is refused before anything changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_helpers import PURGE, cli, cli_json, wait_for, write_config

import conduitctl
from conduitctl.runtime.base import launch_specs
from conduitctl.settings import load_settings

USER = (1000, 1000)
# The venv's Python lives under /root, closed to uid 1000; the system's runs the simulator,
# which needs nothing but the standard library, from a copy of its source anyone may read.
SYSTEM_PYTHON = "/usr/bin/python3"
BOOT = "import sys; sys.path.insert(0, {src!r}); from conduitctl.sim.main import main; "
BOOT += "sys.exit(main(sys.argv[1:]))"


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory under /tmp that another user may enter (pytest's own is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="conduitctl-priv-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_a_process_backend_runs_as_its_user_with_nothing_more(open_dir, free_block):
    source = open_dir / "src"
    package = Path(conduitctl.__file__).parent
    shutil.copytree(package / "sim", source / "conduitctl" / "sim",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(package / "__init__.py", source / "conduitctl" / "__init__.py")
    subprocess.run(["chmod", "-R", "a+rX", str(source)], check=True)

    config = write_config(open_dir / "fleet", free_block(140), name="prv", containers=1,
                          front="none", as_root=False)  # fmt: skip
    settings = load_settings(config)
    [spec] = launch_specs(settings)
    data = settings.state_dir / "process" / "prv-1" / "data"
    sim_argv = spec.argv(str(data))  # what the sim profile would run
    text = config.read_text().replace('profile = "sim"', 'profile = "generic"')
    command = [SYSTEM_PYTHON, "-c", BOOT.format(src=str(source)), *sim_argv]
    text = text.replace("extra_args = []", f"command = {json.dumps(command)}")
    config.write_text(text)
    try:
        cli("up", "--no-daemon", "--config", str(config))

        def healthy() -> dict | None:
            shown = cli_json("status", "--config", str(config))
            return shown if shown["backends"][0]["health"] == "healthy" else None

        shown = wait_for(healthy, 30, "a healthy backend")
        pid = shown["backends"][0]["pid"]
        found = proc_status(pid)
        assert found["Uid"].split() == ["1000"] * 4 and found["Gid"].split() == ["1000"] * 4
        assert found["Groups"] == ""
        for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(found[caps], 16) == 0, (caps, found[caps])
        assert found["NoNewPrivs"] == "1"
        key = wait_for(lambda: next(iter(data.glob("conduit_key.json")), None), 15, "its key")
        for path in (data, key):
            st = path.stat()
            assert (st.st_uid, st.st_gid) == USER
        assert key.stat().st_mode & 0o777 == 0o600
        # The shim that watches it stays root, to record how it ends.
        assert proc_status(int(found["PPid"]))["Uid"].split()[0] == "0"
        # What its user plants in its data dir is never chowned by root at the next start.
        victim = open_dir / "root-only"
        victim.write_text("root's")
        (data / "planted").symlink_to(victim)
        (data / "dir").mkdir()
        cli("restart", "prv-1", "--config", str(config))
        assert victim.stat().st_uid == 0 and (data / "dir").stat().st_uid == 0
        assert wait_for(healthy, 30, "healthy again")["backends"][0]["pid"] != pid
    finally:
        cli(*PURGE, "--config", str(config), check=False)


def test_a_backend_its_user_cannot_start_is_refused_whole(tmp_path, free_block, open_dir):
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)  # root's alone
    program = closed / "station"
    shutil.copy("/bin/sleep", program)
    config = write_config(open_dir / "fleet", free_block(140), name="prx", containers=2,
                          front="none", as_root=False)  # fmt: skip
    text = config.read_text().replace('profile = "sim"', 'profile = "generic"')
    config.write_text(text.replace("extra_args = []", f'command = ["{program}", "600"]'))

    refused = cli("up", "--no-daemon", "--config", str(config), check=False)
    assert refused.returncode == 2
    assert "nothing changed" in refused.stderr and f"directory {closed}" in refused.stderr
    assert "1000:1000 (container.user)" in refused.stderr
    assert 'container.user = "0:0"' in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert not (open_dir / "fleet" / "state" / "process" / "prx-1").exists()

    # The venv's simulator under pytest's own directory: the state dir is as closed.
    sim = write_config(tmp_path, free_block(140), name="prz", containers=1, front="none",
                       as_root=False)  # fmt: skip
    refused = cli("up", "--no-daemon", "--config", str(sim), check=False)
    assert refused.returncode == 2 and "is closed to it" in refused.stderr
    assert not cli_json("status", "--config", str(sim))["totals"]["running"]

"""A pid file names a process only while it is the one we started: a stranger that has the
number now (after a reboot, a wrap) is never signalled, by `down`, `status` or the daemon."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_helpers import PURGE, cli, cli_json, write_config


@pytest.fixture
def stranger(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not ours, running an executable named like a front (nginx)."""
    fake = tmp_path / "bin" / "nginx"
    fake.parent.mkdir()
    shutil.copy(shutil.which("sleep") or "/bin/sleep", fake)
    proc = subprocess.Popen([str(fake), "120"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_stale_front_pid_naming_a_stranger_is_never_signalled(tmp_path, free_block, stranger):
    config = write_config(tmp_path, free_block(140), name="pif", containers=1, front="nginx")
    try:
        cli("up", "--no-daemon", "--config", str(config))
        front = cli_json("status", "--config", str(config))["front"]
        pid_file = Path(front["config"]).parent / "nginx.pid"
        if not pid_file.exists():
            [pid_file] = list((config.parent / "state").rglob("nginx.pid"))
        cli("down", "--config", str(config))
        pid_file.write_text(f"{stranger.pid}\n")  # as after a reboot: the number is reused

        status = cli_json("status", "--config", str(config))
        assert status["front"]["running"] is False
        cli("down", "--config", str(config))
        assert stranger.poll() is None  # alive: neither SIGQUIT nor SIGKILL reached it
        os.kill(stranger.pid, 0)
    finally:
        cli(*PURGE, "--config", str(config), check=False)
    assert stranger.poll() is None


def test_a_stale_daemon_identity_is_not_a_daemon(tmp_path, free_block):
    config = write_config(tmp_path, free_block(140), name="pid", containers=1, front="none")
    try:
        first = cli_json("up", "--config", str(config))["daemon_pid"]
        state = config.parent / "state"
        assert (state / "daemon.identity.json").exists() and (state / "daemon.lock").exists()
        again = cli("daemon", "--config", str(config), check=False)  # a second one, by hand
        assert again.returncode == 1 and f"a daemon (pid {first}) already supervises" in (
            again.stderr
        )
        cli("daemon-stop", "--config", str(config))
        sleeper = subprocess.Popen(["sleep", "120"])
        try:  # the stale record now names a stranger's pid: nobody supervises, nothing killed
            (state / "daemon.pid").write_text(f"{sleeper.pid}\n")
            (state / "daemon.identity.json").write_text(
                f'{{"pid": {sleeper.pid}, "started": 1.0, "exe": "/usr/bin/python3"}}\n'
            )
            status = cli_json("status", "--config", str(config))
            assert status["supervisor"]["pid"] is None
            cli("daemon-stop", "--config", str(config))
            assert sleeper.poll() is None
        finally:
            sleeper.kill()
            sleeper.wait()
    finally:
        cli(*PURGE, "--config", str(config), check=False)

"""preflight on this machine: free loopback ports pass, a taken front port fails, the backup."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from fleet_helpers import write_config

from conduitctl.ops.preflight import run_preflight
from conduitctl.settings import load_settings


def test_free_loopback_ports_pass_or_only_warn(
    tmp_path: Path, free_block: Callable[[int], int]
) -> None:
    config = write_config(tmp_path, free_block(140), name="pfok", containers=2, udp=True)
    settings = load_settings(config)
    report = run_preflight(settings, config)
    ports = [c for c in report.checks if c.name.startswith("port ")]
    assert ports and all(c.status == "pass" for c in ports), ports
    failed = [c for c in report.checks if c.status == "fail"]
    # A check that depends on this host's own setup (nginx missing...) may fail; ports never.
    assert all(not c.name.startswith("port ") for c in failed)
    if not failed:
        assert report.ok
    assert report.to_dict()["checks"]


def test_a_taken_front_port_fails_naming_it(
    tmp_path: Path, free_block: Callable[[int], int]
) -> None:
    base = free_block(140)
    config = write_config(tmp_path, base, name="pftaken", containers=2)
    settings = load_settings(config)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", base))
        holder.listen(1)
        report = run_preflight(settings, config)
    assert not report.ok
    (check,) = [c for c in report.checks if c.name == f"port tcp:127.0.0.1:{base}"]
    assert check.status == "fail"
    assert str(base) in check.detail and str(base) in check.fix
    if os.geteuid() == 0:  # psutil sees every process's sockets as root
        assert f"pid {os.getpid()}" in check.detail


def test_backup_is_written_0600_with_notifier_secrets(
    tmp_path: Path, free_block: Callable[[int], int]
) -> None:
    config = write_config(
        tmp_path,
        free_block(140),
        name="pfbackup",
        containers=1,
        front="none",
        extra='\n[alerts]\nnotifiers = ["json://127.0.0.1:9/hook"]\n',
    )
    settings = load_settings(config)
    report = run_preflight(settings, config)
    path = report.backup_path
    assert path is not None and path.parent == tmp_path / "state" / "backups"
    assert path.read_bytes() == config.read_bytes()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert report.checks[-1].status == "pass" and str(path) in report.checks[-1].detail


def test_backup_without_secrets_is_0644(tmp_path: Path, free_block: Callable[[int], int]) -> None:
    config = write_config(tmp_path, free_block(140), name="pfplain", containers=1, front="none")
    report = run_preflight(load_settings(config), config)
    assert report.backup_path is not None
    assert os.stat(report.backup_path).st_mode & 0o777 == 0o644

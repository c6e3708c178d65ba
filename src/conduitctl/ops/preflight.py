"""The pre-deployment checklist: can this host run the fleet conduit.toml describes?

Gather, then judge, then back up:
- `gather_facts()` (observe/machine.py, an edge) reads the machine: memory, disk, docker,
  the front's binary, which ports are taken and by whom, kernel limits, cgroups, clock sync.
  It changes nothing.
- `evaluate()` and the `check_*` rules (preflight_rules.py, pure) turn settings + facts into
  `Check` values.
- `backup_config()` is the only write: a copy of conduit.toml in STATE_DIR/backups.

A check is `pass`, `warn` or `fail`; the report is ok unless one check fails.
"""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime
from pathlib import Path

from conduitctl.observe.machine import clock_fact, gather_facts
from conduitctl.preflight_facts import (
    ClockFact,
    DockerFact,
    FrontToolFact,
    Holder,
    PortFact,
    PreflightFacts,
)
from conduitctl.preflight_rules import (
    Check,
    PreflightReport,
    check_cgroup,
    check_clock,
    check_container_nofile,
    check_disk,
    check_docker,
    check_ephemeral,
    check_file_max,
    check_front_nofile,
    check_front_tool,
    check_memory,
    check_nginx_stream,
    check_nr_open,
    check_port,
    check_somaxconn,
    evaluate,
    parse_port_list,
)
from conduitctl.settings import Settings
from conduitctl.settings_file import holds_secrets

BACKUP_DIR = "backups"
KEEP_BACKUPS = 20  # preflight runs often (CI, cron): its backups must not grow forever


def backup_config(
    settings: Settings, config_path: Path, now: datetime | None = None
) -> tuple[Check, Path | None]:
    """Copy conduit.toml to STATE_DIR/backups/conduit.toml.<UTC timestamp>.

    Mode 0600 when the settings hold notifier secrets, else 0644. Never overwrites a backup.
    """
    name = "settings backup"
    try:
        data = config_path.read_bytes()
    except OSError as exc:
        return Check(name, "warn", f"cannot read {config_path} ({exc.strerror or exc})"), None
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    directory = settings.state_dir.absolute() / BACKUP_DIR
    secret = holds_secrets(settings)
    mode = 0o600 if secret else 0o644
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for n in range(100):
            target = directory / f"{config_path.name}.{stamp}{f'.{n}' if n else ''}"
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            except FileExistsError:
                continue
            try:
                os.fchmod(fd, mode)  # the umask may have narrowed or widened nothing: be exact
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            break
        else:
            raise OSError(errno.EEXIST, "too many backups with the same timestamp")
    except OSError as exc:
        return (
            Check(
                name,
                "fail",
                f"cannot write a backup in {directory} ({exc.strerror or exc})",
                f"make {directory} writable or set cluster.state_dir",
            ),
            None,
        )
    pruned = prune_backups(directory, config_path.name)
    why = " (0600: it holds notifier secrets)" if secret else ""
    gone = f"; {len(pruned)} older removed (the newest {KEEP_BACKUPS} are kept)" if pruned else ""
    return Check(name, "pass", f"{config_path.absolute()} copied to {target}{why}{gone}"), target


def prune_backups(directory: Path, config_name: str, keep: int = KEEP_BACKUPS) -> list[Path]:
    """Remove all but the newest `keep` settings backups (their names sort by time)."""
    backups = sorted(directory.glob(f"{config_name}.*"), key=lambda p: p.name)
    old = backups[:-keep] if keep > 0 else backups
    for path in old:
        path.unlink(missing_ok=True)
    return old


def run_preflight(
    settings: Settings,
    config_path: Path,
    *,
    facts: PreflightFacts | None = None,
    now: datetime | None = None,
) -> PreflightReport:
    """Run the checklist; `facts` skips reading the machine. Writes only the settings backup."""
    checks = evaluate(settings, facts or gather_facts(settings, config_path))
    backup, path = backup_config(settings, config_path, now)
    return PreflightReport(checks=(*checks, backup), backup_path=path)


# The facts and rules keep their old import path here too.
__all__ = [
    "Check",
    "ClockFact",
    "DockerFact",
    "FrontToolFact",
    "Holder",
    "PortFact",
    "PreflightFacts",
    "PreflightReport",
    "backup_config",
    "check_cgroup",
    "check_clock",
    "check_container_nofile",
    "check_disk",
    "check_docker",
    "check_ephemeral",
    "check_file_max",
    "check_front_nofile",
    "check_front_tool",
    "check_memory",
    "check_nginx_stream",
    "check_nr_open",
    "check_port",
    "check_somaxconn",
    "clock_fact",
    "evaluate",
    "gather_facts",
    "parse_port_list",
    "run_preflight",
]

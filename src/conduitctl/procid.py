"""Which process is ours. A pid alone is not: after a reboot, or once pids wrap, the number in
a pid file names a stranger, and a root daemon must never signal one. A pid is trusted only
with the start time and the executable recorded when we started it (the process runtime
has always checked its backends this way; the front and the daemon use this too)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from conduitctl.statedir import write_atomic

START_SLACK_S = 1.0  # create_time is read from /proc in clock ticks: allow a little


@dataclass(frozen=True)
class Identity:
    pid: int
    started: float  # psutil create_time (unix seconds)
    exe: str  # the resolved executable ("" when it cannot be read)


def identity_of(pid: int) -> Identity | None:
    """The live process `pid` as it is now; None when gone or a zombie."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        started = proc.create_time()
        try:
            exe = proc.exe()
        except psutil.AccessDenied:
            exe = ""
    except psutil.Error:
        return None
    return Identity(pid, started, exe)


def same(recorded: Identity, now: Identity | None) -> bool:
    """The very process we recorded: same pid, same start, same executable."""
    return (
        now is not None
        and now.pid == recorded.pid
        and abs(now.started - recorded.started) <= START_SLACK_S
        and now.exe == recorded.exe
    )


def record(path: Path, pid: int) -> Identity | None:
    """Write `pid`'s identity to `path` (atomically); None when it is already gone."""
    found = identity_of(pid)
    if found is not None:
        write_atomic(path, json.dumps(asdict(found)) + "\n", secret=False)
    return found


def load(path: Path) -> Identity | None:
    try:
        doc = json.loads(path.read_text())
        return Identity(int(doc["pid"]), float(doc["started"]), str(doc["exe"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def trusted(
    pid: int | None,
    recorded: Identity | None,
    exe_names: frozenset[str],
    marker: str | None = None,
) -> int | None:
    """`pid`, when it is the process we started: the one `recorded`, else (started before
    records were kept, or restarted by hand) one whose executable is named one of
    `exe_names` and whose command line holds `marker` (our config file's path). None for
    anything else: a pid that names a stranger is never signalled."""
    if pid is None:
        return None
    now = identity_of(pid)
    if now is None:
        return None
    if recorded is not None and recorded.pid == pid:
        return pid if same(recorded, now) else None
    if Path(now.exe).name not in exe_names:
        return None
    if marker is not None:
        try:
            if marker not in " ".join(psutil.Process(pid).cmdline()):
                return None
        except psutil.Error:
            return None
    return pid

"""The operator's intent, as files the supervisor reads every tick (names: conduitctl.statedir).

- Holds: an operator command (up, restart, down) marks the backends it is working on, so the
  supervisor does not restart or re-front them underneath it. Files with an expiry, so a
  crashed command cannot hold a backend forever; a long command refreshes them.
- Drained: backends the operator took out (`drain`); they stay out and stopped until `undrain`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from conduitctl.errors import Busy
from conduitctl.statedir import StateDir, flock_within, write_atomic

DEFAULT_HOLD_S = 120.0

# Holds taken in this process, counted: a step that holds a backend inside a change that
# already holds it (a restart inside a rolling restart) must not let go of the outer hold.
_taken: dict[Path, int] = {}
_taken_lock = threading.Lock()


def hold_dir(state_dir: Path) -> Path:
    return StateDir(state_dir).holds


def held(state_dir: Path, now: float | None = None) -> set[str]:
    """Backends held right now; expired holds are ignored (and cleaned up)."""
    directory = hold_dir(state_dir)
    if not directory.is_dir():
        return set()
    now = time.time() if now is None else now
    names = set()
    for entry in directory.iterdir():
        try:
            expires = float(entry.read_text())
        except (OSError, ValueError):
            continue
        if expires > now:
            names.add(entry.name)
        else:
            entry.unlink(missing_ok=True)
    return names


@contextlib.contextmanager
def holding(
    state_dir: Path, names: Iterable[str], seconds: float = DEFAULT_HOLD_S
) -> Iterator[None]:
    """Hold `names` while the block runs; the holds are refreshed every third of `seconds`,
    so a change longer than `seconds` stays held, and a crashed one lets go after it."""
    directory = hold_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    names = list(names)

    def write() -> None:
        expires = f"{time.time() + seconds}"
        for name in names:
            write_atomic(directory / name, expires, secret=False)  # never read half-written

    with _taken_lock:
        for name in names:
            _taken[directory / name] = _taken.get(directory / name, 0) + 1
    write()
    done = threading.Event()

    def refresh() -> None:
        while not done.wait(seconds / 3):
            write()

    refresher = threading.Thread(target=refresh, name="hold-refresh", daemon=True)
    refresher.start()
    try:
        yield
    finally:
        done.set()
        refresher.join()
        for path in _release(directory / name for name in names):
            path.unlink(missing_ok=True)


def _release(paths: Iterable[Path]) -> list[Path]:
    """Count these holds as let go; the ones nobody else in this process holds any more."""
    free = []
    with _taken_lock:
        for path in paths:
            _taken[path] -= 1
            if _taken[path] <= 0:
                del _taken[path]
                free.append(path)
    return free


@contextlib.contextmanager
def operator_lock(state_dir: Path, wait_s: float = 0.0) -> Iterator[None]:
    """One mutating command at a time per state dir (an flock: a crashed holder lets go).

    Raises Busy, naming the holder's pid, when it is not free within `wait_s`.
    """
    path = StateDir(state_dir).lock
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not flock_within(fd, wait_s, every=0.1):
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise Busy(
                f"another conduitctl command (pid {holder}) is changing this fleet; "
                "wait for it to finish, then run this again"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def drained(state_dir: Path) -> set[str]:
    try:
        return set(json.loads(StateDir(state_dir).drained.read_text()))
    except (OSError, ValueError, TypeError):
        return set()


def set_drained(state_dir: Path, names: set[str]) -> None:
    write_atomic(StateDir(state_dir).drained, json.dumps(sorted(names)), secret=False)


def forget_drained(state_dir: Path, name: str) -> None:
    """Not drained any more (a command that drained it died before its undrain)."""
    marked = drained(state_dir)
    if name in marked:
        set_drained(state_dir, marked - {name})

"""Holds: an operator command (up, restart, down) marks the backends it is working on, so the
supervisor does not restart or re-front them underneath it. Files with an expiry, so a crashed
command cannot hold a backend forever."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from conduitctl.statedir import StateDir, write_atomic

DEFAULT_HOLD_S = 120.0


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
    directory = hold_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    names = list(names)
    expires = f"{time.time() + seconds}"
    for name in names:
        write_atomic(directory / name, expires, secret=False)  # never read half-written
    try:
        yield
    finally:
        for name in names:
            (directory / name).unlink(missing_ok=True)

"""Drain: a backend leaves the front for new connections, its sessions end (bounded by a
timeout), then it stops. Undrain brings it back.

A drained backend is the operator's: the supervisor keeps it out of the front and does not
restart it (STATE_DIR/drained.json says which), until `undrain`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conduitctl.errors import BadInput, ConduitctlError
from conduitctl.fleet import desired_backends
from conduitctl.front.base import Front
from conduitctl.observe.scrape import scrape
from conduitctl.ops.converge import READY_TIMEOUT, wait_ready
from conduitctl.runtime.base import Runtime, launch_specs
from conduitctl.settings import Settings

DRAINED_FILE = "drained.json"
POLL_S = 0.5


def drained(state_dir: Path) -> set[str]:
    try:
        return set(json.loads((state_dir / DRAINED_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return set()


def _write(state_dir: Path, names: set[str]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / DRAINED_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(sorted(names)))
    os.replace(tmp, path)


@dataclass(frozen=True)
class DrainResult:
    name: str
    sessions_at_start: int | None
    sessions_left: int | None  # when it stopped: 0 unless the timeout ran out
    waited_s: float
    timed_out: bool

    def to_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


def sessions(settings: Settings, name: str) -> int | None:
    """Connected + connecting clients from the backend's /metrics (None: unreadable)."""
    backend = next(b for b in desired_backends(settings) if b.name == name)
    result = scrape(backend.host, backend.metrics_port, timeout=1.0)
    if not result.ok:
        return None
    v = result.values
    return int(v.get("conduit_connected_clients", 0) + v.get("conduit_connecting_clients", 0))


def _check(settings: Settings, name: str) -> None:
    names = settings.backend_names()
    if name not in names:
        raise BadInput(f"no backend named {name}; choose one of: {', '.join(names)}")


def drain(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    name: str,
    *,
    timeout: float = 300.0,
    progress: Callable[[str], None] = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
) -> DrainResult:
    _check(settings, name)
    state_dir = settings.state_dir
    marked = drained(state_dir) | {name}
    _write(state_dir, marked)  # first: the supervisor must not put it back or restart it
    how = front.set_down(frozenset(marked))
    progress(f"{name} out of the front for new connections ({how})")
    started = clock()
    first = sessions(settings, name)
    left = first
    while left and clock() - started < timeout:
        progress(f"{name}: {left} sessions left")
        time.sleep(POLL_S)
        left = sessions(settings, name)
    timed_out = bool(left)
    if timed_out:
        progress(f"{name}: timeout, {left} sessions left; stopping anyway")
    runtime.stop(name)
    progress(f"{name} stopped (data kept)")
    return DrainResult(name, first, left or 0, round(clock() - started, 2), timed_out)


def undrain(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    name: str,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> None:
    _check(settings, name)
    spec = next(s for s in launch_specs(settings) if s.name == name)
    runtime.start(spec)
    if wait_ready(settings, [spec.backend], READY_TIMEOUT):
        raise ConduitctlError(f"{name} not ready after undrain; see `conduitctl logs {name}`")
    marked = drained(settings.state_dir) - {name}
    front.set_down(frozenset(marked))
    _write(settings.state_dir, marked)
    progress(f"{name} back in the front")


def graceful_restart(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    name: str,
    *,
    timeout: float = 300.0,
    progress: Callable[[str], None] = lambda _: None,
) -> DrainResult:
    """Drain (no session cut within `timeout`), then start and put back: the data is kept."""
    result = drain(settings, runtime, front, name, timeout=timeout, progress=progress)
    undrain(settings, runtime, front, name, progress=progress)
    return result


def rolling_restart(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    *,
    timeout: float = 300.0,
    progress: Callable[[str], None] = lambda _: None,
) -> list[DrainResult]:
    """Every backend, one at a time, each healthy and back in the front before the next;
    stops at the first one that does not come back (the error names it)."""
    results = []
    names = settings.backend_names()
    for i, name in enumerate(names, start=1):
        progress(f"[{i}/{len(names)}] {name}")
        results.append(
            graceful_restart(settings, runtime, front, name, timeout=timeout, progress=progress)
        )
    return results

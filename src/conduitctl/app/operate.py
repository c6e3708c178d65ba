"""Acting on running backends through the change protocol (conduitctl.app.change): restart
(one, graceful, rolling), drain and undrain. Each refuses while a rollout runs, takes the
operator lock, holds what it works on, records what it did and leaves the supervisor running
(it reads the holds and the drained set every tick)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conduitctl.app.change import changing, record
from conduitctl.app.context import Fleet
from conduitctl.fleet import require_backend
from conduitctl.ops import converge as converging
from conduitctl.ops import drain as draining
from conduitctl.ops.drain import DrainResult, RestartAborted
from conduitctl.ops.keys import KeysReport, Status

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _configured(fleet: Fleet, name: str) -> str:
    """Checked before it names a hold file: one of conduit.toml's backends, else BadInput."""
    return require_backend(name, fleet.settings.backend_names())


def restart(fleet: Fleet, name: str, *, progress: Progress = _quiet) -> None:
    """Stop and start one backend now (its data kept); ready before it returns."""
    name = _configured(fleet, name)
    with changing(fleet, [name]):
        converging.restart(fleet.settings, fleet.runtime, name, progress=progress)
        record(fleet, "restart", f"restart {name}", backend=name)


def graceful_restart(
    fleet: Fleet,
    name: str,
    *,
    timeout: float,
    low_clients: int | None = None,
    progress: Progress = _quiet,
) -> DrainResult:
    """Drained first (no front: at a quiet moment), then restarted and put back."""
    name = _configured(fleet, name)
    with changing(fleet, [name]):
        result = draining.graceful_restart(
            fleet.settings, fleet.runtime, fleet.front, name,
            timeout=timeout, low_clients=low_clients, progress=progress,
        )  # fmt: skip
        record(fleet, "restart", f"graceful restart {name}", backend=name, **result.to_dict())
    return result


def rolling_restart(
    fleet: Fleet, *, timeout: float, low_clients: int | None = None, progress: Progress = _quiet
) -> list[DrainResult]:
    """Every backend, one at a time, each ready again before the next. Raises
    RestartAborted at the first one that does not come back (the rest untouched)."""
    # Not held as a whole: the supervisor keeps healing the backends not being restarted.
    with changing(fleet, []):
        try:
            results = draining.rolling_restart(
                fleet.settings, fleet.runtime, fleet.front,
                timeout=timeout, low_clients=low_clients, progress=progress,
            )  # fmt: skip
        except RestartAborted as exc:
            if exc.restarted:
                record(fleet, "restart", f"rolling restart stopped at {exc.name}",
                       restarted=exc.restarted, aborted_at=exc.name)  # fmt: skip
            raise
        record(fleet, "restart", f"rolling restart of {len(results)} backends",
               restarted=[r.name for r in results])  # fmt: skip
    return results


def drain(fleet: Fleet, name: str, *, timeout: float, progress: Progress = _quiet) -> DrainResult:
    """Out of the front, its sessions ended (within `timeout`), stopped; drained until
    `undrain`."""
    name = _configured(fleet, name)
    with changing(fleet, [name]):
        result = draining.drain(
            fleet.settings, fleet.runtime, fleet.front, name, timeout=timeout, progress=progress
        )
        record(fleet, "drain", f"drain {name}", backend=name, **result.to_dict())
    return result


def undrain(fleet: Fleet, name: str, *, progress: Progress = _quiet) -> None:
    """Started again, ready, and back in the front."""
    name = _configured(fleet, name)
    with changing(fleet, [name]):
        draining.undrain(fleet.settings, fleet.runtime, fleet.front, name, progress=progress)
        record(fleet, "undrain", f"undrain {name}", backend=name)


def restore_keys(
    fleet: Fleet, directory: Path | None, *, backend: str | None = None, force: bool = False
) -> KeysReport:
    """The keys of a backup of this cluster back into its stopped backends, every backend
    held meanwhile so the supervisor starts none of them on a half-written key."""
    from conduitctl.ops.keys import restore

    with changing(fleet, fleet.known_backends()):
        report = restore(fleet.settings, directory, backend=backend, force=force,
                         store=fleet.runtime.key_store(fleet.settings))  # fmt: skip
        written = [e.backend for e in report.entries if e.status is not Status.UNCHANGED]
        if written:
            record(fleet, "keys restore", f"keys restored: {', '.join(written)}",
                   backup=str(report.directory), backends=written)  # fmt: skip
    return report

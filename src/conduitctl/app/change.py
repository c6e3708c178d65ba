"""The change protocol: every command that changes the fleet, and the supervisor's own changes
(a rollout it resumes), go through `changing()`, in this order:

1. refuse while a staged rollout runs (unless it is the rollout);
2. take the operator lock (one change at a time) and hold the backends from the supervisor,
   the holds refreshed while the work lasts;
3. plan the whole change, reading everything first (conduitctl.ops.converge.plan);
4. refuse it whole when any step would fail (a foreign name, a lost key, a port in use, a
   config the front's tool rejects): nothing has been touched, conduit.toml included;
5. snapshot, when the plan changes anything, so it can be rolled back;
6. execute;
7. record the change in the history (`conduitctl events --kind change`);
8. tell the supervisor (re-read conduit.toml, or start it).

`down` is the one exception to step 1: it is the big red button, so it stops the rollout's
driver (the rollout waits, `rollout --resume` or `--abort` decide) as it stops the supervisor.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from conduitctl import daemon_link
from conduitctl.app.context import Fleet
from conduitctl.events import Event, EventKind
from conduitctl.intent import holding, operator_lock
from conduitctl.ops import converge as converging
from conduitctl.ops import snapshots
from conduitctl.ops.converge import DownResult, UpResult
from conduitctl.reconcile import FleetPlan
from conduitctl.rollout_state import active, refuse_if_active
from conduitctl.settings_file import replace_config

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def changing(
    fleet: Fleet, names: Iterable[str], *, rollout: bool = False, lock_wait_s: float = 0.0
) -> Iterator[None]:
    """Steps 1 and 2: no rollout in the way, the operator lock, the backends held."""
    if not rollout:
        refuse_if_active(fleet.state_dir)  # the rollout owns the fleet until it ends
    with operator_lock(fleet.state_dir, wait_s=lock_wait_s), holding(fleet.state_dir, names):
        yield


def snapshot(fleet: Fleet, reason: str, progress: Progress = _quiet) -> str:
    """Step 5."""
    taken = snapshots.take(fleet.settings, fleet.runtime, fleet.front.installed_config, reason)
    progress(f"snapshot {taken.id}")
    return taken.id


def record(
    fleet: Fleet, command: str, message: str, *, backend: str | None = None, **data: Any
) -> bool:
    """Step 7: a CHANGE event in the history. A history that cannot be written is logged,
    never a reason to fail a change already made. True when recorded."""
    from conduitctl.store import Store  # sqlite: only once there is something to record

    event = Event(
        ts=fleet.clock(),
        kind=EventKind.CHANGE,
        backend=backend,
        message=message,
        data={"command": command, **data},
    )
    try:
        store = Store(fleet.files.history_db)
        try:
            store.record(event)
        finally:
            store.close()
    except Exception as exc:
        log.warning("change not recorded", extra={"command": command, "error": str(exc)})
        return False
    return True


def tell_supervisor(fleet: Fleet, *, start: bool, progress: Progress = _quiet) -> int | None:
    """Step 8: a running supervisor re-reads conduit.toml (SIGHUP); else it is started when
    `start`. Its pid, or None when none runs."""
    if daemon_link.signal_daemon(fleet.state_dir, signal.SIGHUP):
        return daemon_link.daemon_pid(fleet.state_dir)
    if not start:
        return None
    pid = daemon_link.start_background(fleet.config_path, fleet.state_dir, fleet.env.log_dir)
    progress(f"supervisor started (pid {pid})")
    return pid


def stop_supervisor(fleet: Fleet, progress: Progress = _quiet) -> bool:
    """For the changes it would fight (down, the legacy layout): stopped, not told."""
    stopped = daemon_link.stop(fleet.state_dir)
    if stopped:
        progress("supervisor stopped")
    return stopped


@dataclass(frozen=True)
class Converged:
    plan: FleetPlan
    result: UpResult | None  # None: a dry run
    snapshot: str | None = None
    daemon_pid: int | None = None


def plan(fleet: Fleet, *, new_keys: bool = False) -> FleetPlan:
    """What `converge` would do, exactly, changing nothing (`up --dry-run`)."""
    return converging.plan(fleet.settings, fleet.runtime, fleet.front, new_keys=new_keys)


def converge(
    fleet: Fleet,
    *,
    reason: str = "up",
    new_keys: bool = False,
    start_supervisor: bool = True,
    config_text: str | None = None,
    progress: Progress = _quiet,
) -> Converged:
    """`up` (and `scale`): the fleet and the front to conduit.toml, through the protocol.

    `config_text`: the conduit.toml `fleet.settings` were parsed from, written only once
    the plan is not refused (`scale`: a refused scale leaves the file as it was)."""
    # Held: the backends to keep and the ones being removed, so the supervisor does not
    # restart what a scale-down stops.
    with changing(fleet, fleet.known_backends()):
        whole = plan(fleet, new_keys=new_keys)
        converging.refuse(whole)
        taken = snapshot(fleet, reason, progress) if whole.changes else None
        if config_text is not None:
            replace_config(config_text, fleet.config_path)
        result = converging.execute(
            fleet.settings, fleet.runtime, fleet.front, whole, progress=progress
        )
        snapshots.record_applied(fleet.settings, fleet.config_path)
        if result.changed:
            record(fleet, reason, f"{reason}: {summary(result)}", snapshot=taken)
    pid = tell_supervisor(fleet, start=start_supervisor, progress=progress)
    return Converged(whole, result, taken, pid)


def summary(result: UpResult) -> str:
    """'2 create, 1 remove; front reloaded', for the history and the terminal."""
    counts = ", ".join(
        f"{sum(a.kind == kind for a in result.actions)} {kind.value}"
        for kind in dict.fromkeys(a.kind for a in result.actions)
    )
    return f"{counts or 'no backend changed'}; front {result.front}"


@dataclass(frozen=True)
class Downed:
    result: DownResult
    supervisor_stopped: bool
    rollout_paused: str | None  # the id of the rollout whose driver it stopped
    keys_backup: str | None = None  # where `purge` saved the keys first


def down(
    fleet: Fleet, *, purge: bool = False, backup_keys: bool = True, progress: Progress = _quiet
) -> Downed:
    """Stop the front and every backend (their data kept unless `purge`); the supervisor
    and a rollout's driver first, as both would start again what down stops. Before a
    purge the keys are backed up and each copy verified (unless not `backup_keys`): a
    failed backup purges nothing."""
    from conduitctl.ops import keys
    from conduitctl.ops.rollout import stop_driver

    supervisor_stopped = stop_supervisor(fleet, progress)
    rollout = active(fleet.state_dir)
    paused = rollout.id if rollout is not None and stop_driver(rollout) else None
    if paused is not None:
        progress(f"rollout {paused} paused: `rollout --resume` or `rollout --abort` later")
    with changing(fleet, fleet.known_backends(), rollout=True):
        saved = None
        if purge and backup_keys:
            report = keys.backup(fleet.settings, store=fleet.runtime.key_store(fleet.settings))
            saved = str(report.directory)
            progress(f"keys backed up and verified in {saved}")
        result = converging.down(
            fleet.settings, fleet.runtime, fleet.front, purge=purge, progress=progress
        )
        if result.stopped or result.front_stopped or result.purged:
            kept = "data purged" if purge else "data kept"
            record(fleet, "down", f"down: {len(result.stopped)} backends stopped, {kept}",
                   stopped=result.stopped, purged=result.purged)  # fmt: skip
    return Downed(result, supervisor_stopped, paused, saved)

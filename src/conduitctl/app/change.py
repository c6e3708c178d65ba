"""The change protocol: every command that changes the fleet, and the supervisor's own changes
(a rollout it resumes), go through `changing()`, in this order:

1. refuse while a staged rollout runs (unless it is the rollout);
2. take the operator lock (one change at a time) and hold the backends from the supervisor,
   the holds refreshed while the work lasts;
3. plan the whole change, reading everything first (conduitctl.ops.converge.plan);
4. refuse it whole when any step would fail (a foreign name, a lost key, a port in use, a
   config the front's tool rejects): nothing has been touched;
5. snapshot, when the plan changes anything, so it can be rolled back;
6. execute;
7. tell the supervisor (re-read conduit.toml, or start it).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from conduitctl import daemon_link
from conduitctl.app.context import Fleet
from conduitctl.intent import holding, operator_lock
from conduitctl.ops import converge as converging
from conduitctl.ops import snapshots
from conduitctl.ops.converge import UpResult
from conduitctl.reconcile import FleetPlan
from conduitctl.rollout_state import refuse_if_active

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
    taken = snapshots.take(fleet.settings, fleet.runtime, fleet.front.installed_config, reason)
    progress(f"snapshot {taken.id}")
    return taken.id


def tell_supervisor(fleet: Fleet, *, start: bool, progress: Progress = _quiet) -> int | None:
    """Step 7: a running supervisor re-reads conduit.toml (SIGHUP); else it is started when
    `start`. Its pid, or None when none runs."""
    if daemon_link.signal_daemon(fleet.state_dir, signal.SIGHUP):
        return daemon_link.daemon_pid(fleet.state_dir)
    if not start:
        return None
    pid = daemon_link.start_background(fleet.config_path, fleet.state_dir, fleet.env.log_dir)
    progress(f"supervisor started (pid {pid})")
    return pid


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
    progress: Progress = _quiet,
) -> Converged:
    """`up` (and `scale`): the fleet and the front to conduit.toml, through the protocol."""
    # Held: the backends to keep and the ones being removed, so the supervisor does not
    # restart what a scale-down stops.
    with changing(fleet, fleet.known_backends()):
        whole = plan(fleet, new_keys=new_keys)
        converging.refuse(whole)
        taken = snapshot(fleet, reason, progress) if whole.changes else None
        result = converging.execute(
            fleet.settings, fleet.runtime, fleet.front, whole, progress=progress
        )
        snapshots.record_applied(fleet.settings, fleet.config_path)
    pid = tell_supervisor(fleet, start=start_supervisor, progress=progress)
    return Converged(whole, result, taken, pid)

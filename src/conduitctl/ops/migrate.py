"""`conduitctl migrate`: conduit-manager's stations handed over to this fleet, one at a time,
each on its own key (the plan is migrate_plan.py; the docker side runtime/docker_migrate.py).

For each station, in index order:
1. its key into our backend's volume or data dir, verified by sha256 (nothing to copy when
   our volume is the station's own: `conduit-data-2` is both conduit-manager's and ours);
2. the legacy container stopped, its restart policy set to "no" (a reboot must not start
   it beside ours), and renamed aside (`conduit-2-pre-conduitctl`);
3. ours started on that key, and waited for until live.

Never two processes on one key: the broker knows a station by it. When ours does not come
up, it is removed (its data kept), the legacy container gets its name and restart policy
back and is started again, and the migration stops there. Only once every station has
moved are the legacy containers removed; their volumes never are. STATE_DIR/migration.json
records each station's state after every step, so a stop half-way is never a mystery, and
migrate run again picks up there (migrate_plan.py: a station set aside is still a station).

Every failure after the legacy container was touched, a docker error or Ctrl-C included, is
undone the same way; what could not be undone is named, with the commands that finish it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from conduitctl.errors import BadInput, ConduitctlError
from conduitctl.fleet import BackendSpec
from conduitctl.migrate_plan import (
    FoundContainer,
    MigrationPlan,
    Station,
    Step,
    find_stations,
    plan_migration,
    v1_flags,
)
from conduitctl.ops.keys import sha256_hex
from conduitctl.ops.ready import READY_TIMEOUT, wait_ready
from conduitctl.runtime.base import (
    KeyStore,
    LaunchSpec,
    Runtime,
    State,
    key_problem,
    launch_specs,
)
from conduitctl.settings import Settings
from conduitctl.statedir import StateDir, write_atomic

Progress = Callable[[str], None]
# (settings, backends, timeout s) -> the names not ready by then (ops.ready.wait_ready)
WaitReady = Callable[[Settings, list[BackendSpec], float], list[str]]


class ManagerHost(Protocol):
    """conduit-manager's side: docker containers and volumes (runtime/docker_migrate.py)."""

    def inventory(self) -> list[FoundContainer]: ...
    def read_key(self, volume: str, *, via: str) -> bytes | None: ...
    def stop(self, name: str, timeout: float = 30.0) -> None: ...
    def set_restart(self, name: str, policy: str, retries: int = 0) -> None: ...
    def rename(self, name: str, new_name: str) -> None: ...
    def start(self, name: str) -> None: ...
    def remove(self, name: str) -> None: ...


class MigrationStopped(ConduitctlError):
    """A station did not come up on its key: it runs in conduit-manager's container again."""


@dataclass(frozen=True)
class Survey:
    plan: MigrationPlan
    keys: dict[int, bytes]  # station index -> its key bytes (read once, written as read)


@dataclass(frozen=True)
class Migrated:
    moved: list[str]  # our backends now running on the stations' keys
    removed: list[str]  # legacy containers removed (their volumes kept)
    left: list[str] = field(default_factory=list)  # set-aside containers not removed, and why


def survey(
    settings: Settings, runtime: Runtime, host: ManagerHost, journal: Path | None = None
) -> Survey:
    """What runs today and the whole plan; reads, never changes. `journal`: an earlier
    migrate's, whose record of a station it had begun to hand over (its restart policy, and
    whether it ran) is the one to restore: the container itself says "no" and stopped by then."""
    found = host.inventory()
    stations, refusals, layout = find_stations(found)
    before = _journaled_originals(journal)
    keys: dict[int, bytes] = {}
    keyed: list[Station] = []
    for s in stations:
        if s.container in before:
            policy, retries, ran = before[s.container]
            s = replace(s, restart_policy=policy, restart_retries=retries, touched=True,
                        ran_before=ran)  # fmt: skip
        try:
            data = host.read_key(s.volume, via=s.current_name)
        except ConduitctlError as exc:
            refusals.append(f"{s.current_name}: {exc}")
            continue
        problem = key_problem(data) if data else None
        if problem:
            refusals.append(f"{s.container}: the key in {s.volume} {problem}; restore it first")
            data = None
        if data:
            keys[s.index] = data
        keyed.append(replace(s, key_sha256=sha256_hex(data) if data else None))
    cluster = settings.cluster.name
    store = runtime.key_store(settings)
    our_keys: dict[int, str | None] = {}
    for s in keyed:
        try:
            ours = store.read(f"{cluster}-{s.index}")  # the station's own where it is its volume
        except ConduitctlError as exc:
            refusals.append(f"{cluster}-{s.index}: {exc}")
            ours = None
        our_keys[s.index] = sha256_hex(ours) if ours else None
    # A restarting one is running for this purpose: docker brings it back on its own.
    statuses = runtime.backends()
    running = {b.index for b in statuses if b.state in (State.RUNNING, State.RESTARTING)}
    restarting = {b.index for b in statuses if b.state == State.RESTARTING}
    steps, more = plan_migration(
        keyed,
        cluster=cluster,
        containers=settings.cluster.containers,
        our_keys=our_keys,
        ours_running=running,
        found_names={c.name for c in found},
        in_volumes=store.in_volumes,
        ours_restarting=restarting,
    )
    refusals += more
    if not keyed and not refusals:
        refusals.append(
            "no conduit-manager station here (containers `conduit`, `conduit-2`, ... or "
            "`conduit-1`, ...): nothing to migrate; `conduitctl up` starts a new fleet"
        )
    images = sorted({s.image for s in keyed})
    notes = []
    if len(images) > 1:
        notes.append(f"the stations run {len(images)} images: {', '.join(images)}")
    plan = MigrationPlan(
        steps=steps,
        refusals=refusals,
        layout=layout,
        image=images[0] if images else None,
        v1_flags=v1_flags(keyed),
        notes=notes,
    )
    return Survey(plan=plan, keys=keys)


def _journaled_originals(path: Path | None) -> dict[str, tuple[str, int, bool]]:
    """container -> (restart policy, retries, running) as an earlier migrate recorded them
    before touching it, for the stations it touched and did not put back or remove."""
    if path is None:
        return {}
    try:
        doc = json.loads(path.read_text())
        return {
            str(e["container"]): (str(e["restart_policy"]), int(e.get("restart_retries", 0)),
                                  bool(e.get("running", True)))
            for e in doc["stations"]
            if "restart_policy" in e and e.get("touched") is True
        }  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def refuse(plan: MigrationPlan) -> None:
    if plan.refusals:
        more = f" (and {len(plan.refusals) - 1} more: conduitctl migrate shows them all)"
        raise BadInput(
            f"nothing changed: {plan.refusals[0]}{more if len(plan.refusals) > 1 else ''}"
        )


class Journal:
    """STATE_DIR/migration.json: every station's state, rewritten after each step."""

    def __init__(self, path: Path, plan: MigrationPlan) -> None:
        self.path = path
        self.states = {s.station.container: "pending" for s in plan.steps}
        # Touched: its container no longer shows what it was ("no", stopped, aside), so the
        # journal's policy is the one to restore. Sticky across runs until put back or removed.
        self.touched = {s.station.container: s.station.touched for s in plan.steps}
        self.plan = plan
        self.write()

    def set(self, container: str, state: str) -> None:
        self.states[container] = state
        if state.startswith(("restored", "removed")):
            self.touched[container] = False
        elif state != "pending":
            self.touched[container] = True  # "key placed" too: "no" comes right after
        self.write()

    def write(self) -> None:
        doc = {
            "updated": time.time(),
            "layout": self.plan.layout,
            "stations": [
                {
                    "container": s.station.container,
                    "aside": s.station.aside,
                    "volume": s.station.volume,
                    "backend": s.backend,
                    "key_sha256": s.station.key_sha256,
                    "restart_policy": s.station.restart_policy,
                    "restart_retries": s.station.restart_retries,
                    "running": s.station.ran,
                    "touched": self.touched[s.station.container],
                    "state": self.states[s.station.container],
                }
                for s in self.plan.steps
            ],
        }
        write_atomic(self.path, json.dumps(doc, indent=2) + "\n", secret=False)


def hand_over(
    settings: Settings,
    runtime: Runtime,
    host: ManagerHost,
    surveyed: Survey,
    files: StateDir,
    *,
    progress: Progress,
    ready_timeout: float = READY_TIMEOUT,
    ready: WaitReady = wait_ready,
) -> Migrated:
    """Carry out a plan `refuse` let through, station by station; the legacy containers are
    removed once all have moved. Raises MigrationStopped at the first station that does not
    come up (it runs in its legacy container again; the ones before it stay moved)."""
    move = _Handover(settings, runtime, host, Journal(files.migration, surveyed.plan),
                     progress, ready_timeout, ready)  # fmt: skip
    moved = [move(step, surveyed.keys[step.station.index]) for step in surveyed.plan.steps]
    removed, left = [], []
    for step in surveyed.plan.steps:
        s = step.station
        try:
            host.remove(s.aside)
        except ConduitctlError as exc:  # every station moved: a leftover is only untidy
            left.append(f"{s.aside} ({exc}): remove it by hand, docker rm {s.aside}")
            progress(f"{s.aside}: not removed ({exc}); its volume {s.volume} is kept")
            continue
        move.journal.set(s.container, "removed (volume kept)")
        removed.append(s.container)
        progress(f"{s.container}: removed; its volume {s.volume} is kept")
    return Migrated(moved=moved, removed=removed, left=left)


@dataclass
class _Handover:
    settings: Settings
    runtime: Runtime
    host: ManagerHost
    journal: Journal
    progress: Progress
    ready_timeout: float
    ready: WaitReady = wait_ready

    def __post_init__(self) -> None:
        self.aside = False  # the station being moved is under its aside name now
        self.launched = False  # ours was started (or its start tried) for it
        self.specs: dict[str, LaunchSpec] = {s.name: s for s in launch_specs(self.settings)}
        self.store: KeyStore = self.runtime.key_store(self.settings)

    def __call__(self, step: Step, key: bytes) -> str:
        """One station moved; our backend's name. Raises MigrationStopped (restored)."""
        s = step.station
        spec = self.specs[step.backend]
        if step.done:  # ours runs on its key: live, or the station goes back
            self.aside = self.launched = True
            try:
                found = next((b for b in self.runtime.backends() if b.name == step.backend), None)
                failure = self._wait_live(step.backend, spec, found.restart_count if found else 0)
            except Exception as exc:  # as below: any docker error takes the way back
                failure = str(exc) or type(exc).__name__
            return self._settle(step, failure, f"{s.container}: moved already (an earlier "
                                f"migrate), {step.backend} live on its key")  # fmt: skip
        if not step.shared_volume:
            self.store.write(step.backend, key)
            if sha256_hex(self.store.read(step.backend) or b"") != s.key_sha256:
                raise MigrationStopped(
                    f"nothing changed for {s.container}: its key did not read back the same "
                    f"from {step.target_volume}; it still runs in its own container"
                )
            self.progress(f"{s.container}: key {(s.key_sha256 or '')[:12]} copied to "
                          f"{step.target_volume}, verified by sha256")  # fmt: skip
        self.journal.set(s.container, "key placed")
        self.aside = s.set_aside  # where the way back starts from
        self.launched = False  # ours exists only once its start was tried
        try:
            # "no" before the stop: a reboot between the two must not bring it back
            self.host.set_restart(s.current_name, "no")
            self.host.stop(s.current_name)
            if not s.set_aside:
                self.host.rename(s.container, s.aside)
                self.aside = True
            self.journal.set(s.container, "legacy stopped")
            self.progress(f"{s.container}: stopped, set aside as {s.aside}")
            self.launched = True
            started = self.runtime.start(spec)
            failure = self._wait_live(step.backend, spec, started.restart_count)
        except KeyboardInterrupt:
            self.progress(f"{s.container}: interrupted; putting it back")
            self._restore(step)
            raise
        except Exception as exc:  # a docker error of any kind: the way back is the same
            failure = str(exc) or type(exc).__name__
        return self._settle(step, failure, f"{s.container}: now {step.backend}, live on the "
                            "same key")  # fmt: skip

    def _settle(self, step: Step, failure: str | None, moved: str) -> str:
        """Moved (said `moved`), or restored and stopped there."""
        s = step.station
        if failure is None:
            self.journal.set(s.container, "moved")
            self.progress(moved)
            return step.backend
        self._restore(step)
        raise MigrationStopped(
            f"{step.backend} did not come up on {s.container}'s key ({failure}); "
            f"{s.container} runs again in its own container and the migration stopped there "
            f"(the stations before it moved); see `conduitctl logs {step.backend}`, then run "
            "migrate again"
        )

    def _wait_live(self, name: str, spec: LaunchSpec, restarts: int) -> str | None:
        """None once live; else why not: it died or restarted (found in half a second, not
        at the deadline), or it was not live within ready_timeout. `restarts`: its restart
        count once started (a recreate may carry one over)."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not self.ready(self.settings, [spec.backend], 0.5):
                return None
            found = next((b for b in self.runtime.backends() if b.name == name), None)
            if found is None or found.state != State.RUNNING or found.restart_count > restarts:
                code = f" (exit code {found.exit_code})" if found and found.exit_code else ""
                return f"it exited{code}"
        return f"not live within {self.ready_timeout:g} s"

    def _restore(self, step: Step) -> None:
        """The station back in conduit-manager's container, as it was. Ours must be gone
        first: never two processes on one key. Raises MigrationStopped naming what is left
        to do by hand when a step of the way back fails."""
        s = step.station
        where = s.aside if self.aside else s.container
        try:
            # Only ours once its start was tried: before that the name may be the station's
            # own container (conduit-2 is conduit-manager's and ours), which must stay.
            if self.launched:
                self.runtime.remove(step.backend, purge=False)  # its data (the key) stays
        except Exception as exc:
            self.journal.set(s.container, "restore failed: ours not removed")
            raise MigrationStopped(
                f"{step.backend} did not come up, and it could not be removed ({exc}); "
                f"{s.container} stays stopped as {where} so that its key never runs twice: "
                f"docker rm -f {step.backend}, then run migrate again"
            ) from None
        undo: list[tuple[str, Callable[[], None]]] = []
        if self.aside:
            undo.append((f"docker rename {s.aside} {s.container}",
                         lambda: self.host.rename(s.aside, s.container)))  # fmt: skip
        undo.append((f"docker update --restart {s.restart_policy} {s.container}",
                     lambda: self.host.set_restart(s.container, s.restart_policy,
                                                   s.restart_retries)))  # fmt: skip
        if s.ran:
            undo.append((f"docker start {s.container}", lambda: self.host.start(s.container)))
        for i, (command, action) in enumerate(undo):
            try:
                action()
            except Exception as exc:
                self.journal.set(s.container, f"restore failed at: {command}")
                rest = "; ".join(c for c, _ in undo[i:])
                raise MigrationStopped(
                    f"{step.backend} did not come up, and {s.container} could not be put back "
                    f"({exc}); finish it by hand: {rest}"
                ) from None
        self.journal.set(s.container, "restored to conduit-manager's container")

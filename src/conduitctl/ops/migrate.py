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
records each station's state after every step, so a stop half-way is never a mystery.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from conduitctl.errors import BadInput, ConduitctlError
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

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


class ManagerHost(Protocol):
    """conduit-manager's side: docker containers and volumes (runtime/docker_migrate.py)."""

    def inventory(self) -> list[FoundContainer]: ...
    def read_key(self, volume: str, *, via: str) -> bytes | None: ...
    def stop(self, name: str, timeout: float = 30.0) -> None: ...
    def set_restart(self, name: str, policy: str) -> None: ...
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


def survey(settings: Settings, runtime: Runtime, host: ManagerHost) -> Survey:
    """What runs today and the whole plan; reads, never changes."""
    found = host.inventory()
    stations, refusals, layout = find_stations(found)
    keys: dict[int, bytes] = {}
    keyed: list[Station] = []
    for s in stations:
        data = host.read_key(s.volume, via=s.container)
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
        ours = store.read(f"{cluster}-{s.index}")  # the station's own key where it is its volume
        our_keys[s.index] = sha256_hex(ours) if ours else None
    running = {b.index for b in runtime.backends() if b.state == State.RUNNING}
    steps, more = plan_migration(
        keyed,
        cluster=cluster,
        containers=settings.cluster.containers,
        our_keys=our_keys,
        ours_running=running,
        found_names={c.name for c in found},
        in_volumes=settings.cluster.runtime == "docker",
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
        self.plan = plan
        self.write()

    def set(self, container: str, state: str) -> None:
        self.states[container] = state
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
) -> Migrated:
    """Carry out a plan `refuse` let through, station by station; the legacy containers are
    removed once all have moved. Raises MigrationStopped at the first station that does not
    come up (it runs in its legacy container again; the ones before it stay moved)."""
    move = _Handover(settings, runtime, host, Journal(files.migration, surveyed.plan),
                     progress, ready_timeout)  # fmt: skip
    moved = [move(step, surveyed.keys[step.station.index]) for step in surveyed.plan.steps]
    removed = []
    for step in surveyed.plan.steps:
        host.remove(step.station.aside)
        move.journal.set(step.station.container, "removed (volume kept)")
        removed.append(step.station.container)
        progress(f"{step.station.container}: removed; its volume {step.station.volume} is kept")
    return Migrated(moved=moved, removed=removed)


@dataclass
class _Handover:
    settings: Settings
    runtime: Runtime
    host: ManagerHost
    journal: Journal
    progress: Progress
    ready_timeout: float

    def __post_init__(self) -> None:
        self.specs: dict[str, LaunchSpec] = {s.name: s for s in launch_specs(self.settings)}
        self.store: KeyStore = self.runtime.key_store(self.settings)

    def __call__(self, step: Step, key: bytes) -> str:
        """One station moved; our backend's name. Raises MigrationStopped (restored)."""
        s = step.station
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
        self.host.stop(s.container)
        self.host.set_restart(s.container, "no")  # a reboot must not start it beside ours
        self.host.rename(s.container, s.aside)
        self.journal.set(s.container, "legacy stopped")
        self.progress(f"{s.container}: stopped, set aside as {s.aside}")
        spec = self.specs[step.backend]
        failure = None
        try:
            self.runtime.start(spec)
            failure = self._wait_live(step.backend, spec)
        except ConduitctlError as exc:
            failure = str(exc)
        if failure is None:
            self.journal.set(s.container, "moved")
            self.progress(f"{s.container}: now {step.backend}, live on the same key")
            return step.backend
        self._restore(step)
        raise MigrationStopped(
            f"{step.backend} did not come up on {s.container}'s key ({failure}); "
            f"{s.container} runs again in its own container and the migration stopped there "
            f"(the stations before it moved); see `conduitctl logs {step.backend}`, then run "
            "migrate again"
        )

    def _wait_live(self, name: str, spec: LaunchSpec) -> str | None:
        """None once live; else why not: it died (found in half a second, not at the
        deadline), or it was not live within ready_timeout."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not wait_ready(self.settings, [spec.backend], 0.5):
                return None
            found = next((b for b in self.runtime.backends() if b.name == name), None)
            if found is None or found.state != State.RUNNING or found.restart_count > 0:
                code = f" (exit code {found.exit_code})" if found and found.exit_code else ""
                return f"it exited{code}"
        return f"not live within {self.ready_timeout:g} s"

    def _restore(self, step: Step) -> None:
        s = step.station
        try:
            self.runtime.remove(step.backend, purge=False)  # its data (the key) stays
        except ConduitctlError as exc:
            log.warning("could not remove %s: %s", step.backend, exc)
        self.host.rename(s.aside, s.container)
        self.host.set_restart(s.container, s.restart_policy)
        if s.running:
            self.host.start(s.container)
        self.journal.set(s.container, "restored to conduit-manager's container")

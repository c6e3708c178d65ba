"""Staged rollout, the driver: apply a stage, soak it under the gates, go on or roll back.

Everything it needs to go on lives in STATE_DIR/rollout/ (state.json, base.toml: the
settings the fleet ran, target.toml: the new ones), so a rollout whose driver died (host
reboot, ssh drop, kill) is resumed by the supervisor, which starts `conduitctl rollout
--resume`. A resumed stage is re-applied (backends already on it are left alone) and its
soak starts over: the gates' memory did not survive.

While a rollout is active the supervisor restarts each backend with the spec of the
current stage (`fleet_specs`), not with conduit.toml's.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conduitctl.errors import BadInput, ConduitctlError
from conduitctl.events import EventKind
from conduitctl.front.base import Front
from conduitctl.intent import holding
from conduitctl.ops import snapshots
from conduitctl.ops.converge import up
from conduitctl.ops.ready import NETWORK, Probes
from conduitctl.rollout_plan import (
    Gates,
    Sample,
    Soak,
    check_change,
    judge,
    parse_stages,
    parse_steps,
    stage_specs,
)
from conduitctl.rollout_state import (
    Phase,
    RolloutState,
    active,
    claim,
    driver_alive,
    load,
    refuse_if_active,
    save,
    settings_pair,
)
from conduitctl.runtime.base import LaunchSpec, Runtime, State, launch_specs
from conduitctl.settings import Settings, parse_settings
from conduitctl.settings_file import replace_config
from conduitctl.statedir import StateDir, write_atomic

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

SAMPLE_S = 1.0
OOM_GRACE_S = 5.0  # after a failed gate, how long an OOM kill may take to show


# --- begin, drive, roll back ----------------------------------------------------------------


def begin(
    new: Settings,
    config_path: Path,
    runtime: Runtime,
    front: Front,
    *,
    stages: str | None,
    soak_s: float,
    clients_steps: str | None = None,
    gates: Gates = Gates(),
    drain_timeout: float = 30.0,
    now: float | None = None,
) -> RolloutState:
    """Check the change and record the rollout; `Driver.run` then carries it out."""
    state_dir = new.state_dir
    refuse_if_active(state_dir)
    applied = snapshots.applied_path(state_dir)
    if not applied.exists():
        raise BadInput("no fleet to roll out to: run `conduitctl up` first")
    old = parse_settings(applied.read_text(), source=str(applied))
    check_change(old, new)
    # An image whose CLI rejects the flags would fail the first stage's stations: refused
    # before any is touched (runtime.launch_problems asks the image itself, once per id).
    unlaunchable = runtime.launch_problems(launch_specs(new))
    if unlaunchable:
        name, why = sorted(unlaunchable.items())[0]
        raise BadInput(f"nothing changed: {name}: {why}")
    count = new.cluster.containers
    stage_list = parse_stages(stages, count)
    steps = parse_steps(clients_steps, stage_list, new.workload.max_clients)
    if soak_s <= 0:
        raise BadInput("--soak must be positive, e.g. 5m")
    now = time.time() if now is None else now
    base = snapshots.take(old, runtime, front.installed_config, "rollout", now)
    files = StateDir(state_dir)
    files.rollout.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(files.rollout_base, applied.read_bytes(), secret=True)
    write_atomic(files.rollout_target, config_path.read_bytes(), secret=True)
    state = RolloutState(
        id=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)),
        started_at=now,
        stages=stage_list,
        soak_s=soak_s,
        clients_steps=steps,
        gates=gates,
        drain_timeout=drain_timeout,
        base_snapshot=base.id,
    )
    # Recorded already claimed by this process (which drives it next): the supervisor never
    # sees it without a driver and starts a second one.
    claim(state_dir, state)
    return state


@dataclass
class Driver:
    """Carries a recorded rollout to its end (passed or rolled back)."""

    settings: Settings  # conduit.toml's: state dir, front, notifiers
    config_path: Path
    runtime: Runtime
    front: Front
    front_for: Callable[[Settings], Front]
    tell_supervisor: Callable[[], None] = lambda: None
    progress: Progress = lambda _: None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    probes: Probes = NETWORK  # readiness and sessions of the backends (network by default)

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir

    def run(self) -> RolloutState:
        state = load(self.state_dir)
        if state is None or not state.active:
            raise BadInput("no rollout in progress to resume")
        claim(self.state_dir, state)
        old, new = settings_pair(self.state_dir)
        if state.phase is Phase.ROLLING_BACK:
            return self.roll_back(state, old, state.message or "resumed roll back")
        while state.stage < len(state.stages):
            failure = self.apply_stage(state, old, new)
            if failure is None:
                failure = self.soak(state, new)
            if failure is not None:
                return self.roll_back(state, old, failure)
            state.passed.append({"stage": state.stage + 1, "backends": state.upgraded,
                                 "at": self.clock()})  # fmt: skip
            self.progress(f"stage {state.stage + 1}/{len(state.stages)} passed")
            state.stage += 1
            state.phase = Phase.APPLYING
            state.soak_started_at = None
            save(self.state_dir, state)
        state.phase = Phase.PASSED
        state.stage = len(state.stages) - 1
        save(self.state_dir, state)
        snapshots.set_applied(self.state_dir, StateDir(self.state_dir).rollout_target.read_text())
        self.tell_supervisor()
        return state

    def apply_stage(self, state: RolloutState, old: Settings, new: Settings) -> str | None:
        n = len(state.stages)
        label = f"stage {state.stage + 1}/{n}"
        state.phase = Phase.APPLYING
        save(self.state_dir, state)
        self.tell_supervisor()  # it restarts backends with this stage's specs from now on
        specs = stage_specs(old, new, state.upgraded, state.clients)
        running = {s.name: s.config_hash for s in self.runtime.backends()}
        changing = [s for s in specs if running.get(s.name) != s.config_hash()]
        if changing:
            snap = snapshots.take(
                new, self.runtime, self.front.installed_config, f"rollout-{state.stage + 1}"
            )
            self.progress(f"{label}: snapshot {snap.id}")
        for spec in changing:
            self.progress(f"{label}: {spec.name} to the new settings")
            state.replacing = spec.name
            save(self.state_dir, state)
            try:
                self.replace(new, spec, state.drain_timeout)
            except ConduitctlError as exc:
                return f"{spec.name} did not come back on the new settings ({exc})"
            state.replacing = None
        state.phase = Phase.SOAKING
        state.soak_started_at = self.clock()
        save(self.state_dir, state)
        return None

    def replace(self, new: Settings, spec: LaunchSpec, drain_timeout: float) -> None:
        """One backend onto its new spec, gracefully: drained from the front first or,
        with no front (real Conduit), at a low-client moment (both bounded)."""
        from conduitctl.ops import drain as draining

        if not new.front.enabled:
            draining.restart_when_quiet(new, self.runtime, spec.name, timeout=drain_timeout,
                                        spec=spec, progress=self.progress,
                                        probes=self.probes)  # fmt: skip
            return
        draining.drain(new, self.runtime, self.front, spec.name, timeout=drain_timeout,
                       progress=self.progress, probes=self.probes)  # fmt: skip
        draining.undrain(new, self.runtime, self.front, spec.name, spec=spec,
                         progress=self.progress, probes=self.probes)  # fmt: skip

    def soak(self, state: RolloutState, new: Settings) -> str | None:
        label = f"stage {state.stage + 1}/{len(state.stages)}"
        self.progress(f"{label}: soaking {state.soak_s:g}s under the gates")
        old, _ = settings_pair(self.state_dir)
        specs = stage_specs(old, new, state.upgraded, state.clients)
        sampler = Sampler(new, self.runtime, specs, state.upgraded, self.probes)
        soak = Soak()
        started = state.soak_started_at or self.clock()
        last_shown = started
        while self.clock() - started < state.soak_s:
            failure = judge(soak, sampler.sample(self.clock()), state.gates)
            if failure is not None:
                return self.name_oom(failure, specs, started)
            if self.clock() - last_shown >= 10:
                last_shown = self.clock()
                self.progress(f"{label}: {last_shown - started:.0f}/{state.soak_s:g}s, gates ok")
            self.sleep(SAMPLE_S)
        return None

    def name_oom(self, failure: str, specs: list[LaunchSpec], since: float) -> str:
        """The cause, when it was an OOM kill: a backend seen dead or restarted may have been
        OOM-killed, and a memory-starved one often fails its probes just before the kill,
        so OOM kills of this stage's backends are looked for during a short grace."""
        if "OOM" in failure:
            return failure
        names = {spec.name for spec in specs}
        deadline = self.clock() + OOM_GRACE_S
        while True:
            killed = sorted((self.docker_ooms(since) | self.recorded_ooms(since)) & names)
            for name in killed:
                if failure.startswith(f"{name} "):
                    return f"{name} was OOM-killed"
            if killed:
                return f"{killed[0]} was OOM-killed (first sign: {failure})"
            if self.clock() >= deadline:
                return failure
            self.sleep(SAMPLE_S / 2)

    def recorded_ooms(self, since: float) -> set[str]:
        """Backends the supervisor recorded as OOM-killed since `since`."""
        from conduitctl.store import Store
        from conduitctl.supervise.files import history_path

        path = history_path(self.state_dir)
        if not path.exists():
            return set()
        try:
            with Store(path) as store:
                events = store.events(since=since, kinds={EventKind.OOM})
        except Exception:
            return set()
        return {event.backend for event in events if event.backend}

    def docker_ooms(self, since: float) -> set[str]:
        """Containers dockerd saw OOM-killed since `since` (its restart policy may have
        started them again before a sample saw them down)."""
        return self.runtime.oom_kills_since(since, self.clock())

    def roll_back(self, state: RolloutState, old: Settings, failure: str) -> RolloutState:
        self.progress(f"gate failed: {failure}; rolling back")
        state.phase = Phase.ROLLING_BACK
        state.message = failure
        save(self.state_dir, state)
        base = StateDir(self.state_dir).rollout_base
        rejected = StateDir(self.state_dir).rollout_rejected
        if self.config_path.read_bytes() != base.read_bytes():
            write_atomic(rejected, self.config_path.read_bytes(), secret=True)
        replace_config(base.read_text(), self.config_path)
        if state.replacing is not None:  # drained by the rollout, not by the operator
            from conduitctl.intent import forget_drained

            forget_drained(self.state_dir, state.replacing)
            state.replacing = None
        self.tell_supervisor()
        names = old.backend_names()
        try:
            with holding(self.state_dir, names):
                up(old, self.runtime, self.front_for(old), progress=self.progress, batch=2,
                   probes=self.probes)  # fmt: skip
        except ConduitctlError as exc:  # not retried in a loop: a human must look
            state.phase = Phase.FAILED
            state.message = f"{failure}; the roll back stopped: {exc}"
            save(self.state_dir, state)
            self.alert(state, state.message)
            return state
        snapshots.set_applied(self.state_dir, base.read_text())
        state.phase = Phase.ROLLED_BACK
        save(self.state_dir, state)
        self.tell_supervisor()
        self.progress(f"rolled back; the rejected conduit.toml is kept in {rejected}")
        self.alert(state, f"rolled back at stage {state.stage + 1}/{len(state.stages)}: {failure}")
        return state

    def alert(self, state: RolloutState, what: str) -> None:
        from conduitctl.ops.announce import announce

        outcome = announce(self.settings, EventKind.OPERATION_FAILED, None,
                           f"rollout {state.id} {what}", operation="rollout",
                           stage=state.stage + 1)  # fmt: skip
        self.progress(outcome.summary())


class Sampler:
    """Samples the fleet once per call: state, restarts, readiness, OOM, CPU and memory."""

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        specs: list[LaunchSpec],
        upgraded: int,
        probes: Probes = NETWORK,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.probes = probes
        self.specs = specs
        self.upgraded = upgraded
        self.cpu: dict[str, tuple[float, float]] = {}
        self.oom_base: dict[str, int | None] = {s.name: runtime.oom_count(s.name) for s in specs}

    def sample(self, now: float) -> list[Sample]:
        statuses = {s.name: s for s in self.runtime.backends()}
        samples = []
        for spec in self.specs:
            b = spec.backend
            status = statuses.get(spec.name)
            running = status is not None and status.state == State.RUNNING
            cpu_percent = memory_percent = None
            if running and status is not None and status.pid:
                cpu_s, rss = self.runtime.usage(status.pid)
                if cpu_s is not None:
                    seen = self.cpu.get(spec.name)
                    if seen is not None and now > seen[0]:
                        used = (cpu_s - seen[1]) / (now - seen[0])
                        cpu_percent = 100.0 * used / max(b.cpus, 0.01)
                    self.cpu[spec.name] = (now, cpu_s)
                if rss is not None and b.memory_bytes:
                    memory_percent = 100.0 * rss / b.memory_bytes
            ooms = self.runtime.oom_count(spec.name)
            base = self.oom_base.get(spec.name)
            samples.append(
                Sample(
                    name=spec.name,
                    upgraded=b.index <= self.upgraded,
                    running=running,
                    instance=(f"{status.pid}:{status.restart_count}" if status else None),
                    ready=running and self.probes.ready(self.settings, b),
                    oom=bool(status and status.oom_killed and not running)
                    or (ooms is not None and base is not None and ooms > base),
                    cpu_percent=cpu_percent,
                    memory_percent=memory_percent,
                )
            )
        return samples


# --- resume (the supervisor's side) --------------------------------------------------------


def abort(state_dir: Path) -> RolloutState:
    """Stop the driver and mark the rollout for its roll back (the next `run` carries it out)."""
    state = active(state_dir)
    if state is None:
        raise BadInput("no rollout in progress to abort")
    stop_driver(state)
    state.phase = Phase.ROLLING_BACK
    state.message = "aborted by the operator"
    save(state_dir, state)
    return state


def stop_driver(state: RolloutState, timeout: float = 10.0) -> bool:
    if not driver_alive(state) or state.driver_pid == os.getpid():
        return False
    assert state.driver_pid is not None
    os.kill(state.driver_pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while driver_alive(state) and time.monotonic() < deadline:
        time.sleep(0.05)
    if driver_alive(state):
        os.kill(state.driver_pid, signal.SIGKILL)
    return True

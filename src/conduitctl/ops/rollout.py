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

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from conduitctl.errors import BadInput, ConduitctlError
from conduitctl.events import EventKind
from conduitctl.front.base import Front
from conduitctl.ops import snapshots
from conduitctl.ops.converge import is_ready, up
from conduitctl.ops.holds import holding
from conduitctl.ops.rollout_plan import (
    Gates,
    Sample,
    Soak,
    check_change,
    judge,
    parse_stages,
    parse_steps,
    stage_specs,
)
from conduitctl.runtime.base import LaunchSpec, Runtime, State, launch_specs
from conduitctl.settings import Settings, parse_settings
from conduitctl.settings_file import replace_config
from conduitctl.statedir import StateDir, write_atomic

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

SAMPLE_S = 1.0
RESUME_COOLDOWN_S = 15.0
OOM_GRACE_S = 5.0  # after a failed gate, how long an OOM kill may take to show
ACTIVE = ("applying", "soaking", "rolling_back")


def rollout_dir(state_dir: Path) -> Path:
    return StateDir(state_dir).rollout


@dataclass
class RolloutState:
    id: str
    started_at: float
    stages: list[int]
    soak_s: float
    clients_steps: list[int] | None
    gates: Gates
    drain_timeout: float
    base_snapshot: str
    stage: int = 0  # index into stages
    # applying | soaking | rolling_back (active) | passed | rolled_back | failed (the roll back
    # itself failed: a human must look)
    phase: str = "applying"
    soak_started_at: float | None = None
    replacing: str | None = None  # the backend being moved (drained) right now
    message: str = ""
    driver_pid: int | None = None
    driver_started: float | None = None  # the driver's process start time (pids are reused)
    updated_at: float = 0.0
    passed: list[dict[str, Any]] = field(default_factory=list)  # stages that passed

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE

    @property
    def upgraded(self) -> int:
        return self.stages[min(self.stage, len(self.stages) - 1)]

    @property
    def clients(self) -> int | None:
        if self.clients_steps is None:
            return None
        return self.clients_steps[min(self.stage, len(self.stages) - 1)]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gates"] = self.gates.to_dict()
        return data

    def summary(self, now: float) -> str:
        where = f"stage {min(self.stage + 1, len(self.stages))}/{len(self.stages)}"
        where += f" ({self.upgraded} backends"
        where += f", {self.clients} clients each)" if self.clients else ")"
        if self.phase == "soaking" and self.soak_started_at is not None:
            soaked = min(now - self.soak_started_at, self.soak_s)
            return f"rollout {self.id}: {where} soaking {soaked:.0f}/{self.soak_s:g}s"
        if self.phase == "passed":
            return f"rollout {self.id}: passed all {len(self.stages)} stages"
        if self.phase == "rolled_back":
            return f"rollout {self.id}: rolled back at {where}: {self.message}"
        if self.phase == "failed":
            return f"rollout {self.id}: FAILED at {where}: {self.message}"
        return f"rollout {self.id}: {where} {self.phase.replace('_', ' ')}"


def load(state_dir: Path) -> RolloutState | None:
    try:
        data = json.loads(StateDir(state_dir).rollout_state.read_text())
        data["gates"] = Gates(**data["gates"])
        return RolloutState(**data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def save(state_dir: Path, state: RolloutState) -> None:
    state.updated_at = time.time()
    write_atomic(StateDir(state_dir).rollout_state, json.dumps(state.to_dict(), indent=2),
                 secret=False)  # fmt: skip


def active(state_dir: Path) -> RolloutState | None:
    state = load(state_dir)
    return state if state is not None and state.active else None


def _settings_pair(state_dir: Path) -> tuple[Settings, Settings]:
    files = StateDir(state_dir)
    old = parse_settings(files.rollout_base.read_text(), source="rollout base.toml")
    new = parse_settings(files.rollout_target.read_text(), source="rollout target.toml")
    return old, new


def fleet_specs(settings: Settings) -> list[LaunchSpec]:
    """What each backend should run now: the current stage's spec during a rollout (the old
    one while it rolls back), else conduit.toml's."""
    state = active(settings.state_dir)
    if state is None:
        return launch_specs(settings)
    try:
        old, new = _settings_pair(settings.state_dir)
    except (OSError, ConduitctlError):
        log.warning("rollout files unreadable; using conduit.toml")
        return launch_specs(settings)
    if state.phase == "rolling_back":
        return launch_specs(old)
    return stage_specs(old, new, state.upgraded, state.clients)


def refuse_if_active(state_dir: Path) -> None:
    state = active(state_dir)
    if state is not None:
        how = "let it finish" if driver_alive(state) else "its driver is gone: `rollout --resume`"
        raise BadInput(f"{state.summary(time.time())}; {how}, or `conduitctl rollout --abort`")


# --- the driver's identity ------------------------------------------------------------------


def _start_time(pid: int) -> float | None:
    """When the process started; None when it is gone (or a zombie: it is not driving)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(process.create_time())
    except psutil.Error:
        return None


def driver_alive(state: RolloutState) -> bool:
    if state.driver_pid is None:
        return False
    started = _start_time(state.driver_pid)
    return started is not None and started == state.driver_started


def _claim(state_dir: Path, state: RolloutState) -> None:
    if driver_alive(state) and state.driver_pid != os.getpid():
        raise BadInput(f"rollout {state.id} is being driven by pid {state.driver_pid} already")
    state.driver_pid = os.getpid()
    state.driver_started = _start_time(os.getpid())
    save(state_dir, state)


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
    count = new.cluster.containers
    stage_list = parse_stages(stages, count)
    steps = parse_steps(clients_steps, stage_list, new.workload.max_clients)
    if soak_s <= 0:
        raise BadInput("--soak must be positive, e.g. 5m")
    now = time.time() if now is None else now
    base = snapshots.take(old, runtime, getattr(front, "conf", None), "rollout", now)
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
    save(state_dir, state)
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

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir

    def run(self) -> RolloutState:
        state = load(self.state_dir)
        if state is None or not state.active:
            raise BadInput("no rollout in progress to resume")
        _claim(self.state_dir, state)
        old, new = _settings_pair(self.state_dir)
        if state.phase == "rolling_back":
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
            state.phase = "applying"
            state.soak_started_at = None
            save(self.state_dir, state)
        state.phase = "passed"
        state.stage = len(state.stages) - 1
        save(self.state_dir, state)
        snapshots.set_applied(self.state_dir, StateDir(self.state_dir).rollout_target.read_text())
        self.tell_supervisor()
        return state

    def apply_stage(self, state: RolloutState, old: Settings, new: Settings) -> str | None:
        n = len(state.stages)
        label = f"stage {state.stage + 1}/{n}"
        state.phase = "applying"
        save(self.state_dir, state)
        self.tell_supervisor()  # it restarts backends with this stage's specs from now on
        specs = stage_specs(old, new, state.upgraded, state.clients)
        running = {s.name: s.config_hash for s in self.runtime.backends()}
        changing = [s for s in specs if running.get(s.name) != s.config_hash()]
        if changing:
            snap = snapshots.take(
                new, self.runtime, getattr(self.front, "conf", None), f"rollout-{state.stage + 1}"
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
        state.phase = "soaking"
        state.soak_started_at = self.clock()
        save(self.state_dir, state)
        return None

    def replace(self, new: Settings, spec: LaunchSpec, drain_timeout: float) -> None:
        """One backend onto its new spec, gracefully: drained from the front first or,
        with no front (real Conduit), at a low-client moment (both bounded)."""
        from conduitctl.ops import drain as draining

        if new.front.kind == "none":
            draining.restart_when_quiet(new, self.runtime, spec.name, timeout=drain_timeout,
                                        spec=spec, progress=self.progress)  # fmt: skip
            return
        draining.drain(new, self.runtime, self.front, spec.name, timeout=drain_timeout,
                       progress=self.progress)  # fmt: skip
        draining.undrain(new, self.runtime, self.front, spec.name, spec=spec,
                         progress=self.progress)  # fmt: skip

    def soak(self, state: RolloutState, new: Settings) -> str | None:
        label = f"stage {state.stage + 1}/{len(state.stages)}"
        self.progress(f"{label}: soaking {state.soak_s:g}s under the gates")
        old, _ = _settings_pair(self.state_dir)
        specs = stage_specs(old, new, state.upgraded, state.clients)
        sampler = Sampler(new, self.runtime, specs, state.upgraded)
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
        if self.runtime.name != "docker":
            return set()
        try:
            client: Any = getattr(self.runtime, "client", None)
            events = client.events(
                since=int(since) - 1,
                until=int(self.clock()) + 1,
                filters={"type": "container", "event": "oom"},
                decode=True,
            )
            return {e.get("Actor", {}).get("Attributes", {}).get("name", "") for e in events}
        except Exception:
            return set()

    def roll_back(self, state: RolloutState, old: Settings, failure: str) -> RolloutState:
        self.progress(f"gate failed: {failure}; rolling back")
        state.phase = "rolling_back"
        state.message = failure
        save(self.state_dir, state)
        base = StateDir(self.state_dir).rollout_base
        rejected = StateDir(self.state_dir).rollout_rejected
        if self.config_path.read_bytes() != base.read_bytes():
            write_atomic(rejected, self.config_path.read_bytes(), secret=True)
        replace_config(base.read_text(), self.config_path)
        if state.replacing is not None:  # drained by the rollout, not by the operator
            from conduitctl.ops.drain import forget_drained

            forget_drained(self.state_dir, state.replacing)
            state.replacing = None
        self.tell_supervisor()
        names = old.backend_names()
        try:
            with holding(self.state_dir, names):
                up(old, self.runtime, self.front_for(old), progress=self.progress, batch=2)
        except ConduitctlError as exc:  # not retried in a loop: a human must look
            state.phase = "failed"
            state.message = f"{failure}; the roll back stopped: {exc}"
            save(self.state_dir, state)
            self.alert(state, state.message)
            return state
        snapshots.set_applied(self.state_dir, base.read_text())
        state.phase = "rolled_back"
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
        self, settings: Settings, runtime: Runtime, specs: list[LaunchSpec], upgraded: int
    ) -> None:
        self.settings = settings
        self.runtime = runtime
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
                    ready=running and is_ready(self.settings, b),
                    oom=bool(status and status.oom_killed and not running)
                    or (ooms is not None and base is not None and ooms > base),
                    cpu_percent=cpu_percent,
                    memory_percent=memory_percent,
                )
            )
        return samples


# --- resume (the supervisor's side) --------------------------------------------------------


def orphaned(state_dir: Path) -> RolloutState | None:
    """An active rollout whose driver is gone: someone must resume it."""
    state = active(state_dir)
    return state if state is not None and not driver_alive(state) else None


def start_driver(config_path: Path, log_dir: Path) -> int:
    """`conduitctl rollout --resume` detached, its output appended to log_dir/rollout.out."""
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "conduitctl", "rollout", "--resume",
            "--config", str(config_path.absolute())]  # fmt: skip
    from conduitctl.supervise.control import spawn_detached

    return spawn_detached(argv, log_dir / "rollout.out").pid


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


class Resumer:
    """The supervisor's tick hook: a rollout left without its driver is resumed (after a
    host reboot, the supervisor's own start is what brings it back)."""

    def __init__(self, config_path: Path, state_dir: Path, log_dir: Path) -> None:
        self.config_path = config_path
        self.state_dir = state_dir
        self.log_dir = log_dir
        self.last_start = 0.0

    def __call__(self, tick: object) -> None:
        now = time.monotonic()
        if now - self.last_start < RESUME_COOLDOWN_S:
            return
        state = orphaned(self.state_dir)
        if state is None:
            return
        self.last_start = now
        pid = start_driver(self.config_path, self.log_dir)
        log.warning("rollout %s had no driver; resumed it (pid %d)", state.id, pid)

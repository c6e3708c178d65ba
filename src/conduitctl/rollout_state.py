"""A staged rollout's recorded state (STATE_DIR/rollout/): what the driver, the supervisor, `status`
and the change protocol read. Core: no runtime, no front, no daemon.

The driver (ops/rollout.py) writes it; the supervisor resumes a rollout whose driver is gone.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import psutil

from conduitctl.errors import BadInput
from conduitctl.rollout_plan import Gates
from conduitctl.settings import Settings, parse_settings
from conduitctl.statedir import StateDir, write_atomic


class Phase(StrEnum):
    APPLYING = "applying"
    SOAKING = "soaking"
    ROLLING_BACK = "rolling_back"
    PASSED = "passed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"  # the roll back itself failed: a human must look


ACTIVE = frozenset({Phase.APPLYING, Phase.SOAKING, Phase.ROLLING_BACK})


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
    phase: Phase = Phase.APPLYING
    soak_started_at: float | None = None
    replacing: str | None = None  # the backend being moved (drained) right now
    message: str = ""
    driver_pid: int | None = None
    driver_started: float | None = None  # the driver's process start time (pids are reused)
    updated_at: float = 0.0
    passed: list[dict[str, Any]] = field(default_factory=list)  # stages that passed

    def __post_init__(self) -> None:
        self.phase = Phase(self.phase)  # read back from JSON as a plain string

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
        if self.phase is Phase.SOAKING and self.soak_started_at is not None:
            soaked = min(now - self.soak_started_at, self.soak_s)
            return f"rollout {self.id}: {where} soaking {soaked:.0f}/{self.soak_s:g}s"
        if self.phase is Phase.PASSED:
            return f"rollout {self.id}: passed all {len(self.stages)} stages"
        if self.phase is Phase.ROLLED_BACK:
            return f"rollout {self.id}: rolled back at {where}: {self.message}"
        if self.phase is Phase.FAILED:
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


def settings_pair(state_dir: Path) -> tuple[Settings, Settings]:
    files = StateDir(state_dir)
    old = parse_settings(files.rollout_base.read_text(), source="rollout base.toml")
    new = parse_settings(files.rollout_target.read_text(), source="rollout target.toml")
    return old, new


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


def refuse_if_driven(state_dir: Path) -> None:
    """BadInput when another process drives the rollout (before `--resume` takes the lock)."""
    state = load(state_dir)
    if state is not None and driver_alive(state) and state.driver_pid != os.getpid():
        raise BadInput(f"rollout {state.id} is being driven by pid {state.driver_pid} already")


def claim(state_dir: Path, state: RolloutState) -> None:
    refuse_if_driven(state_dir)
    state.driver_pid = os.getpid()
    state.driver_started = _start_time(os.getpid())
    save(state_dir, state)


def orphaned(state_dir: Path) -> RolloutState | None:
    """An active rollout whose driver is gone: someone must resume it."""
    state = active(state_dir)
    return state if state is not None and not driver_alive(state) else None

"""The supervisor's side of a staged rollout: one left without its driver is resumed."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from conduitctl.daemon_link import spawn_detached
from conduitctl.rollout_state import RolloutState, orphaned

log = logging.getLogger(__name__)
RESUME_COOLDOWN_S = 15.0
MAX_RESUMES = 5  # drivers started for one rollout before a human is asked


def start_driver(config_path: Path, log_dir: Path) -> int:
    """`conduitctl rollout --resume` detached, its output appended to log_dir/rollout.out."""
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "conduitctl", "rollout", "--resume",
            "--config", str(config_path.absolute())]  # fmt: skip
    return spawn_detached(argv, log_dir / "rollout.out").pid


class Resumer:
    """The supervisor's tick hook: a rollout left without its driver is resumed (after a
    host reboot, the supervisor's own start is what brings it back). At most MAX_RESUMES
    times per rollout: a driver that dies each time needs a human, who is told once."""

    def __init__(
        self,
        config_path: Path,
        state_dir: Path,
        log_dir: Path,
        *,
        on_give_up: Callable[[RolloutState, int], None] = lambda _state, _n: None,
        clock: Callable[[], float] = time.monotonic,
        start: Callable[[Path, Path], int] = start_driver,
    ) -> None:
        self.config_path = config_path
        self.state_dir = state_dir
        self.log_dir = log_dir
        self.on_give_up = on_give_up
        self.clock = clock
        self.start = start
        self.last_start = -RESUME_COOLDOWN_S
        self.resumes: dict[str, int] = {}  # rollout id -> drivers started for it

    def __call__(self, tick: object) -> None:
        now = self.clock()
        if now - self.last_start < RESUME_COOLDOWN_S:
            return
        state = orphaned(self.state_dir)
        if state is None:
            return
        count = self.resumes.get(state.id, 0)
        if count >= MAX_RESUMES:
            if count == MAX_RESUMES:  # once
                self.resumes[state.id] = count + 1
                log.error("rollout driver keeps dying; not resumed again",
                          extra={"rollout": state.id, "resumes": count})  # fmt: skip
                self.on_give_up(state, count)
            return
        self.resumes[state.id] = count + 1
        self.last_start = now
        pid = self.start(self.config_path, self.log_dir)
        log.warning("rollout had no driver; resumed it", extra={"rollout": state.id, "pid": pid})

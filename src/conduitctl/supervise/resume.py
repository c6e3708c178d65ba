"""The supervisor's side of a staged rollout: one left without its driver is resumed."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from conduitctl.daemon_link import spawn_detached
from conduitctl.rollout_state import orphaned

log = logging.getLogger(__name__)
RESUME_COOLDOWN_S = 15.0


def start_driver(config_path: Path, log_dir: Path) -> int:
    """`conduitctl rollout --resume` detached, its output appended to log_dir/rollout.out."""
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "conduitctl", "rollout", "--resume",
            "--config", str(config_path.absolute())]  # fmt: skip
    return spawn_detached(argv, log_dir / "rollout.out").pid


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
        log.warning("rollout had no driver; resumed it", extra={"rollout": state.id, "pid": pid})

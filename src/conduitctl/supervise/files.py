"""The supervisor's files in the state dir, and the readers the CLI needs (kept light: `status`
reads them without importing the daemon, its notifiers or its exporter). Their names live in
conduitctl.statedir."""

from __future__ import annotations

import json
import time
from pathlib import Path

from conduitctl import alerts
from conduitctl.statedir import StateDir, write_atomic


def alerts_path(state_dir: Path) -> Path:
    return StateDir(state_dir).alerts


def history_path(state_dir: Path) -> Path:
    return StateDir(state_dir).history_db


def load_alert_state(state_dir: Path) -> alerts.AlertState:
    try:
        return alerts.AlertState.from_dict(json.loads(alerts_path(state_dir).read_text()))
    except (OSError, ValueError):
        return alerts.AlertState()


def want_live_history(state_dir: Path, seconds: float) -> None:
    """Ask the supervisor to write every tick at once (not batched) for `seconds`."""
    write_atomic(StateDir(state_dir).history_live, f"{time.time() + seconds}", secret=False)


def stop_live_history(state_dir: Path) -> None:
    StateDir(state_dir).history_live.unlink(missing_ok=True)


def live_history_wanted(state_dir: Path, now: float) -> bool:
    try:
        return float(StateDir(state_dir).history_live.read_text()) > now
    except (OSError, ValueError):
        return False

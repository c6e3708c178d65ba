"""The supervisor's files in the state dir, and the readers the CLI needs (kept light: `status`
reads them without importing the daemon, its notifiers or its exporter)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from conduitctl import alerts

PID_FILE = "daemon.pid"
HISTORY_FILE = "history.db"
ALERTS_FILE = "alerts.json"
LIVE_FILE = "history.live"  # someone (a chaos drill) reads the history as it is written


def alerts_path(state_dir: Path) -> Path:
    return state_dir / ALERTS_FILE


def history_path(state_dir: Path) -> Path:
    return state_dir / HISTORY_FILE


def load_alert_state(state_dir: Path) -> alerts.AlertState:
    try:
        return alerts.AlertState.from_dict(json.loads(alerts_path(state_dir).read_text()))
    except (OSError, ValueError):
        return alerts.AlertState()


def want_live_history(state_dir: Path, seconds: float) -> None:
    """Ask the supervisor to write every tick at once (not batched) for `seconds`."""
    (state_dir / LIVE_FILE).write_text(f"{time.time() + seconds}")


def stop_live_history(state_dir: Path) -> None:
    (state_dir / LIVE_FILE).unlink(missing_ok=True)


def live_history_wanted(state_dir: Path, now: float) -> bool:
    try:
        return float((state_dir / LIVE_FILE).read_text()) > now
    except (OSError, ValueError):
        return False

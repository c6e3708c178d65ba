"""The supervisor's files in the state dir, and the readers the CLI needs (kept light: `status`
reads them without importing the daemon, its notifiers or its exporter)."""

from __future__ import annotations

import json
from pathlib import Path

from conduitctl import alerts

PID_FILE = "daemon.pid"
HISTORY_FILE = "history.db"
ALERTS_FILE = "alerts.json"


def alerts_path(state_dir: Path) -> Path:
    return state_dir / ALERTS_FILE


def history_path(state_dir: Path) -> Path:
    return state_dir / HISTORY_FILE


def load_alert_state(state_dir: Path) -> alerts.AlertState:
    try:
        return alerts.AlertState.from_dict(json.loads(alerts_path(state_dir).read_text()))
    except (OSError, ValueError):
        return alerts.AlertState()

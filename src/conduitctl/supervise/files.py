"""The supervisor's files in the state dir, and the readers the CLI needs (kept light: `status`
reads them without importing the daemon, its notifiers or its exporter). Their names live in
conduitctl.statedir."""

from __future__ import annotations

import json
import time
from pathlib import Path

from conduitctl import alerts
from conduitctl.observe.model import CpuReading, Tick
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


def write_last_tick(state_dir: Path, tick: Tick) -> None:
    """Each running backend's CPU rate at this tick, for `status`. Rewritten every tick, so
    not fsynced: a crash loses at most a file that would be stale anyway."""
    backends = {
        b.name: {"pid": b.cpu_pid, "cpu_percent": round(b.cpu_percent, 2)}
        for b in tick.backends
        if b.running and b.cpu_pid is not None and b.cpu_percent is not None
    }
    data = json.dumps({"ts": tick.ts, "backends": backends})
    write_atomic(StateDir(state_dir).last_tick, data, secret=False, durable=False)


def last_tick_cpu(state_dir: Path, now: float, max_age: float) -> dict[str, CpuReading] | None:
    """The CPU readings of the supervisor's last tick; None when there is none or it is
    older than `max_age` seconds (the supervisor stopped or is stuck)."""
    try:
        data = json.loads(StateDir(state_dir).last_tick.read_text())
        if not 0 <= now - float(data["ts"]) <= max_age:
            return None
        return {
            name: CpuReading(pid=int(b["pid"]), cpu_percent=float(b["cpu_percent"]))
            for name, b in data["backends"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None

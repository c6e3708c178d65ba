"""What `status` shows, built once for both places it is asked: the CLI reading the fleet
itself (`status --direct`, or no supervisor), and the supervisor answering on its status
socket (supervise/status_server.py), which is how a plain `status` is served while it runs.
Both call `document` and `render` here, so the two answers cannot drift apart."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from conduitctl import alerts as alert_engine
from conduitctl import daemon_link
from conduitctl.observe.fleet import FleetView, collect
from conduitctl.observe.model import CpuReading
from conduitctl.rollout_state import RolloutState
from conduitctl.rollout_state import load as load_rollout
from conduitctl.supervise.files import load_alert_state

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table

    from conduitctl.app.context import Fleet

STALE_TICKS = 3  # the supervisor's last tick is trusted while younger than this many intervals
ROLLOUT_SHOWN_S = 86400  # a finished rollout's line stays in `status` for a day


Readings = Mapping[str, CpuReading] | None


def view(fleet: Fleet, recent: Readings = None) -> FleetView:
    """The fleet as it is now. `recent`: each backend's CPU rate at the supervisor's last
    tick (when it answers); the command samples every process twice, a wait apart."""
    return collect(fleet.settings, fleet.runtime, fleet.front, recent)


def supervisor(fleet: Fleet) -> dict[str, Any]:
    state_dir = fleet.settings.state_dir
    firing = [
        a.to_dict()
        for a in alert_engine.active_alerts(load_alert_state(state_dir))
        if a.state == "firing"
    ]
    return {"pid": daemon_link.daemon_pid(state_dir), "alerts_firing": firing}


def document(fleet: Fleet, source: str, recent: Readings = None) -> dict[str, Any]:
    """`status --json`. `source` says who read the fleet: "supervisor" or "direct"."""
    state = load_rollout(fleet.settings.state_dir)
    return {
        **view(fleet, recent).to_dict(),
        "supervisor": supervisor(fleet),
        "rollout": None if state is None else {**state.to_dict(), "active": state.active},
        "source": source,
    }


def render(fleet: Fleet, recent: Readings = None) -> Group:
    """The table, the front's line, the supervisor's line and a recent rollout's line."""
    from rich.console import Group

    shown = view(fleet, recent)
    sup = supervisor(fleet)
    line = (
        f"supervisor: pid {sup['pid']}, {len(sup['alerts_firing'])} alerts firing"
        if sup["pid"]
        else "supervisor: [red]not running[/] (conduitctl up starts it)"
    )
    lines: list[Any] = [status_table(shown), front_line(shown.front), line]
    state: RolloutState | None = load_rollout(fleet.settings.state_dir)
    now = time.time()
    if state is not None and (state.active or now - state.updated_at < ROLLOUT_SHOWN_S):
        lines.append(state.summary(now))
    return Group(*lines)


def status_table(shown: Any) -> Table:
    from rich.table import Table

    title = f"{shown.cluster}: {shown.profile} on {shown.runtime}"
    table = Table(title=title, title_justify="left")
    for column in (
        "backend",
        "state",
        "health",
        "clients",
        "connecting",
        "cpu %",
        "rss",
        "restarts",
        "uptime",
    ):
        table.add_column(
            column, justify="left" if column in ("backend", "state", "health") else "right"
        )
    for b in shown.backends:
        color = {"healthy": "green", "unhealthy": "red", "stopped": "red"}.get(b.health, "yellow")
        table.add_row(
            b.name,
            b.state,
            f"[{color}]{b.health}[/]",
            _dash(b.connected),
            _dash(b.connecting),
            _dash(b.cpu_percent),
            _mb(b.rss_bytes),
            str(b.restarts),
            _uptime(b.uptime_s),
        )
    t = shown.totals
    table.add_row(
        "total",
        f"{t['running']}/{t['backends']}",
        f"{t['healthy']} healthy",
        str(t["connected"]),
        str(t["connecting"]),
        str(t["cpu_percent"]),
        _mb(t["rss_bytes"]),
        str(t["restarts"]),
        "",
        style="bold",
    )
    return table


def front_line(front: Any) -> str:
    if not front.configured:
        return f"front: none - {front.reason}"
    if not front.running:
        return f"front: {front.kind} [red]down[/] - {front.reason}"
    listening = ", ".join(front.listening) or "nothing"
    extra = f" - [red]{front.reason}[/]" if front.reason else ""
    return f"front: {front.kind} pid {front.pid}, listening on {listening}{extra}"


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _mb(value: int | float | None) -> str:
    return "-" if not value else f"{value / 1024**2:.0f} MB"


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"

"""What the simulator reports, as pure functions of one snapshot (stdlib only).

The ``[STATS]`` line and the stats JSON copy Conduit's own code
(Psiphon-Inc/conduit ``cli/internal/conduit/service.go``: ``logStats``, ``formatBytes``,
``formatDuration`` and ``StatsJSON``), because tools such as conduit-manager grep
``docker logs`` for ``[STATS]`` and parse ``Connecting: N | Connected: N | Up: X | Down: Y``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Snapshot:
    """The station's state at one instant; every renderer reads only this."""

    is_live: bool
    connecting: int
    connected: int
    announcing: int
    bytes_up: int
    bytes_down: int
    uptime_seconds: float
    idle_seconds: float
    max_clients: int
    max_personal_clients: int
    bandwidth_bps: int
    refused: int = 0
    udp_sessions: int = 0
    udp_dropped: int = 0
    leaked_bytes: int = 0
    session_bytes: int = 0


def format_bytes(n: int) -> str:
    """Conduit's formatBytes: binary units, one decimal, e.g. ``512 B``, ``1.5 KB``, ``2.0 GB``."""
    unit = 1024
    if n < unit:
        return f"{n} B"
    div, exp = unit, 0
    rest = n // unit
    while rest >= unit:
        div *= unit
        exp += 1
        rest //= unit
    return f"{n / div:.1f} {'KMGTPE'[exp]}B"


def format_duration(seconds: float) -> str:
    """Conduit's formatDuration (truncated to whole seconds): ``5s``, ``2m5s``, ``1h2m5s``."""
    total = max(0, int(seconds))
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def stats_line(snap: Snapshot, now: datetime) -> str:
    """One ``[STATS]`` log line, prefixed with the local time like Conduit's."""
    return (
        f"{now:%Y-%m-%d %H:%M:%S} [STATS] Connecting: {snap.connecting} | "
        f"Connected: {snap.connected} | Up: {format_bytes(snap.bytes_up)} | "
        f"Down: {format_bytes(snap.bytes_down)} | Uptime: {format_duration(snap.uptime_seconds)}"
    )


def stats_json(snap: Snapshot, now: datetime) -> str:
    """The ``--stats-file`` document, with Conduit's StatsJSON keys (``now`` must be aware)."""
    doc = {
        "connectingClients": snap.connecting,
        "connectedClients": snap.connected,
        "totalBytesUp": snap.bytes_up,
        "totalBytesDown": snap.bytes_down,
        "uptimeSeconds": int(snap.uptime_seconds),
        "isLive": snap.is_live,
        "timestamp": now.isoformat(timespec="seconds"),
    }
    return json.dumps(doc, indent=2)

"""[STATS] line, stats JSON and the byte/duration formats copied from Conduit."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from conduitctl.sim.stats import Snapshot, format_bytes, format_duration, stats_json, stats_line

SNAP = Snapshot(
    is_live=True,
    connecting=2,
    connected=31,
    announcing=17,
    bytes_up=1536,
    bytes_down=5 * 1024**3 + 1024**3 // 2,
    uptime_seconds=3723.9,
    idle_seconds=0,
    max_clients=50,
    max_personal_clients=0,
    bandwidth_bps=625_000,
)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KB"),
        (1536, "1.5 KB"),
        (1024**2 - 1, "1024.0 KB"),
        (1024**2, "1.0 MB"),
        (int(2.25 * 1024**3), "2.2 GB"),
        (1024**4 * 3, "3.0 TB"),
        (1024**6, "1.0 EB"),
    ],
)
def test_format_bytes_like_conduit(n: int, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59.99, "59s"),
        (60, "1m0s"),
        (3599, "59m59s"),
        (3600, "1h0m0s"),
        (90061, "25h1m1s"),
    ],
)
def test_format_duration_like_conduit(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_stats_line_has_conduits_fields_in_order() -> None:
    line = stats_line(SNAP, datetime(2026, 2, 25, 22, 58, 58))
    assert line == (
        "2026-02-25 22:58:58 [STATS] Connecting: 2 | Connected: 31 | Up: 1.5 KB | "
        "Down: 5.5 GB | Uptime: 1h2m3s"
    )


def test_stats_line_parses_with_conduit_manager_style_sed() -> None:
    # conduit-manager: sed -n 's/.*Connected:[[:space:]]*\([0-9]*\).*/\1/p'
    import re

    line = stats_line(replace(SNAP, connected=7), datetime(2026, 1, 1))
    assert re.sub(r".*Connected:\s*([0-9]*).*", r"\1", line) == "7"
    assert re.sub(r".*Connecting:\s*([0-9]*).*", r"\1", line) == "2"


def test_stats_json_uses_conduits_keys() -> None:
    now = datetime(2026, 2, 25, 22, 58, 58, tzinfo=timezone(timedelta(hours=1)))
    doc = json.loads(stats_json(SNAP, now))
    assert doc == {
        "connectingClients": 2,
        "connectedClients": 31,
        "totalBytesUp": 1536,
        "totalBytesDown": SNAP.bytes_down,
        "uptimeSeconds": 3723,
        "isLive": True,
        "timestamp": "2026-02-25T22:58:58+01:00",
    }

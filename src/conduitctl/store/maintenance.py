"""Downsampling and retention: completed minutes of raw rows rolled into minute rows,
completed hours of minute rows into hour rows, then what is past retention deleted.

The marks in the `meta` table say how far each rollup has gone; nothing is deleted before
it has been rolled up.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
from dataclasses import dataclass
from typing import Any

from conduitctl.store.samples import HOUR, MINUTE, bucket_start, rollup_series
from conduitctl.store.schema import HOUR_MARK, MINUTE_MARK, TABLES


@dataclass(frozen=True)
class Maintenance:
    """What one `Store.maintain()` did (for the daemon's log)."""

    minute_rows: int = 0  # aggregate rows written
    hour_rows: int = 0
    deleted_raw: int = 0
    deleted_minute: int = 0
    deleted_hour: int = 0
    deleted_events: int = 0


def roll_up_and_expire(
    conn: sqlite3.Connection,
    now: float,
    *,
    raw_retention: float,
    minute_retention: float,
    hour_retention: float,
    event_retention: float,
) -> Maintenance:
    """Roll up and apply the retentions (seconds) as of `now`, in the caller's transaction.
    Idempotent for one `now`."""
    minute_rows = _roll(conn, 0, MINUTE, MINUTE_MARK, bucket_start(now, MINUTE))
    minutes_done = _mark(conn, MINUTE_MARK)
    hours_end = min(now, minutes_done) if minutes_done is not None else now
    hour_end = bucket_start(hours_end, HOUR)
    hour_rows = _roll(conn, 60, HOUR, HOUR_MARK, hour_end)
    # Never delete what has not been rolled up yet.
    raw_cut = _at_most(now - raw_retention, minutes_done)
    minute_cut = _at_most(now - minute_retention, _mark(conn, HOUR_MARK))
    deleted = [
        _delete(conn, res, cut)
        for res, cut in ((0, raw_cut), (60, minute_cut), (3600, now - hour_retention))
    ]
    cursor = conn.execute("DELETE FROM events WHERE ts < ?", (now - event_retention,))
    return Maintenance(
        minute_rows=minute_rows,
        hour_rows=hour_rows,
        deleted_raw=deleted[0],
        deleted_minute=deleted[1],
        deleted_hour=deleted[2],
        deleted_events=cursor.rowcount,
    )


def _mark(conn: sqlite3.Connection, key: str) -> float | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else float(row[0])


def _roll(conn: sqlite3.Connection, source: int, width: float, mark: str, end: float) -> int:
    """Aggregate `source`-resolution rows in [mark, end) into `width` buckets; move the
    mark to `end`. Returns the rows written."""
    start = _mark(conn, mark)
    if start is None or start > end:  # first run, or the clock went back: from the oldest
        firsts = [
            conn.execute(f"SELECT min(ts) FROM {t.name} WHERE res = ?", (source,)).fetchone()[0]
            for t in TABLES
        ]
        known = [ts for ts in firsts if ts is not None]
        if not known:
            return 0
        start = bucket_start(min(known), width)
    if start >= end:
        return 0
    written = 0
    for table in TABLES:
        cursor = conn.execute(table.select_range, (source, start, end))
        out: list[tuple[Any, ...]] = []
        for series, rows in itertools.groupby(cursor, key=lambda row: row[0]):
            buckets = rollup_series(map(table.bucket, rows), table.metrics, width)
            key = (series,) if table.keyed else ()
            for b in buckets:
                maxima = [
                    m
                    for m, metric in zip(b.maxima, table.metrics, strict=True)
                    if not metric.counter
                ]
                out.append((int(width), b.ts, *key, b.n, *b.values, *maxima))
        conn.executemany(table.insert_aggregate, out)
        written += len(out)
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (mark, end))
    return written


def _delete(conn: sqlite3.Connection, res: int, cut: float) -> int:
    total = 0
    for table in TABLES:
        cursor = conn.execute(f"DELETE FROM {table.name} WHERE res = ? AND ts < ?", (res, cut))
        total += cursor.rowcount
    return total


def _at_most(cut: float, mark: float | None) -> float:
    """`cut`, but no later than the rollup mark (nothing rolled yet: nothing to delete)."""
    return min(cut, mark) if mark is not None else -math.inf

"""The history's SQLite schema (pure): the migrations, the rollup marks and, per sample
table, the SQL built from its metrics.

`PRAGMA user_version` is the schema version, `PRAGMA application_id` marks the file as ours;
`database.py` applies the migrations when a file is opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from conduitctl.store.samples import (
    BACKEND_METRICS,
    FRONT_METRICS,
    HOST_METRICS,
    Bucket,
    Metric,
    SeriesKind,
)

APPLICATION_ID = 0x636F6E64  # "cond": marks the file as a conduitctl history

# Migration i takes the schema from version i to i + 1. Never edit a released one: append.
# The sample tables hold raw rows (res 0) and aggregates (res 60, 3600) alike; a gauge `g`
# has `g` (value or average) and `g_max`, a counter only `c`. NUMERIC stores 1.0 as 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value REAL NOT NULL) WITHOUT ROWID",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            kind TEXT NOT NULL,
            backend TEXT,
            message TEXT NOT NULL,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX events_ts ON events (ts)",
        "CREATE INDEX events_backend_ts ON events (backend, ts)",
        "CREATE TABLE backends (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        """CREATE TABLE backend_samples (
            res INTEGER NOT NULL,
            ts REAL NOT NULL,
            backend_id INTEGER NOT NULL,
            n INTEGER NOT NULL,
            running NUMERIC, running_max NUMERIC,
            healthy NUMERIC, healthy_max NUMERIC,
            in_front NUMERIC, in_front_max NUMERIC,
            connected NUMERIC, connected_max NUMERIC,
            connecting NUMERIC, connecting_max NUMERIC,
            cpu_percent NUMERIC, cpu_percent_max NUMERIC,
            rss_bytes NUMERIC, rss_bytes_max NUMERIC,
            max_clients NUMERIC, max_clients_max NUMERIC,
            restarts NUMERIC,
            oom_kills NUMERIC,
            bytes_uploaded NUMERIC,
            bytes_downloaded NUMERIC,
            PRIMARY KEY (res, ts, backend_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE host_samples (
            res INTEGER NOT NULL,
            ts REAL NOT NULL,
            n INTEGER NOT NULL,
            mem_total_bytes NUMERIC, mem_total_bytes_max NUMERIC,
            mem_available_bytes NUMERIC, mem_available_bytes_max NUMERIC,
            cpu_percent NUMERIC, cpu_percent_max NUMERIC,
            nic_rx_mbps NUMERIC, nic_rx_mbps_max NUMERIC,
            nic_tx_mbps NUMERIC, nic_tx_mbps_max NUMERIC,
            PRIMARY KEY (res, ts)
        ) WITHOUT ROWID""",
        """CREATE TABLE front_samples (
            res INTEGER NOT NULL,
            ts REAL NOT NULL,
            n INTEGER NOT NULL,
            running NUMERIC, running_max NUMERIC,
            listening NUMERIC, listening_max NUMERIC,
            accept_queue_max NUMERIC, accept_queue_max_max NUMERIC,
            reloads NUMERIC,
            PRIMARY KEY (res, ts)
        ) WITHOUT ROWID""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

MINUTE_MARK = "minute_rolled_until"  # raw rows before this are rolled into minutes
HOUR_MARK = "hour_rolled_until"  # minute rows before this are rolled into hours


@dataclass(frozen=True)
class Table:
    """One sample table and the SQL built from its metrics (names are constants, not input)."""

    kind: SeriesKind
    name: str
    metrics: tuple[Metric, ...]
    keyed: bool  # one series per backend (backend_id column) or a single series

    @cached_property
    def value_columns(self) -> list[str]:
        return [m.name for m in self.metrics]

    @cached_property
    def max_columns(self) -> list[str]:
        return [f"{m.name}_max" for m in self.metrics if not m.counter]

    @cached_property
    def _selected(self) -> str:
        # values, then a max for every metric (NULL for counters): the `Bucket` layout
        maxima = [f"{m.name}_max" if not m.counter else "NULL" for m in self.metrics]
        return ", ".join(["ts", "n", *self.value_columns, *maxima])

    @cached_property
    def insert_raw(self) -> str:
        key = ["backend_id"] if self.keyed else []
        columns = ["res", "ts", *key, "n", *self.value_columns]
        slots = ["0", "?", *["?"] * len(key), "1", *["?"] * len(self.value_columns)]
        return (
            f"INSERT OR REPLACE INTO {self.name} ({', '.join(columns)}) VALUES ({', '.join(slots)})"
        )

    @cached_property
    def insert_aggregate(self) -> str:
        key = ["backend_id"] if self.keyed else []
        columns = ["res", "ts", *key, "n", *self.value_columns, *self.max_columns]
        return (
            f"INSERT OR REPLACE INTO {self.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )

    @cached_property
    def select_range(self) -> str:
        """Rows of one resolution in [start, end), one series after another, oldest first."""
        key = "backend_id" if self.keyed else "0"
        return (
            f"SELECT {key}, {self._selected} FROM {self.name} "
            "WHERE res = ? AND ts >= ? AND ts < ? ORDER BY 1, ts"
        )

    def select_history(self, clauses: Sequence[str]) -> str:
        if self.keyed:
            source = f"{self.name} JOIN backends ON backends.id = {self.name}.backend_id"
            series = "backends.name"
        else:
            source = self.name
            series = f"'{self.kind}'"
        where = " AND ".join(["res = ?", *clauses])
        return f"SELECT {series}, {self._selected} FROM {source} WHERE {where} ORDER BY ts"

    def bucket(self, row: Sequence[Any]) -> Bucket:
        """A `Bucket` from a `select_range` row (series id first)."""
        k = len(self.metrics)
        return Bucket(ts=row[1], n=row[2], values=tuple(row[3 : 3 + k]), maxima=tuple(row[3 + k :]))


BACKEND_TABLE = Table("backend", "backend_samples", BACKEND_METRICS, keyed=True)
HOST_TABLE = Table("host", "host_samples", HOST_METRICS, keyed=False)
FRONT_TABLE = Table("front", "front_samples", FRONT_METRICS, keyed=False)
TABLES: tuple[Table, ...] = (BACKEND_TABLE, HOST_TABLE, FRONT_TABLE)

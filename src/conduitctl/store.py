"""The supervisor's history (an edge): events and per-tick samples in one SQLite file.

One writer, the daemon, and any number of readers in other processes (`conduitctl events`,
`conduitctl history`, status, doctor). The journal is WAL: readers never block the writer
and the writer never blocks readers; a busy timeout covers the short moments two processes
do need the same lock (opening a new file, a checkpoint).

Samples come in three series kinds: one series per backend, one for the host and one for
the front. Each is kept at three resolutions:

- raw: one row per series per tick, kept `raw_retention` (default 1 h);
- minute: one row per series per minute, kept `minute_retention` (default 7 days);
- hour: one row per series per hour, kept `hour_retention` (default 90 days).

An aggregate keeps, for a gauge, its average and its maximum over the bucket and, for a
counter, its last known value. `maintain(now)` rolls completed buckets up and applies the
retention; the daemon calls it about once a minute.

Schema: `PRAGMA user_version` is the schema version, `PRAGMA application_id` marks the file
as ours. Opening a file migrates it; a file from a newer conduitctl, another program's
database or a file that is not SQLite at all is refused with a `StoreError`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from conduitctl.errors import ConduitctlError
from conduitctl.events import Event, EventKind
from conduitctl.observe.model import (
    BackendObservation,
    FrontObservation,
    HostObservation,
    Tick,
)

log = logging.getLogger(__name__)

Resolution = Literal["raw", "minute", "hour"]
SeriesKind = Literal["backend", "host", "front"]
Value = float | None  # what a metric holds: bools as 0/1, None when not observed

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
# The `res` column: seconds per bucket, 0 for raw rows.
RES_SECONDS: dict[Resolution, int] = {"raw": 0, "minute": 60, "hour": 3600}

APPLICATION_ID = 0x636F6E64  # "cond": marks the file as a conduitctl history


class StoreError(ConduitctlError):
    """The history database cannot be opened, read or written; the message names the file
    and, where there is one, the fix."""


@dataclass(frozen=True)
class Metric:
    name: str
    counter: bool = False  # counters keep their last value, gauges their average and maximum


BACKEND_METRICS: tuple[Metric, ...] = (
    Metric("running"),
    Metric("healthy"),  # None (NULL) until probed
    Metric("in_front"),
    Metric("connected"),
    Metric("connecting"),
    Metric("cpu_percent"),
    Metric("rss_bytes"),
    Metric("max_clients"),
    Metric("restarts", counter=True),
    Metric("oom_kills", counter=True),
    Metric("bytes_uploaded", counter=True),
    Metric("bytes_downloaded", counter=True),
)
HOST_METRICS: tuple[Metric, ...] = (
    Metric("mem_total_bytes"),
    Metric("mem_available_bytes"),
    Metric("cpu_percent"),
    Metric("nic_rx_mbps"),
    Metric("nic_tx_mbps"),
)
FRONT_METRICS: tuple[Metric, ...] = (
    Metric("running"),
    Metric("listening"),
    Metric("accept_queue_max"),  # the deepest accept queue over the front's listeners
    Metric("reloads", counter=True),
)


# --- pure helpers -------------------------------------------------------------------------


def backend_values(backend: BackendObservation) -> tuple[Value, ...]:
    """One backend's raw sample, in `BACKEND_METRICS` order."""
    return tuple(getattr(backend, metric.name) for metric in BACKEND_METRICS)


def host_values(host: HostObservation) -> tuple[Value, ...]:
    """The host's raw sample, in `HOST_METRICS` order."""
    return tuple(getattr(host, metric.name) for metric in HOST_METRICS)


def front_values(front: FrontObservation) -> tuple[Value, ...]:
    """The front's raw sample, in `FRONT_METRICS` order."""
    deepest = max(front.accept_queue.values(), default=None)
    return (front.running, front.listening, deepest, front.reloads)


def bucket_start(ts: float, width: float) -> float:
    """The start of the `width`-second bucket holding `ts` (unix seconds, UTC-aligned)."""
    return math.floor(ts / width) * width


@dataclass(frozen=True)
class Bucket:
    """One row of one series: a raw sample (n=1, no maxima) or an aggregate.

    `values` and `maxima` follow the series' metric order; `maxima` is None for counters
    and, in raw rows, for every metric (a raw sample is its own maximum).
    """

    ts: float
    n: int  # raw samples behind the row
    values: tuple[Value, ...]
    maxima: tuple[Value, ...]


def rollup(rows: Sequence[Bucket], metrics: Sequence[Metric], ts: float) -> Bucket:
    """Combine a series' chronological rows into one bucket starting at `ts`.

    Gauges: the average weighted by each row's sample count (rows where the gauge is None
    do not count) and the maximum. Counters: the last value that is not None. A metric
    never observed in any row stays None.
    """
    values: list[Value] = []
    maxima: list[Value] = []
    for i, metric in enumerate(metrics):
        if metric.counter:
            last = next((r.values[i] for r in reversed(rows) if r.values[i] is not None), None)
            values.append(last)
            maxima.append(None)
            continue
        total = 0.0
        weight = 0
        top: Value = None
        for row in rows:
            value = row.values[i]
            if value is None:
                continue
            total += value * row.n
            weight += row.n
            peak = row.maxima[i]
            if peak is None:
                peak = value
            if top is None or peak > top:
                top = peak
        values.append(total / weight if weight else None)
        maxima.append(top)
    return Bucket(ts=ts, n=sum(r.n for r in rows), values=tuple(values), maxima=tuple(maxima))


def rollup_series(rows: Iterable[Bucket], metrics: Sequence[Metric], width: float) -> list[Bucket]:
    """Roll one series' chronological rows into `width`-second buckets, oldest first."""
    return [
        rollup(list(group), metrics, start)
        for start, group in itertools.groupby(rows, key=lambda r: bucket_start(r.ts, width))
    ]


def pick_resolution(
    since: float | None,
    until: float,
    raw_retention: float = HOUR,
    minute_retention: float = 7 * DAY,
) -> Resolution:
    """The finest resolution whose retention covers the window [since, until].

    With the default retentions: raw up to 1 h, minute up to 7 days, else hour. No `since`
    means everything kept, so hour.
    """
    if since is None:
        return "hour"
    window = until - since
    if window <= raw_retention:
        return "raw"
    if window <= minute_retention:
        return "minute"
    return "hour"


# --- values handed out --------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryPoint:
    """One point of one series.

    `values`: each metric's value (raw), or for an aggregate a gauge's average and a
    counter's last value. `maxima`: each gauge's maximum over the bucket (raw: the value).
    Booleans are 0/1; an average of one is the fraction of samples it was true.
    """

    ts: float  # the tick (raw) or the bucket's start, unix seconds
    series: str  # the backend's name, "host" or "front"
    kind: SeriesKind
    resolution: Resolution
    samples: int  # raw samples behind the point
    values: dict[str, Value] = field(default_factory=dict)
    maxima: dict[str, Value] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "series": self.series,
            "kind": self.kind,
            "resolution": self.resolution,
            "samples": self.samples,
            "values": dict(self.values),
            "max": dict(self.maxima),
        }


@dataclass(frozen=True)
class EventCounts:
    deaths: int = 0
    ooms: int = 0
    restarts: int = 0
    health_changes: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "deaths": self.deaths,
            "ooms": self.ooms,
            "restarts": self.restarts,
            "health_changes": self.health_changes,
        }


@dataclass(frozen=True)
class BackendSummary:
    backend: str
    last_hour: EventCounts
    last_day: EventCounts

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "last_hour": self.last_hour.to_dict(),
            "last_day": self.last_day.to_dict(),
        }


@dataclass(frozen=True)
class Maintenance:
    """What one `maintain()` did (for the daemon's log)."""

    minute_rows: int = 0  # aggregate rows written
    hour_rows: int = 0
    deleted_raw: int = 0
    deleted_minute: int = 0
    deleted_hour: int = 0
    deleted_events: int = 0


_SUMMARY_FIELDS: dict[str, str] = {
    EventKind.DEATH.value: "deaths",
    EventKind.OOM.value: "ooms",
    EventKind.RESTART.value: "restarts",
    EventKind.HEALTH.value: "health_changes",
}


# --- schema -------------------------------------------------------------------------------

# Migration i takes the schema from version i to i + 1. Never edit a released one: append.
# The sample tables hold raw rows (res 0) and aggregates (res 60, 3600) alike; a gauge `g`
# has `g` (value or average) and `g_max`, a counter only `c`. NUMERIC stores 1.0 as 1.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
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
SCHEMA_VERSION = len(_MIGRATIONS)

_MINUTE_MARK = "minute_rolled_until"  # raw rows before this are rolled into minutes
_HOUR_MARK = "hour_rolled_until"  # minute rows before this are rolled into hours


@dataclass(frozen=True)
class _Table:
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


_BACKENDS = _Table("backend", "backend_samples", BACKEND_METRICS, keyed=True)
_HOST = _Table("host", "host_samples", HOST_METRICS, keyed=False)
_FRONT = _Table("front", "front_samples", FRONT_METRICS, keyed=False)
_TABLES: tuple[_Table, ...] = (_BACKENDS, _HOST, _FRONT)
_SERIES_ORDER: dict[SeriesKind, int] = {"backend": 0, "host": 1, "front": 2}


# --- the store ----------------------------------------------------------------------------


class Store:
    """The history database at `path`, created (mode 0600, parent directories included) and
    migrated on open.

    Calls are serialized by a lock, so the daemon may use it from any one thread (or
    several); other processes open their own `Store` to read. Raises `StoreError` for any
    database failure; `ValueError` for bad arguments.
    """

    def __init__(
        self,
        path: Path,
        *,
        raw_retention: float = HOUR,
        minute_retention: float = 7 * DAY,
        hour_retention: float = 90 * DAY,
        event_retention: float = 90 * DAY,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        flush_every: float = 0.0,
    ) -> None:
        for name, value in (
            ("raw_retention", raw_retention),
            ("minute_retention", minute_retention),
            ("hour_retention", hour_retention),
            ("event_retention", event_retention),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive seconds, got {value}")
        self.path = Path(path)
        self.raw_retention = raw_retention
        self.minute_retention = minute_retention
        self.hour_retention = hour_retention
        self.event_retention = event_retention
        # Ticks are buffered and written together once the oldest is this many seconds old:
        # one transaction per tick rewrites the same few pages (about 20 KiB of WAL a tick,
        # 1.8 GB a day at 1 s), which a small VPS's disk should not pay. 0: write each tick.
        self.flush_every = flush_every
        self._pending: list[Tick] = []
        self._clock = clock
        self._lock = threading.Lock()
        self._backend_ids: dict[str, int] = {}
        self._create_file()
        try:
            self._conn = sqlite3.connect(
                self.path,
                timeout=busy_timeout,
                isolation_level=None,  # autocommit; transactions are explicit
                check_same_thread=False,  # the lock serializes calls instead
            )
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        try:
            self._configure(busy_timeout)
            self._migrate()
        except BaseException as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self._error("open", exc) from exc
            raise

    # -- lifecycle

    def close(self) -> None:
        """Write what is buffered, close the connection (idempotent). The last one to close
        checkpoints the WAL."""
        with self._lock:
            if self._pending:
                with contextlib.suppress(StoreError, sqlite3.Error):
                    self._flush()
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- events

    def record(self, event: Event) -> None:
        """Append one event (its own transaction). Data that JSON cannot hold is stored as
        its `str()`."""
        data = json.dumps(event.data, separators=(",", ":"), default=str)
        with self._lock, self._guard("record an event in"):
            self._conn.execute(
                "INSERT INTO events (ts, kind, backend, message, data) VALUES (?, ?, ?, ?, ?)",
                (event.ts, event.kind.value, event.backend, event.message, data),
            )

    def events(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: set[EventKind] | None = None,
        backend: str | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        """The newest `limit` events with since <= ts <= until, oldest first.

        `kinds` None means every kind (an empty set: none); `backend` matches exactly.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if limit == 0 or (kinds is not None and not kinds):
            return []
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append("ts >= ?")
            params.append(since)
        if until is not None:
            clauses.append("ts <= ?")
            params.append(until)
        if kinds is not None:
            clauses.append(f"kind IN ({', '.join('?' * len(kinds))})")
            params.extend(sorted(kind.value for kind in kinds))
        if backend is not None:
            clauses.append("backend = ?")
            params.append(backend)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (
            f"SELECT ts, kind, backend, message, data FROM events {where} "
            "ORDER BY ts DESC, id DESC LIMIT ?"
        )
        with self._lock, self._guard("read events from"):
            rows = self._conn.execute(sql, (*params, limit)).fetchall()
        out: list[Event] = []
        for ts, kind, name, message, data in reversed(rows):
            try:
                event_kind = EventKind(kind)
            except ValueError:  # written by a newer conduitctl
                log.debug("skipping an event of unknown kind", extra={"event": kind, "ts": ts})
                continue
            out.append(Event(ts, event_kind, name, message, json.loads(data)))
        return out

    # -- samples

    def record_tick(self, tick: Tick) -> None:
        """Store one raw sample per backend, the host's and the front's: at once, or with the
        ticks buffered for up to `flush_every` seconds, in one transaction."""
        with self._lock:
            self._pending.append(tick)
            if tick.ts - self._pending[0].ts >= self.flush_every:
                self._flush()

    def flush(self) -> None:
        """Write the buffered ticks now."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        ticks, self._pending = self._pending, []
        with self._guard("record ticks in"), self._transaction():
            execute = self._conn.execute
            for tick in ticks:
                ts = tick.ts
                rows = [(ts, self._backend_id(b.name), *backend_values(b)) for b in tick.backends]
                if rows:
                    self._conn.executemany(_BACKENDS.insert_raw, rows)
                execute(_HOST.insert_raw, (ts, *host_values(tick.host)))
                execute(_FRONT.insert_raw, (ts, *front_values(tick.front)))

    def maintain(self, now: float) -> Maintenance:
        """Roll completed minutes of raw rows into minute rows and completed hours of minute
        rows into hour rows, then delete what is past retention. Idempotent for one `now`.

        A raw sample recorded after its minute was rolled up (a tick older than the last
        `now` passed here) stays raw only; the daemon passes its tick's `now`, so that does
        not happen in practice.
        """
        with self._lock:
            self._flush()  # what is rolled up must be in the table first
        with self._lock, self._guard("maintain"), self._transaction():
            minute_rows = self._roll(0, MINUTE, _MINUTE_MARK, bucket_start(now, MINUTE))
            minutes_done = self._mark(_MINUTE_MARK)
            hours_end = min(now, minutes_done) if minutes_done is not None else now
            hour_end = bucket_start(hours_end, HOUR)
            hour_rows = self._roll(60, HOUR, _HOUR_MARK, hour_end)
            # Never delete what has not been rolled up yet.
            raw_cut = _at_most(now - self.raw_retention, minutes_done)
            minute_cut = _at_most(now - self.minute_retention, self._mark(_HOUR_MARK))
            deleted = [
                self._delete(res, cut)
                for res, cut in ((0, raw_cut), (60, minute_cut), (3600, now - self.hour_retention))
            ]
            cursor = self._conn.execute(
                "DELETE FROM events WHERE ts < ?", (now - self.event_retention,)
            )
        return Maintenance(
            minute_rows=minute_rows,
            hour_rows=hour_rows,
            deleted_raw=deleted[0],
            deleted_minute=deleted[1],
            deleted_hour=deleted[2],
            deleted_events=cursor.rowcount,
        )

    def history(
        self,
        since: float | None = None,
        until: float | None = None,
        backend: str | None = None,
        resolution: Literal["auto", "raw", "minute", "hour"] = "auto",
    ) -> list[HistoryPoint]:
        """Points with since <= ts <= until, oldest first (series in backend, host, front
        order within one ts).

        `backend`: a backend's name, "host", "front", or None for every series. "auto"
        picks the finest resolution whose retention covers the window (see
        `pick_resolution`; `until` None counts as now). Minute and hour points appear once
        `maintain()` has rolled their bucket up.
        """
        if resolution == "auto":
            end = until if until is not None else self._clock()
            resolution = pick_resolution(since, end, self.raw_retention, self.minute_retention)
        if resolution not in RES_SECONDS:
            raise ValueError(f"resolution must be auto, raw, minute or hour, got {resolution!r}")
        if backend is None:
            tables = _TABLES
        elif backend in ("host", "front"):
            tables = (_HOST,) if backend == "host" else (_FRONT,)
        else:
            tables = (_BACKENDS,)
        clauses: list[str] = []
        params: list[Any] = [RES_SECONDS[resolution]]
        if since is not None:
            clauses.append("ts >= ?")
            params.append(since)
        if until is not None:
            clauses.append("ts <= ?")
            params.append(until)
        points: list[HistoryPoint] = []
        with self._lock, self._guard("read history from"):
            self._flush()  # this process's buffered ticks are history too
            for table in tables:
                table_clauses, table_params = list(clauses), list(params)
                if table.keyed and backend is not None:
                    table_clauses.append("backends.name = ?")
                    table_params.append(backend)
                sql = table.select_history(table_clauses)
                for row in self._conn.execute(sql, table_params):
                    points.append(_point(table, resolution, row))
        points.sort(key=lambda p: (p.ts, _SERIES_ORDER[p.kind], p.series))  # near-sorted: cheap
        return points

    def summary(self, now: float, backends: Iterable[str] = ()) -> dict[str, BackendSummary]:
        """Per backend, its deaths, OOM kills, supervisor restarts and health changes in the
        hour and the day up to `now`. Backends without such events are present only when
        named in `backends` (with zeros)."""
        counts: dict[str, tuple[dict[str, int], dict[str, int]]] = {
            name: ({}, {}) for name in backends
        }
        kinds = sorted(_SUMMARY_FIELDS)
        sql = (
            "SELECT backend, kind, count(*), sum(ts >= ?) FROM events "
            "WHERE ts >= ? AND ts <= ? AND backend IS NOT NULL "
            f"AND kind IN ({', '.join('?' * len(kinds))}) GROUP BY backend, kind"
        )
        with self._lock, self._guard("summarize events in"):
            rows = self._conn.execute(sql, (now - HOUR, now - DAY, now, *kinds)).fetchall()
        for name, kind, day, hour in rows:
            hour_counts, day_counts = counts.setdefault(name, ({}, {}))
            hour_counts[_SUMMARY_FIELDS[kind]] = hour
            day_counts[_SUMMARY_FIELDS[kind]] = day
        return {
            name: BackendSummary(name, EventCounts(**hour_counts), EventCounts(**day_counts))
            for name, (hour_counts, day_counts) in sorted(counts.items())
        }

    # -- internals

    def _create_file(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                info = self.path.stat()
                if info.st_mode & 0o077 and info.st_uid == os.getuid():
                    os.chmod(self.path, 0o600)
            else:
                os.fchmod(fd, 0o600)  # whatever the umask
                os.close(fd)
        except OSError as exc:
            raise StoreError(
                f"cannot create {self.path}: {exc.strerror or exc}; "
                "check the state directory's owner and permissions"
            ) from exc

    def _configure(self, busy_timeout: float) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            log.warning("not in WAL mode: readers may block",
                        extra={"journal_mode": mode, "path": str(self.path)})  # fmt: skip
        conn.execute("PRAGMA synchronous = NORMAL")

    def _migrate(self) -> None:
        conn = self._conn
        if self._versions() == (APPLICATION_ID, SCHEMA_VERSION):
            return  # the common case, and the only one for readers: no write lock
        with self._transaction():
            app_id, version = self._versions()  # again, under the write lock
            if app_id not in (0, APPLICATION_ID) or (version == 0 and self._has_tables()):
                raise StoreError(
                    f"{self.path} is an SQLite database of another program, not a conduitctl "
                    "history; point conduitctl at another file or move this one aside"
                )
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer conduitctl (schema {version}, this "
                    f"one knows {SCHEMA_VERSION}); upgrade conduitctl or move the file aside"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[step]:
                    conn.execute(statement)
                log.info("history schema migrated",
                         extra={"to": step + 1, "path": str(self.path)})  # fmt: skip
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _versions(self) -> tuple[int, int]:
        app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        return int(app_id), int(version)

    def _has_tables(self) -> bool:
        row = self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return bool(row[0])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE (take the write lock up front, so no upgrade can fail midway)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._backend_ids.clear()  # ids inserted in the rolled-back transaction are gone
            raise

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(doing, exc) from exc

    def _error(self, doing: str, exc: sqlite3.Error) -> StoreError:
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF  # the primary code
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            return StoreError(
                f"{self.path} is not a usable conduitctl history database ({exc}); move it "
                f"aside (mv {self.path} {self.path}.broken) and conduitctl starts a new one"
            )
        return StoreError(f"cannot {doing} {self.path}: {exc}")

    def _backend_id(self, name: str) -> int:
        cached = self._backend_ids.get(name)
        if cached is not None:
            return cached
        self._conn.execute("INSERT OR IGNORE INTO backends (name) VALUES (?)", (name,))
        row = self._conn.execute("SELECT id FROM backends WHERE name = ?", (name,)).fetchone()
        self._backend_ids[name] = int(row[0])
        return int(row[0])

    def _mark(self, key: str) -> float | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else float(row[0])

    def _roll(self, source: int, width: float, mark: str, end: float) -> int:
        """Aggregate `source`-resolution rows in [mark, end) into `width` buckets; move the
        mark to `end`. Returns the rows written."""
        start = self._mark(mark)
        if start is None or start > end:  # first run, or the clock went back: from the oldest
            firsts = [
                self._conn.execute(
                    f"SELECT min(ts) FROM {t.name} WHERE res = ?", (source,)
                ).fetchone()[0]
                for t in _TABLES
            ]
            known = [ts for ts in firsts if ts is not None]
            if not known:
                return 0
            start = bucket_start(min(known), width)
        if start >= end:
            return 0
        written = 0
        for table in _TABLES:
            cursor = self._conn.execute(table.select_range, (source, start, end))
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
            self._conn.executemany(table.insert_aggregate, out)
            written += len(out)
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (mark, end))
        return written

    def _delete(self, res: int, cut: float) -> int:
        total = 0
        for table in _TABLES:
            cursor = self._conn.execute(
                f"DELETE FROM {table.name} WHERE res = ? AND ts < ?", (res, cut)
            )
            total += cursor.rowcount
        return total


def _at_most(cut: float, mark: float | None) -> float:
    """`cut`, but no later than the rollup mark (nothing rolled yet: nothing to delete)."""
    return min(cut, mark) if mark is not None else -math.inf


def _point(table: _Table, resolution: Resolution, row: Sequence[Any]) -> HistoryPoint:
    k = len(table.metrics)
    values = row[3 : 3 + k]
    peaks = row[3 + k :]
    maxima: dict[str, Value] = {}
    for metric, value, peak in zip(table.metrics, values, peaks, strict=True):
        if not metric.counter:
            maxima[metric.name] = value if peak is None else peak
    return HistoryPoint(
        ts=row[1],
        series=row[0],
        kind=table.kind,
        resolution=resolution,
        samples=row[2],
        values=dict(zip(table.value_columns, values, strict=True)),
        maxima=maxima,
    )

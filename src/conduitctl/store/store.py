"""The `Store`: one lock around the history's connection, the tick buffer, and the calls the
daemon and the CLI make (record, events, record_tick, maintain, history, summary)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Literal

from conduitctl.events import Event, EventKind
from conduitctl.observe.model import Tick
from conduitctl.store.database import Database, StoreError
from conduitctl.store.maintenance import Maintenance, roll_up_and_expire
from conduitctl.store.queries import (
    BackendSummary,
    HistoryPoint,
    decode_events,
    events_query,
    history_point,
    history_queries,
    sort_points,
    summaries,
    summary_query,
)
from conduitctl.store.samples import DAY, HOUR, RES_SECONDS, pick_resolution
from conduitctl.store.writing import insert_event, insert_ticks

log = logging.getLogger(__name__)
# One routine event every 10 s on average, per backend: a station that flaps all hour is
# still fully visible in its first minutes and in the alerts, never a disk filled.
EVENTS_PER_BACKEND_HOUR = 360
CAPPED_KINDS = frozenset({
    EventKind.START, EventKind.STOP, EventKind.DEATH, EventKind.HEALTH,
    EventKind.FRONT_OUT, EventKind.FRONT_IN, EventKind.RESTART,
})  # fmt: skip


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
        events_per_backend_hour: int = EVENTS_PER_BACKEND_HOUR,
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
        self.events_per_backend_hour = events_per_backend_hour
        self._event_counts: dict[tuple[str, int], int] = {}  # (backend, hour) -> recorded
        self._clock = clock
        self._lock = threading.Lock()
        self._db = Database(self.path, busy_timeout)

    # -- lifecycle

    def close(self) -> None:
        """Write what is buffered, close the connection (idempotent). The last one to close
        checkpoints the WAL."""
        with self._lock:
            if self._pending:
                with contextlib.suppress(StoreError, sqlite3.Error):
                    self._flush()
            self._db.close()

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

    def record(self, event: Event) -> bool:
        """Append one event (its own transaction). Data that JSON cannot hold is stored as
        its `str()`. A flapping backend's routine events (deaths, restarts, health, in and
        out of the front) stop being written past `events_per_backend_hour` in an hour, so
        it cannot fill the disk; the first one dropped is logged. False when dropped."""
        with self._lock:
            if not self._within_cap(event):
                return False
            with self._db.guard("record an event in"):
                insert_event(self._db, event)
        return True

    def _within_cap(self, event: Event) -> bool:
        if event.backend is None or event.kind not in CAPPED_KINDS:
            return True
        hour = int(event.ts // HOUR)
        key = (event.backend, hour)
        count = self._event_counts.get(key, 0) + 1
        self._event_counts[key] = count
        if len(self._event_counts) > 4096:  # old hours: forget them
            for old in [k for k in self._event_counts if k[1] < hour]:
                del self._event_counts[old]
        if count == self.events_per_backend_hour + 1:
            log.warning(
                "event cap reached; its routine events are dropped until the hour ends",
                extra={"backend": event.backend, "cap": self.events_per_backend_hour},
            )
        return count <= self.events_per_backend_hour

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
        sql, params = events_query(since, until, kinds, backend, limit)
        with self._lock, self._db.guard("read events from"):
            rows = self._db.conn.execute(sql, params).fetchall()
        return decode_events(rows)

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
        with self._db.guard("record ticks in"), self._db.transaction():
            insert_ticks(self._db, ticks)

    def maintain(self, now: float) -> Maintenance:
        """Roll completed minutes of raw rows into minute rows and completed hours of minute
        rows into hour rows, then delete what is past retention. Idempotent for one `now`.

        A raw sample recorded after its minute was rolled up (a tick older than the last
        `now` passed here) stays raw only; the daemon passes its tick's `now`, so that does
        not happen in practice.
        """
        with self._lock:
            self._flush()  # what is rolled up must be in the table first
        with self._lock, self._db.guard("maintain"), self._db.transaction():
            return roll_up_and_expire(
                self._db.conn,
                now,
                raw_retention=self.raw_retention,
                minute_retention=self.minute_retention,
                hour_retention=self.hour_retention,
                event_retention=self.event_retention,
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
        points: list[HistoryPoint] = []
        with self._lock, self._db.guard("read history from"):
            self._flush()  # this process's buffered ticks are history too
            for table, (sql, params) in history_queries(resolution, since, until, backend):
                for row in self._db.conn.execute(sql, params):
                    points.append(history_point(table, resolution, row))
        sort_points(points)
        return points

    def summary(self, now: float, backends: Iterable[str] = ()) -> dict[str, BackendSummary]:
        """Per backend, its deaths, OOM kills, supervisor restarts and health changes in the
        hour and the day up to `now`. Backends without such events are present only when
        named in `backends` (with zeros)."""
        sql, params = summary_query(now)
        with self._lock, self._db.guard("summarize events in"):
            rows = self._db.conn.execute(sql, params).fetchall()
        return summaries(rows, backends)

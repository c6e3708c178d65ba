"""Reading the history (pure): the values handed out, the SQL of each read and the
decoding of its rows. The `Store` runs the SQL under its lock."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from conduitctl.events import Event, EventKind
from conduitctl.store.samples import DAY, HOUR, RES_SECONDS, Resolution, SeriesKind, Value
from conduitctl.store.schema import BACKEND_TABLE, FRONT_TABLE, HOST_TABLE, TABLES, Table

log = logging.getLogger(__name__)


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


_SUMMARY_FIELDS: dict[str, str] = {
    EventKind.DEATH.value: "deaths",
    EventKind.OOM.value: "ooms",
    EventKind.RESTART.value: "restarts",
    EventKind.HEALTH.value: "health_changes",
}
_SERIES_ORDER: dict[SeriesKind, int] = {"backend": 0, "host": 1, "front": 2}

Query = tuple[str, list[Any]]  # SQL and its parameters


# --- events -------------------------------------------------------------------------------


def events_query(
    since: float | None,
    until: float | None,
    kinds: set[EventKind] | None,
    backend: str | None,
    limit: int,
) -> Query:
    """The newest `limit` events with since <= ts <= until, newest first."""
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
    return sql, [*params, limit]


def decode_events(rows: Sequence[Sequence[Any]]) -> list[Event]:
    """`events_query` rows as events, oldest first; kinds this version does not know are
    skipped."""
    out: list[Event] = []
    for ts, kind, name, message, data in reversed(rows):
        try:
            event_kind = EventKind(kind)
        except ValueError:  # written by a newer conduitctl
            log.debug("skipping an event of unknown kind", extra={"event": kind, "ts": ts})
            continue
        out.append(Event(ts, event_kind, name, message, json.loads(data)))
    return out


# --- samples ------------------------------------------------------------------------------


def history_queries(
    resolution: Resolution, since: float | None, until: float | None, backend: str | None
) -> list[tuple[Table, Query]]:
    """One query per sample table `backend` names ("host", "front", a backend's name, or
    None for every table): its rows at `resolution` with since <= ts <= until."""
    if backend is None:
        tables = TABLES
    elif backend in ("host", "front"):
        tables = (HOST_TABLE,) if backend == "host" else (FRONT_TABLE,)
    else:
        tables = (BACKEND_TABLE,)
    clauses: list[str] = []
    params: list[Any] = [RES_SECONDS[resolution]]
    if since is not None:
        clauses.append("ts >= ?")
        params.append(since)
    if until is not None:
        clauses.append("ts <= ?")
        params.append(until)
    out: list[tuple[Table, Query]] = []
    for table in tables:
        table_clauses, table_params = list(clauses), list(params)
        if table.keyed and backend is not None:
            table_clauses.append("backends.name = ?")
            table_params.append(backend)
        out.append((table, (table.select_history(table_clauses), table_params)))
    return out


def history_point(table: Table, resolution: Resolution, row: Sequence[Any]) -> HistoryPoint:
    """A `HistoryPoint` from a `Table.select_history` row (series name first)."""
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


def sort_points(points: list[HistoryPoint]) -> None:
    """In place: oldest first, series in backend, host, front order within one ts."""
    points.sort(key=lambda p: (p.ts, _SERIES_ORDER[p.kind], p.series))  # near-sorted: cheap


# --- summary ------------------------------------------------------------------------------


def summary_query(now: float) -> Query:
    """Per backend and summarized kind: its events in the day and in the hour up to `now`."""
    kinds = sorted(_SUMMARY_FIELDS)
    sql = (
        "SELECT backend, kind, count(*), sum(ts >= ?) FROM events "
        "WHERE ts >= ? AND ts <= ? AND backend IS NOT NULL "
        f"AND kind IN ({', '.join('?' * len(kinds))}) GROUP BY backend, kind"
    )
    return sql, [now - HOUR, now - DAY, now, *kinds]


def summaries(
    rows: Iterable[Sequence[Any]], backends: Iterable[str] = ()
) -> dict[str, BackendSummary]:
    """`summary_query` rows as summaries by backend name; `backends` are present (with
    zeros) even without rows."""
    counts: dict[str, tuple[dict[str, int], dict[str, int]]] = {name: ({}, {}) for name in backends}
    for name, kind, day, hour in rows:
        hour_counts, day_counts = counts.setdefault(name, ({}, {}))
        hour_counts[_SUMMARY_FIELDS[kind]] = hour
        day_counts[_SUMMARY_FIELDS[kind]] = day
    return {
        name: BackendSummary(name, EventCounts(**hour_counts), EventCounts(**day_counts))
        for name, (hour_counts, day_counts) in sorted(counts.items())
    }

"""What a history sample is (pure): the metrics of each series kind, one tick's raw values,
buckets and their rollup, and the resolution a window is read at."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from conduitctl.observe.model import BackendObservation, FrontObservation, HostObservation

Resolution = Literal["raw", "minute", "hour"]
SeriesKind = Literal["backend", "host", "front"]
Value = float | None  # what a metric holds: bools as 0/1, None when not observed

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
# The `res` column: seconds per bucket, 0 for raw rows.
RES_SECONDS: dict[Resolution, int] = {"raw": 0, "minute": 60, "hour": 3600}


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

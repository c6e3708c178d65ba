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

One concern per module: `samples` (metrics, buckets, rollup: pure), `schema` (migrations and
the SQL of each sample table), `database` (the file, the connection, migrating, errors),
`writing` (events and ticks in), `maintenance` (rollups and retention), `queries` (events,
history and summaries out), `store` (the `Store`: its lock, the tick buffer, the calls).
"""

from conduitctl.store.database import StoreError
from conduitctl.store.maintenance import Maintenance
from conduitctl.store.queries import BackendSummary, EventCounts, HistoryPoint
from conduitctl.store.samples import (
    BACKEND_METRICS,
    DAY,
    FRONT_METRICS,
    HOST_METRICS,
    HOUR,
    MINUTE,
    RES_SECONDS,
    Bucket,
    Metric,
    Resolution,
    SeriesKind,
    Value,
    backend_values,
    bucket_start,
    front_values,
    host_values,
    pick_resolution,
    rollup,
    rollup_series,
)
from conduitctl.store.schema import APPLICATION_ID, SCHEMA_VERSION
from conduitctl.store.store import Store

__all__ = [
    "APPLICATION_ID",
    "BACKEND_METRICS",
    "DAY",
    "FRONT_METRICS",
    "HOST_METRICS",
    "HOUR",
    "MINUTE",
    "RES_SECONDS",
    "SCHEMA_VERSION",
    "BackendSummary",
    "Bucket",
    "EventCounts",
    "HistoryPoint",
    "Maintenance",
    "Metric",
    "Resolution",
    "SeriesKind",
    "Store",
    "StoreError",
    "Value",
    "backend_values",
    "bucket_start",
    "front_values",
    "host_values",
    "pick_resolution",
    "rollup",
    "rollup_series",
]

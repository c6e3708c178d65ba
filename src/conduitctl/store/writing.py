"""Writing the history: one event, or buffered ticks as raw sample rows. The caller holds
the `Store`'s lock and, for ticks, a transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence

from conduitctl.events import Event
from conduitctl.observe.model import Tick
from conduitctl.store.database import Database
from conduitctl.store.samples import backend_values, front_values, host_values
from conduitctl.store.schema import BACKEND_TABLE, FRONT_TABLE, HOST_TABLE


def insert_event(db: Database, event: Event) -> None:
    """Append one event. Data that JSON cannot hold is stored as its `str()`."""
    data = json.dumps(event.data, separators=(",", ":"), default=str)
    db.conn.execute(
        "INSERT INTO events (ts, kind, backend, message, data) VALUES (?, ?, ?, ?, ?)",
        (event.ts, event.kind.value, event.backend, event.message, data),
    )


def insert_ticks(db: Database, ticks: Sequence[Tick]) -> None:
    """One raw row per backend, the host's and the front's, for each tick."""
    execute = db.conn.execute
    for tick in ticks:
        ts = tick.ts
        rows = [(ts, db.backend_id(b.name), *backend_values(b)) for b in tick.backends]
        if rows:
            db.conn.executemany(BACKEND_TABLE.insert_raw, rows)
        execute(HOST_TABLE.insert_raw, (ts, *host_values(tick.host)))
        execute(FRONT_TABLE.insert_raw, (ts, *front_values(tick.front)))

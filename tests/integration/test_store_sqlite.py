"""The history against real SQLite files: schema and migration, refusal of foreign files,
events, samples, rollups and retention with an injected `now`, and a reader in another
process while the daemon writes."""

from __future__ import annotations

import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conduitctl.events import Event, EventKind
from conduitctl.observe.model import (
    BackendObservation,
    FrontObservation,
    HostObservation,
    Tick,
)
from conduitctl.store import (
    APPLICATION_ID,
    BACKEND_METRICS,
    FRONT_METRICS,
    HOST_METRICS,
    SCHEMA_VERSION,
    EventCounts,
    Store,
    StoreError,
)

T0 = 1_700_000_040.0  # a minute boundary (1_700_000_040 % 60 == 0), not an hour boundary
HOUR = 3600.0
DAY = 86400.0


def make_tick(ts: float, backends: int = 2, cpu: float = 10.0, up: float = 0.0) -> Tick:
    return Tick(
        ts=ts,
        backends=tuple(
            BackendObservation(
                name=f"fleet-{i}",
                index=i,
                running=True,
                healthy=True,
                in_front=True,
                connected=10 * i,
                connecting=1,
                bytes_uploaded=up * i,
                bytes_downloaded=2 * up * i,
                cpu_percent=cpu * i,
                rss_bytes=(40 << 20) * i,
                max_clients=250,
            )
            for i in range(1, backends + 1)
        ),
        host=HostObservation(
            mem_total_bytes=4 << 30,
            mem_available_bytes=2 << 30,
            cpu_percent=cpu,
            nic="eth0",
            nic_rx_mbps=100.0,
            nic_tx_mbps=90.0,
        ),
        front=FrontObservation(
            kind="nginx", running=True, listening=True, accept_queue={"0.0.0.0:443": 3}
        ),
    )


def dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


def count(path: Path, sql: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "history.db"


# --- opening, schema, refusals ------------------------------------------------------------


def test_open_creates_the_file_0600_in_wal_with_the_schema(db: Path):
    with Store(db) as store:
        store.record_tick(make_tick(T0))
        assert db.stat().st_mode & 0o777 == 0o600
        # SQLite gives the WAL and shm files the database's mode
        for extra in (Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert extra.stat().st_mode & 0o777 == 0o600
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        conn.close()


def test_a_loose_mode_is_tightened(db: Path):
    Store(db).close()
    db.chmod(0o644)
    Store(db).close()
    assert db.stat().st_mode & 0o777 == 0o600


def test_an_empty_file_is_migrated(db: Path):
    db.parent.mkdir()
    db.touch()
    with Store(db) as store:
        store.record(Event(T0, EventKind.DAEMON_START))
        assert len(store.events()) == 1
    assert count(db, "PRAGMA user_version") == SCHEMA_VERSION


def test_reopening_keeps_the_data_and_writes_nothing(db: Path):
    with Store(db) as store:
        store.record(Event(T0, EventKind.START, "fleet-1"))
        store.record_tick(make_tick(T0))
    before = dump(db)
    with Store(db) as store:
        assert [e.kind for e in store.events()] == [EventKind.START]
        assert len(store.history(resolution="raw")) == 4
    assert dump(db) == before


def test_the_schema_has_a_column_per_metric(db: Path):
    Store(db).close()
    conn = sqlite3.connect(db)
    for table, metrics in (
        ("backend_samples", BACKEND_METRICS),
        ("host_samples", HOST_METRICS),
        ("front_samples", FRONT_METRICS),
    ):
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        key = {"res", "ts", "n"} | ({"backend_id"} if table == "backend_samples" else set())
        expected = key | {m.name for m in metrics}
        expected |= {f"{m.name}_max" for m in metrics if not m.counter}
        assert columns == expected, table
    conn.close()


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(db: Path):
    db.parent.mkdir()
    db.write_bytes(b"not a database at all\n" * 200)
    with pytest.raises(StoreError) as caught:
        Store(db)
    message = str(caught.value)
    assert str(db) in message and "move it aside" in message
    assert db.read_bytes() == b"not a database at all\n" * 200


def test_another_programs_database_is_refused(db: Path):
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE recipes (name TEXT)")
    with pytest.raises(StoreError, match="another program"):
        Store(db)


def test_a_newer_schema_is_refused(db: Path):
    Store(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer conduitctl") as caught:
        Store(db)
    assert str(db) in str(caught.value)


def test_an_unusable_directory_is_a_clear_error(tmp_path: Path):
    (tmp_path / "state").write_text("a file where the state directory should be\n")
    with pytest.raises(StoreError, match="cannot create") as caught:
        Store(tmp_path / "state" / "history.db")
    assert str(tmp_path / "state" / "history.db") in str(caught.value)


def test_a_closed_store_raises_store_error(db: Path):
    store = Store(db)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match=str(db)):
        store.record(Event(T0, EventKind.START))


def test_bad_arguments(db: Path):
    with pytest.raises(ValueError, match="raw_retention"):
        Store(db, raw_retention=0)
    with Store(db) as store, pytest.raises(ValueError, match="limit"):
        store.events(limit=-1)


# --- events -------------------------------------------------------------------------------


def test_events_round_trip_and_filters(db: Path):
    with Store(db) as store:
        store.record(Event(T0, EventKind.DAEMON_START, message="up"))
        store.record(Event(T0 + 1, EventKind.DEATH, "fleet-1", "exited", {"exit_code": 137}))
        store.record(Event(T0 + 2, EventKind.HEALTH, "fleet-2", "", {"healthy": False}))
        store.record(Event(T0 + 3, EventKind.RESTART, "fleet-1", "", {"attempt": 1}))
        store.record(Event(T0 + 4, EventKind.DEATH, "fleet-2", "", {"when": Path("/x")}))

        everything = store.events()
        assert [e.ts for e in everything] == [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4]
        assert everything[1] == Event(
            T0 + 1, EventKind.DEATH, "fleet-1", "exited", {"exit_code": 137}
        )
        assert everything[0].backend is None and everything[0].message == "up"
        assert everything[4].data == {"when": "/x"}  # not JSON: stored as its str()

        assert [e.ts for e in store.events(since=T0 + 1, until=T0 + 3)] == [T0 + 1, T0 + 2, T0 + 3]
        assert [e.ts for e in store.events(kinds={EventKind.DEATH})] == [T0 + 1, T0 + 4]
        assert [e.ts for e in store.events(backend="fleet-1")] == [T0 + 1, T0 + 3]
        assert [e.ts for e in store.events(limit=2)] == [T0 + 3, T0 + 4]  # newest, oldest first
        assert store.events(kinds=set()) == []
        assert store.events(limit=0) == []


def test_events_of_an_unknown_kind_are_skipped(db: Path):
    with Store(db) as store:
        store.record(Event(T0, EventKind.START, "fleet-1"))
        with sqlite3.connect(db) as conn:
            conn.execute(
                "INSERT INTO events (ts, kind, backend, message, data) "
                "VALUES (?, 'from_the_future', NULL, '', '{}')",
                (T0 + 1,),
            )
        assert [e.kind for e in store.events()] == [EventKind.START]


def test_summary_counts_the_last_hour_and_day(db: Path):
    now = T0 + 2 * DAY
    with Store(db) as store:
        for ts, kind, name in [
            (now - 10, EventKind.DEATH, "fleet-1"),
            (now - 20, EventKind.RESTART, "fleet-1"),
            (now - 30, EventKind.HEALTH, "fleet-1"),
            (now - 2 * HOUR, EventKind.DEATH, "fleet-1"),
            (now - 3 * HOUR, EventKind.OOM, "fleet-2"),
            (now - 2 * DAY, EventKind.DEATH, "fleet-2"),  # too old
            (now + 10, EventKind.DEATH, "fleet-2"),  # after now
            (now - 5, EventKind.FRONT_OUT, "fleet-1"),  # not counted
            (now - 5, EventKind.FRONT_DOWN, None),  # not a backend
        ]:
            store.record(Event(ts, kind, name))
        summary = store.summary(now, backends=["fleet-1", "fleet-3"])
    assert sorted(summary) == ["fleet-1", "fleet-2", "fleet-3"]
    assert summary["fleet-1"].last_hour == EventCounts(deaths=1, restarts=1, health_changes=1)
    assert summary["fleet-1"].last_day == EventCounts(deaths=2, restarts=1, health_changes=1)
    assert summary["fleet-2"].last_hour == EventCounts()
    assert summary["fleet-2"].last_day == EventCounts(ooms=1)
    assert summary["fleet-3"].last_day == EventCounts()


# --- samples ------------------------------------------------------------------------------


def test_raw_history_of_every_series(db: Path):
    with Store(db) as store:
        store.record_tick(make_tick(T0, cpu=10.0, up=100.0))
        store.record_tick(make_tick(T0 + 1, cpu=20.0, up=200.0))
        points = store.history(resolution="raw")
        assert [(p.ts, p.series) for p in points] == [
            (T0, "fleet-1"),
            (T0, "fleet-2"),
            (T0, "host"),
            (T0, "front"),
            (T0 + 1, "fleet-1"),
            (T0 + 1, "fleet-2"),
            (T0 + 1, "host"),
            (T0 + 1, "front"),
        ]
        fleet2 = points[5]
        assert fleet2.kind == "backend" and fleet2.resolution == "raw" and fleet2.samples == 1
        assert fleet2.values["cpu_percent"] == 40.0
        assert fleet2.values["running"] == 1 and fleet2.values["healthy"] == 1
        assert fleet2.values["bytes_uploaded"] == 400.0
        assert fleet2.maxima["cpu_percent"] == 40.0 and "bytes_uploaded" not in fleet2.maxima
        host = store.history(resolution="raw", backend="host")
        assert [p.values["mem_available_bytes"] for p in host] == [2 << 30, 2 << 30]
        front = store.history(resolution="raw", backend="front")
        assert front[0].values == {
            "running": 1,
            "listening": 1,
            "accept_queue_max": 3,
            "reloads": 0,
        }
        only = store.history(since=T0 + 1, until=T0 + 1, backend="fleet-1", resolution="raw")
        assert [(p.ts, p.series) for p in only] == [(T0 + 1, "fleet-1")]
        assert store.history(backend="fleet-9", resolution="raw") == []


def test_a_tick_without_backends_still_records_host_and_front(db: Path):
    with Store(db) as store:
        store.record_tick(make_tick(T0, backends=0))
        assert [p.series for p in store.history(resolution="raw")] == ["host", "front"]


def test_minutes_roll_up_when_complete_and_maintain_is_idempotent(db: Path):
    with Store(db) as store:
        # 2.5 minutes of 1 s ticks: cpu ramps within each minute, bytes count up
        for s in range(150):
            store.record_tick(make_tick(T0 + s, cpu=float(s % 60), up=float(s)))
        done = store.maintain(T0 + 150)
        assert done.minute_rows == 2 * 4  # two complete minutes x (2 backends, host, front)
        before = dump(db)
        again = store.maintain(T0 + 150)
        assert again.minute_rows == 0 and dump(db) == before

        minutes = store.history(backend="fleet-2", resolution="minute")
        assert [m.ts for m in minutes] == [T0, T0 + 60]
        first = minutes[0]
        assert first.samples == 60
        assert first.values["cpu_percent"] == pytest.approx(2 * 29.5)  # avg of 2*(0..59)
        assert first.maxima["cpu_percent"] == 2 * 59
        assert first.values["bytes_uploaded"] == 2 * 59  # the counter's last value
        assert first.values["running"] == 1 and first.maxima["connected"] == 20
        host = store.history(backend="host", resolution="minute")
        assert host[1].values["cpu_percent"] == pytest.approx(29.5)

        assert store.maintain(T0 + 180).minute_rows == 4  # the third minute, now complete
        # raw rows stay for the raw retention
        assert len(store.history(backend="fleet-1", resolution="raw")) == 150


def test_hours_retention_and_the_auto_resolution(db: Path):
    clock = [T0]
    with Store(db, clock=lambda: clock[0]) as store:
        # 3 hours of ticks every 10 s, maintain every minute as the daemon does
        step = 10
        for s in range(0, 3 * 3600, step):
            store.record_tick(make_tick(T0 + s, cpu=1.0 + (s // 3600), up=float(s)))
            if s % 60 == 50:
                store.maintain(T0 + s + step)
        now = T0 + 3 * 3600
        store.maintain(now)
        clock[0] = now
        raw = store.history(backend="fleet-1", resolution="raw")
        assert raw and min(p.ts for p in raw) >= now - HOUR
        minutes = store.history(backend="fleet-1", resolution="minute")
        assert len(minutes) == 180 and all(m.samples == 6 for m in minutes)
        hours = store.history(backend="fleet-1", resolution="hour")
        # T0 lies 840 s into the hour starting at 1_699_999_200; the fourth hour is not over
        assert [(h.ts, h.samples) for h in hours] == [
            (1_699_999_200.0, 276),
            (1_700_002_800.0, 360),
            (1_700_006_400.0, 360),
        ]
        second = hours[1]  # 84 samples of cpu 1, then 276 of cpu 2 (backend 1)
        assert second.values["cpu_percent"] == pytest.approx((84 * 1 + 276 * 2) / 360)
        assert second.maxima["cpu_percent"] == 2
        assert second.values["bytes_uploaded"] == 6350  # the last tick in the hour: s = 6350

        assert {p.resolution for p in store.history(since=now - 600)} == {"raw"}
        assert {p.resolution for p in store.history(since=now - 2 * HOUR)} == {"minute"}
        assert {p.resolution for p in store.history(since=now - 8 * DAY)} == {"hour"}
        assert {p.resolution for p in store.history()} == {"hour"}

        store.record(Event(T0, EventKind.START, "fleet-1"))
        later = store.maintain(now + 8 * DAY)
        assert later.deleted_minute == 180 * 4 and later.deleted_raw > 0
        assert store.history(resolution="minute") == []
        assert store.history(resolution="raw") == []
        # the fourth hour has ended by now: rolled up before its minutes went
        assert later.hour_rows == 4
        after = store.history(backend="fleet-1", resolution="hour")
        assert after[:3] == hours and (after[3].ts, after[3].samples) == (1_700_010_000.0, 84)
        assert store.events() != []
        gone = store.maintain(now + 91 * DAY)
        assert gone.deleted_hour == 4 * 4 and gone.deleted_events == 1
        assert store.history(resolution="hour") == [] and store.events() == []


def test_rollups_resume_after_the_clock_goes_back(db: Path):
    with Store(db) as store:
        store.record_tick(make_tick(T0 + DAY))
        store.maintain(T0 + DAY + 60)  # a clock a day ahead, then corrected
        for s in range(60):
            store.record_tick(make_tick(T0 + s))
        assert store.maintain(T0 + 60).minute_rows == 4
        assert [m.ts for m in store.history(backend="host", resolution="minute")] == [
            T0,
            T0 + DAY,
        ]


# --- concurrency --------------------------------------------------------------------------

READER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from conduitctl.store import Store

    seen, reads = [], 0
    with Store(Path(sys.argv[1]), busy_timeout=5.0) as store:
        print("ready", flush=True)
        deadline = time.monotonic() + float(sys.argv[2])
        while time.monotonic() < deadline:
            seen.append(len(store.history(backend="fleet-1", resolution="raw")))
            store.events(limit=10_000)
            store.summary(time.time())
            reads += 1
    print(reads, min(seen), max(seen), seen == sorted(seen), flush=True)
    """
)


def test_a_reader_in_another_process_reads_while_the_daemon_writes(db: Path):
    with Store(db) as store:
        store.record_tick(make_tick(T0))
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(db), "1.0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"
        s = 1
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline:
            store.record_tick(make_tick(T0 + s))
            store.record(Event(T0 + s, EventKind.HEALTH, "fleet-1", data={"healthy": True}))
            if s % 60 == 0:
                store.maintain(T0 + s)
            s += 1
            time.sleep(0.001)
        out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    reads, low, high, ordered = out.split()
    assert int(reads) > 5 and int(high) > int(low) and ordered == "True"  # it saw the writes
    assert "locked" not in err


def test_a_long_read_does_not_block_the_writer(db: Path):
    with Store(db, busy_timeout=0.5) as store:
        store.record_tick(make_tick(T0))
        reader = sqlite3.connect(db, isolation_level=None)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM host_samples").fetchone()[0] == 1
        for s in range(1, 50):
            store.record_tick(make_tick(T0 + s))
        store.maintain(T0 + 60)
        # the reader's snapshot is stable; a new one sees everything
        assert reader.execute("SELECT count(*) FROM host_samples").fetchone()[0] == 1
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM host_samples WHERE res = 0").fetchone()[0] == 50
        reader.close()


def test_a_reader_opens_while_the_writer_is_in_a_transaction(db: Path):
    Store(db).close()
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO meta (key, value) VALUES ('x', 1)")
    try:
        started = time.monotonic()
        with Store(db, busy_timeout=2.0) as reader:
            assert reader.events() == []
        assert time.monotonic() - started < 1.0  # did not wait for the write lock
    finally:
        writer.execute("ROLLBACK")
        writer.close()


# --- batching -----------------------------------------------------------------------------


def raw_ticks(path: Path) -> int:
    with Store(path) as reader:
        return len({p.ts for p in reader.history(resolution="raw", backend="host")})


def test_ticks_are_batched_then_written_together(tmp_path: Path):
    path = tmp_path / "history.db"
    with Store(path, flush_every=10) as store:
        for s in range(10):
            store.record_tick(make_tick(T0 + s))
        assert raw_ticks(path) == 0  # another process sees nothing yet
        store.record_tick(make_tick(T0 + 10))  # the oldest is 10 s old: all of them go
        assert raw_ticks(path) == 11
        store.record_tick(make_tick(T0 + 11))
        store.flush()
        assert raw_ticks(path) == 12
        store.record_tick(make_tick(T0 + 12))
        assert len({p.ts for p in store.history(resolution="raw", backend="host")}) == 13
        store.record_tick(make_tick(T0 + 13))
        store.maintain(T0 + 120)  # rolls up what is buffered too
        assert count(path, "SELECT count(*) FROM host_samples WHERE res = 60") == 1
        store.record_tick(make_tick(T0 + 14))
    assert raw_ticks(path) == 15  # close writes the rest


def test_batching_writes_a_fraction_of_the_pages(tmp_path: Path):
    """The reason for batching: WAL frames written per tick, one transaction each vs 10 s."""

    def wal_frames(flush_every: float) -> int:
        path = tmp_path / f"h{flush_every:g}.db"
        with Store(path, flush_every=flush_every) as store:
            for s in range(100):
                store.record_tick(make_tick(T0 + s, backends=8))
            store.flush()
            conn = sqlite3.connect(path)
            frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
            conn.close()
        return int(frames)

    every_tick, batched = wal_frames(0), wal_frames(10)
    print(f"WAL frames for 100 ticks of 8 backends: {every_tick} one by one, {batched} batched")
    assert batched * 3 < every_tick, (every_tick, batched)


# --- measurement --------------------------------------------------------------------------


@pytest.mark.slow
def test_measure_tick_cost_and_a_day_of_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """8 backends: the median record_tick over 1,000 ticks, then 24 h of 1 s ticks with
    maintain() every minute (injected timestamps) and the database's size."""
    path = tmp_path / "history.db"
    ticks = [make_tick(T0 + s, backends=8, cpu=float(s % 50), up=float(s)) for s in range(1000)]
    with Store(path) as store:
        costs = []
        for tick in ticks:
            started = time.perf_counter()
            store.record_tick(tick)
            costs.append(time.perf_counter() - started)
    median_us = statistics.median(costs) * 1e6
    p99_us = sorted(costs)[int(len(costs) * 0.99)] * 1e6

    path.unlink()
    for extra in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        extra.unlink(missing_ok=True)
    maintain_costs = []
    started = time.perf_counter()
    with Store(path) as store:
        for s in range(int(DAY)):
            store.record_tick(make_tick(T0 + s, backends=8, cpu=float(s % 50), up=float(s)))
            if s % 60 == 59:
                begun = time.perf_counter()
                store.maintain(T0 + s + 1)
                maintain_costs.append(time.perf_counter() - begun)
        wal = Path(f"{path}-wal").stat().st_size
        size_open = path.stat().st_size
    elapsed = time.perf_counter() - started
    size = path.stat().st_size  # after close: the WAL is checkpointed and removed
    rows = {
        res: count(path, f"SELECT count(*) FROM backend_samples WHERE res = {res}")
        for res in (0, 60, 3600)
    }
    with capsys.disabled():
        print(
            f"\nrecord_tick, 8 backends: median {median_us:.0f} us, p99 {p99_us:.0f} us"
            f"\n24 h at 1 s x 8 backends: {size / 1e6:.2f} MB after close "
            f"({size_open / 1e6:.2f} MB + {wal / 1e6:.2f} MB WAL while open); "
            f"backend rows raw/minute/hour {rows[0]}/{rows[60]}/{rows[3600]}; "
            f"maintain median {statistics.median(maintain_costs) * 1e3:.1f} ms, "
            f"max {max(maintain_costs) * 1e3:.1f} ms; simulated in {elapsed:.0f} s"
        )
    assert median_us < 2000  # 0.2 % of one core per 1 s tick
    assert rows[0] == 8 * 3600 and rows[60] == 8 * 24 * 60 and rows[3600] == 8 * 24
    assert size < 20e6

"""The history's pure helpers: tick to rows, bucketing, aggregation, resolution choice."""

from __future__ import annotations

import dataclasses

import pytest

from conduitctl.observe.model import BackendObservation, FrontObservation, HostObservation
from conduitctl.store import (
    BACKEND_METRICS,
    FRONT_METRICS,
    HOST_METRICS,
    BackendSummary,
    Bucket,
    EventCounts,
    HistoryPoint,
    Metric,
    backend_values,
    bucket_start,
    front_values,
    host_values,
    pick_resolution,
    rollup,
    rollup_series,
)

GAUGE_COUNTER = (Metric("cpu"), Metric("bytes", counter=True))
HOUR = 3600.0
DAY = 86400.0


def raw(ts: float, cpu: float | None, counted: float | None) -> Bucket:
    return Bucket(ts=ts, n=1, values=(cpu, counted), maxima=(None, None))


@pytest.mark.parametrize(
    ("ts", "width", "start"),
    [
        (0.0, 60.0, 0.0),
        (59.999, 60.0, 0.0),
        (60.0, 60.0, 60.0),
        (1_700_000_039.5, 60.0, 1_699_999_980.0),
        (1_700_000_039.5, 3600.0, 1_699_999_200.0),
        (-0.5, 60.0, -60.0),
    ],
)
def test_bucket_start(ts: float, width: float, start: float):
    assert bucket_start(ts, width) == start


def test_rollup_of_raw_samples_averages_gauges_and_keeps_the_last_counter():
    rows = [raw(0, 10.0, 100.0), raw(1, 30.0, 150.0), raw(2, 20.0, 170.0)]
    bucket = rollup(rows, GAUGE_COUNTER, ts=0.0)
    assert bucket == Bucket(ts=0.0, n=3, values=(20.0, 170.0), maxima=(30.0, None))


def test_rollup_skips_missing_values():
    rows = [raw(0, None, 100.0), raw(1, 40.0, None), raw(2, None, None)]
    bucket = rollup(rows, GAUGE_COUNTER, ts=0.0)
    # the gauge averages over the one sample that had it; the counter's last known value
    assert bucket.values == (40.0, 100.0)
    assert bucket.maxima == (40.0, None)
    assert bucket.n == 3


def test_rollup_of_nothing_observed_is_none():
    bucket = rollup([raw(0, None, None)], GAUGE_COUNTER, ts=0.0)
    assert bucket.values == (None, None) and bucket.maxima == (None, None)
    empty = rollup([], GAUGE_COUNTER, ts=0.0)
    assert empty.n == 0 and empty.values == (None, None)


def test_rollup_of_aggregates_weights_by_sample_count_and_keeps_their_maxima():
    minutes = [
        Bucket(ts=0, n=60, values=(10.0, 500.0), maxima=(90.0, None)),
        Bucket(ts=60, n=20, values=(50.0, 700.0), maxima=(60.0, None)),
    ]
    hour = rollup(minutes, GAUGE_COUNTER, ts=0.0)
    assert hour.n == 80
    assert hour.values == (pytest.approx((10 * 60 + 50 * 20) / 80), 700.0)
    assert hour.maxima == (90.0, None)


def test_two_level_rollup_equals_one_level_when_nothing_is_missing():
    samples = [raw(float(t), float(t % 7), float(t)) for t in range(0, 7200, 5)]
    minutes = rollup_series(samples, GAUGE_COUNTER, 60.0)
    hours_via_minutes = rollup_series(minutes, GAUGE_COUNTER, 3600.0)
    hours_direct = rollup_series(samples, GAUGE_COUNTER, 3600.0)
    assert [h.ts for h in hours_via_minutes] == [0.0, 3600.0]
    for via, direct in zip(hours_via_minutes, hours_direct, strict=True):
        assert via.n == direct.n == 720
        assert via.values[0] == pytest.approx(direct.values[0])
        assert via.values[1] == direct.values[1]
        assert via.maxima == direct.maxima


def test_rollup_series_groups_by_bucket():
    samples = [raw(t, 1.0, t) for t in (0.0, 59.0, 60.0, 125.0, 179.9)]
    minutes = rollup_series(samples, GAUGE_COUNTER, 60.0)
    assert [(m.ts, m.n, m.values[1]) for m in minutes] == [
        (0.0, 2, 59.0),
        (60.0, 1, 60.0),
        (120.0, 2, 179.9),
    ]


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (1000.0, 1000.0, "raw"),
        (0.0, HOUR, "raw"),
        (0.0, HOUR + 1, "minute"),
        (0.0, 7 * DAY, "minute"),
        (0.0, 7 * DAY + 1, "hour"),
        (None, 10.0, "hour"),
    ],
)
def test_pick_resolution(since: float | None, until: float, expected: str):
    assert pick_resolution(since, until) == expected


def test_pick_resolution_follows_the_configured_retention():
    assert pick_resolution(0.0, 2 * HOUR, raw_retention=2 * HOUR) == "raw"
    assert pick_resolution(0.0, 2 * DAY, minute_retention=DAY) == "hour"


def test_metric_names_are_fields_of_the_observations_and_unique():
    backend_fields = {f.name for f in dataclasses.fields(BackendObservation)}
    host_fields = {f.name for f in dataclasses.fields(HostObservation)}
    assert {m.name for m in BACKEND_METRICS} <= backend_fields
    assert {m.name for m in HOST_METRICS} <= host_fields
    for metrics in (BACKEND_METRICS, HOST_METRICS, FRONT_METRICS):
        assert len({m.name for m in metrics}) == len(metrics)


def test_backend_values_follow_the_metric_order():
    backend = BackendObservation(
        name="c-1",
        index=1,
        running=True,
        healthy=None,
        in_front=False,
        restarts=2,
        oom_kills=1,
        connected=5,
        connecting=1,
        bytes_uploaded=1e9,
        bytes_downloaded=2e9,
        cpu_percent=12.5,
        rss_bytes=50 << 20,
        max_clients=200,
    )
    values = dict(zip([m.name for m in BACKEND_METRICS], backend_values(backend), strict=True))
    assert values == {
        "running": True,
        "healthy": None,
        "in_front": False,
        "connected": 5,
        "connecting": 1,
        "cpu_percent": 12.5,
        "rss_bytes": 50 << 20,
        "max_clients": 200,
        "restarts": 2,
        "oom_kills": 1,
        "bytes_uploaded": 1e9,
        "bytes_downloaded": 2e9,
    }


def test_host_and_front_values():
    host = HostObservation(
        mem_total_bytes=4 << 30,
        mem_available_bytes=1 << 30,
        cpu_percent=55.0,
        nic="eth0",
        nic_rx_mbps=120.0,
        nic_tx_mbps=None,
    )
    assert host_values(host) == (4 << 30, 1 << 30, 55.0, 120.0, None)
    front = FrontObservation(
        kind="nginx", running=True, listening=False, reloads=3, accept_queue={"a": 2, "b": 9}
    )
    assert front_values(front) == (True, False, 9, 3)
    assert front_values(FrontObservation(kind="none", running=False, listening=False)) == (
        False,
        False,
        None,
        0,
    )


def test_history_point_and_summary_to_dict():
    point = HistoryPoint(
        ts=60.0,
        series="host",
        kind="host",
        resolution="minute",
        samples=60,
        values={"cpu_percent": 12.5},
        maxima={"cpu_percent": 40.0},
    )
    assert point.to_dict() == {
        "ts": 60.0,
        "series": "host",
        "kind": "host",
        "resolution": "minute",
        "samples": 60,
        "values": {"cpu_percent": 12.5},
        "max": {"cpu_percent": 40.0},
    }
    summary = BackendSummary("c-1", EventCounts(deaths=1), EventCounts(deaths=2, restarts=1))
    assert summary.to_dict() == {
        "backend": "c-1",
        "last_hour": {"deaths": 1, "ooms": 0, "restarts": 0, "health_changes": 0},
        "last_day": {"deaths": 2, "ooms": 0, "restarts": 1, "health_changes": 0},
    }


def test_a_flapping_backend_cannot_fill_the_disk_with_events(tmp_path):
    from conduitctl.events import Event, EventKind
    from conduitctl.store import Store

    hour = 3600.0 * 500_000
    with Store(tmp_path / "h.db", events_per_backend_hour=5) as store:
        kept = [store.record(Event(hour + i, EventKind.DEATH, "c-1", "died")) for i in range(8)]
        assert kept == [True] * 5 + [False] * 3
        assert store.record(Event(hour + 9, EventKind.CRASH_LOOP, "c-1", "loop"))  # never capped
        assert store.record(Event(hour + 9, EventKind.DEATH, "c-2", "died"))  # its own count
        assert store.record(Event(hour + 3600, EventKind.DEATH, "c-1", "died"))  # a new hour
        kinds = [(e.backend, e.kind.value) for e in store.events(since=0)]
    assert kinds.count(("c-1", "death")) == 6 and ("c-1", "crash_loop") in kinds

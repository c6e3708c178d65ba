"""The chaos drill's pure parts: validation, victims, nft rules, fleet health, the report."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from conduitctl.drills.chaos import (
    FRONT,
    SCENARIOS,
    TIMED,
    Cleanups,
    chaos_tables,
    check_fleet,
    fleet_health,
    loss_ports,
    memory_pressure_bytes,
    nft_ruleset,
    nft_table_name,
    pick_victims,
    resource_summary,
    stale_tables,
    summarize,
    validate,
    victim_count,
    victim_times,
)
from conduitctl.drills.loadtest import ClientResult, LoadSpec, Outcome, build_report
from conduitctl.errors import BadInput, ConduitctlError
from conduitctl.events import Event, EventKind
from conduitctl.settings import Settings, settings_from_dict
from conduitctl.store import HistoryPoint

T = 1_000_000.0  # the fault, unix seconds


def ev(dt: float, kind: EventKind, backend: str | None = None, **data: Any) -> Event:
    return Event(ts=T + dt, kind=kind, backend=backend, message=f"{kind} {backend}", data=data)


def fleet(**sections: dict[str, Any]) -> Settings:
    data: dict[str, Any] = {
        "cluster": {"name": "c", "containers": 4, "runtime": "process"},
        "workload": {"profile": "sim"},
        "front": {"kind": "nginx", "listeners": ["tcp:127.0.0.1:443"]},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return settings_from_dict(data)


def load_report(ok: int = 0, failed: dict[str, int] | None = None, dropped: int = 0) -> Any:
    spec = LoadSpec(host="127.0.0.1", port=443, clients=10, duration_s=5)
    results = [ClientResult(Outcome.OK, backend="c-1") for _ in range(ok)]
    results += [ClientResult(Outcome.DROPPED, "eof", backend="c-2") for _ in range(dropped)]
    for reason, n in (failed or {}).items():
        results += [ClientResult(Outcome.FAILED, reason) for _ in range(n)]
    return build_report(spec, results, duration_s=5, peak_open=ok + dropped)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("scenario", "load", "duration", "fault_s", "needle"),
    [
        ("explode", 10, 8, None, "choose one of: kill, kill-many"),
        ("kill", -1, 8, None, "--load"),
        ("kill", 10, 1, None, "--duration must be at least"),
        ("kill", 10, float("nan"), None, "--duration"),
        ("loss", 10, 8, 0, "--fault-seconds"),
    ],
)
def test_validate_refuses_bad_arguments_naming_the_flag(scenario, load, duration, fault_s, needle):
    with pytest.raises(BadInput, match=needle):
        validate(scenario, load, duration, fault_s)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_validate_accepts_every_scenario(scenario):
    validate(scenario, 0, 8)
    validate(scenario, 300, 8, 3)


def test_timed_scenarios_are_the_host_wide_ones():
    assert set(TIMED) == {"loss", "cpu", "memory"}
    assert set(SCENARIOS) >= TIMED


@pytest.mark.parametrize(
    ("scenario", "settings", "load", "needle"),
    [
        ("kill", {"front": {"kind": "none", "listeners": []}}, 10, "through the front"),
        ("front-restart", {"front": {"kind": "none", "listeners": []}}, 0, "runs no front"),
        ("kill", {"front": {"listeners": ["udp:127.0.0.1:443"]}}, 10, "TCP front listener"),
        ("kill-many", {"cluster": {"containers": 2}}, 10, "at least 3 backends"),
        ("hang", {"workload": {"profile": "generic", "image": "x:1"}}, 10, "sim profile"),
        ("oom", {"workload": {"profile": "generic", "image": "x:1"}}, 10, "cannot be made to leak"),
    ],
)
def test_check_fleet_refuses_what_the_fleet_cannot_run(scenario, settings, load, needle):
    with pytest.raises(BadInput, match=needle):
        check_fleet(scenario, fleet(**settings), load)


def test_check_fleet_accepts_what_fits():
    check_fleet("kill", fleet(), 300)
    check_fleet("kill-many", fleet(cluster={"containers": 3}), 300)
    check_fleet("cpu", fleet(front={"kind": "none", "listeners": []}), 0)  # no load, no front
    check_fleet("oom", fleet(), 100)  # any sim fleet: the victim is recreated leaking
    check_fleet("oom", fleet(cluster={"runtime": "docker"}), 100)


@pytest.mark.parametrize(
    ("scenario", "backends", "expected"),
    [
        ("kill", 4, 1),
        ("hang", 8, 1),
        ("kill-many", 3, 2),
        ("kill-many", 4, 2),
        ("kill-many", 8, 2),
        ("kill-many", 9, 3),
        ("kill-many", 16, 4),
        ("kill-many", 2, 1),  # never all of them
        ("front-restart", 4, 0),
        ("loss", 4, 0),
        ("oom", 4, 1),
    ],
)
def test_victim_count(scenario, backends, expected):
    assert victim_count(scenario, backends) == expected


def test_pick_victims_is_seeded_distinct_and_in_fleet_order():
    names = [f"c-{i}" for i in range(1, 9)]
    a = pick_victims(names, 3, random.Random(7))
    assert a == pick_victims(names, 3, random.Random(7))
    assert len(set(a)) == 3 and a == sorted(a, key=names.index)
    seen = {tuple(pick_victims(names, 1, random.Random(seed))) for seed in range(40)}
    assert len(seen) > 3  # random, not always the first


def test_pick_victims_refuses_more_than_there_are():
    with pytest.raises(ConduitctlError, match="needs 2 healthy backends and only 1"):
        pick_victims(["c-1"], 2, random.Random(0))


# --------------------------------------------------------------------------- nftables


def test_nft_ruleset_drops_a_share_of_loopback_packets_on_the_fleet_ports_only():
    text = nft_ruleset("conduitctl_chaos_12_ab", [28005, 28004, 28004], 10, expires_s=4.2)
    assert text.startswith("table inet conduitctl_chaos_12_ab {")
    assert "elements = { 28004 timeout 5s, 28005 timeout 5s }" in text  # sorted, unique
    assert "type filter hook output priority 0; policy accept;" in text
    rules = [line.strip() for line in text.splitlines() if line.strip().startswith("ip ")]
    assert len(rules) == 2
    for rule in rules:
        assert rule.startswith("ip saddr 127.0.0.1 ip daddr 127.0.0.1 meta l4proto { tcp, udp }")
        assert rule.endswith("numgen random mod 10000 < 1000 drop")
    assert "th dport @ports" in rules[0] and "th sport @ports" in rules[1]
    assert text.count("{") == text.count("}")


@pytest.mark.parametrize(("percent", "share"), [(10, 1000), (0.5, 50), (100, 10000)])
def test_nft_ruleset_percent_in_basis_points(percent, share):
    assert f"mod 10000 < {share} drop" in nft_ruleset("t", [1], percent, expires_s=1)


@pytest.mark.parametrize(
    ("ports", "percent", "expires"),
    [([], 10, 5), ([0], 10, 5), ([70000], 10, 5), ([1], 0, 5), ([1], 101, 5), ([1], 10, 0)],
)
def test_nft_ruleset_refuses_nonsense(ports, percent, expires):
    with pytest.raises(ValueError):
        nft_ruleset("t", ports, percent, expires_s=expires)


def test_nft_ruleset_on_another_loopback_address():
    assert "ip saddr 127.0.0.2 ip daddr 127.0.0.2" in nft_ruleset("t", [1], 10, 1, "127.0.0.2")


def test_chaos_tables_and_stale_ones():
    listing = (
        "table inet filter\n"
        f"table inet {nft_table_name(100, 'aa11')}\n"
        f"table inet {nft_table_name(200, 'bb22')}\n"
        "table ip conduitctl_chaos_300_cc33\n"  # not ours: another family
        "table inet conduitctl_chaos_x\n"
    )
    assert chaos_tables(listing) == ["conduitctl_chaos_100_aa11", "conduitctl_chaos_200_bb22"]
    assert stale_tables(listing, alive=lambda pid: pid == 200) == ["conduitctl_chaos_100_aa11"]
    assert stale_tables("", alive=lambda pid: False) == []


def test_loss_ports_are_the_backends_client_ports():
    s = fleet(workload={"listen_port_base": 28000, "metrics_port_base": 29100})
    assert loss_ports(s) == [28000, 28001, 28002, 28003]
    conduit = settings_from_dict(
        {"cluster": {"containers": 2}, "workload": {"metrics_port_base": 29100}}
    )
    assert loss_ports(conduit) == [29100, 29101]  # listens on nothing: its metrics ports


@pytest.mark.parametrize(
    ("available", "expected"),
    [(0, 0), (1000, 250), (2 * 1024**3, 512 * 1024**2), (64 * 1024**3, 1024**3)],
)
def test_memory_pressure_is_a_quarter_of_available_at_most_1gib(available, expected):
    assert memory_pressure_bytes(available) == expected


# --------------------------------------------------------------------------- fleet health


def point(ts: float, series: str, kind: str = "backend", **values: float | None) -> HistoryPoint:
    kind_: Any = kind
    return HistoryPoint(
        ts=ts, series=series, kind=kind_, resolution="raw", samples=1, values=values
    )


def healthy_tick(ts: float, names: list[str]) -> list[HistoryPoint]:
    out = [point(ts, n, running=1, healthy=1, in_front=1) for n in names]
    return [*out, point(ts, "front", "front", running=1, listening=1)]


def test_fleet_health_reads_the_newest_tick():
    names = ["c-1", "c-2"]
    old = [point(1, "c-1", running=0, healthy=0, in_front=0)]
    verdict = fleet_health([*old, *healthy_tick(2, names)], names, front=True)
    assert verdict is not None and verdict.ok and verdict.ts == 2
    assert fleet_health([], names, front=True) is None


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"running": 0, "healthy": 0, "in_front": 0}, "c-2 not running"),
        ({"running": 1, "healthy": None, "in_front": 1}, "c-2 unprobed"),
        ({"running": 1, "healthy": 0, "in_front": 1}, "c-2 unhealthy"),
        ({"running": 1, "healthy": 1, "in_front": 0}, "c-2 out of the front"),
    ],
)
def test_fleet_health_names_each_problem(values, problem):
    tick = [
        point(5, "c-1", running=1, healthy=1, in_front=1),
        point(5, "c-2", **values),
        point(5, "front", "front", running=1, listening=1),
    ]
    verdict = fleet_health(tick, ["c-1", "c-2"], front=True)
    assert verdict is not None and not verdict.ok and verdict.problems == (problem,)


def test_fleet_health_front_and_missing_backends():
    tick = [
        point(5, "c-1", running=1, healthy=1, in_front=0),
        point(5, "front", "front", running=1, listening=0),
    ]
    verdict = fleet_health(tick, ["c-1", "c-2"], front=True)
    assert verdict is not None
    assert verdict.problems == ("c-1 out of the front", "c-2 not recorded", "front not listening")
    no_front = fleet_health(tick[:1], ["c-1"], front=False)  # in_front does not matter
    assert no_front is not None and no_front.ok


def test_resource_summary_over_the_fault_window():
    points = [
        point(0, "c-1", cpu_percent=99.0, rss_bytes=1),  # before the window
        point(1, "c-1", cpu_percent=10.0, rss_bytes=100),
        point(2, "c-1", cpu_percent=30.0, rss_bytes=300),
        point(2, "c-2", cpu_percent=None, rss_bytes=None),
        point(1, "host", "host", cpu_percent=50.0, mem_available_bytes=900),
        point(2, "host", "host", cpu_percent=70.0, mem_available_bytes=800),
    ]
    summary = resource_summary(points, since=1, until=2)
    assert summary["backend_cpu_percent"] == {
        "c-1": {"avg": 20.0, "max": 30.0},
        "c-2": {"avg": None, "max": None},
    }
    assert summary["backend_rss_max_bytes"] == {"c-1": 300, "c-2": None}
    assert summary["host_cpu_percent"] == {"avg": 60.0, "max": 70.0}
    assert summary["host_mem_available_min_bytes"] == 800


# --------------------------------------------------------------------------- the report

KILL = [
    ev(-5, EventKind.RESTART, "c-2"),  # an earlier drill: not counted
    ev(-5, EventKind.DEATH, "c-2"),
    ev(0.004, EventKind.DEATH, "c-2", exit_code=137),
    ev(0.02, EventKind.FRONT_OUT, "c-2"),
    ev(0.021, EventKind.RESTART, "c-2", attempt=1),
    ev(0.9, EventKind.HEALTH, "c-2", healthy=True),
    ev(0.91, EventKind.FRONT_IN, "c-2"),
]


def test_summarize_a_kill():
    report = summarize(
        KILL, T, ["c-2"], load_report(ok=5, dropped=2), scenario="kill", fleet_healthy_at=T + 1.2
    )
    assert report.recovered
    assert report.time_to_detect_s == pytest.approx(0.004)
    assert report.time_to_front_out_s == pytest.approx(0.02)
    assert report.time_to_recover_s == pytest.approx(0.91)
    assert report.fleet_healthy_s == pytest.approx(1.2)
    (victim,) = report.per_victim
    assert victim.detected_by == "death" and victim.restarts == 1
    assert report.restarts == 1 and report.restarts_by_backend == {"c-2": 1}
    assert report.collateral == () and report.front_restarts == 0
    assert report.connections_failed == 0 and report.sessions_dropped == 2
    assert report.dropped_by_reason == {"eof": 2}


def test_summarize_kill_many_is_as_slow_as_the_slowest_and_fails_when_one_stays_out():
    events = [
        *KILL,
        ev(0.01, EventKind.DEATH, "c-3"),
        ev(0.03, EventKind.FRONT_OUT, "c-3"),
        ev(0.4, EventKind.RESTART, "c-3"),
    ]
    stuck = summarize(events, T, ["c-2", "c-3"], None, fleet_healthy_at=None)
    assert not stuck.recovered
    assert stuck.time_to_detect_s == pytest.approx(0.01)
    assert stuck.time_to_front_out_s == pytest.approx(0.03)
    assert stuck.time_to_recover_s is None  # one victim never came back
    back = [*events, ev(1.5, EventKind.FRONT_IN, "c-3")]
    done = summarize(back, T, ["c-2", "c-3"], None, fleet_healthy_at=T + 2)
    assert done.recovered and done.time_to_recover_s == pytest.approx(1.5)
    assert done.restarts == 2
    # The victims came back but the supervisor's tick never showed the whole fleet healthy.
    assert not summarize(back, T, ["c-2", "c-3"], None, fleet_healthy_at=None).recovered


def test_summarize_a_hang_is_detected_by_probes():
    events = [
        ev(0.5, EventKind.HEALTH, "c-1", healthy=True),  # a flap that is not a detection
        ev(1.3, EventKind.HEALTH, "c-1", healthy=False, reason="timeout"),
        ev(1.31, EventKind.FRONT_OUT, "c-1"),
        ev(1.32, EventKind.RESTART, "c-1"),
        ev(4.4, EventKind.DEATH, "c-1"),  # the restart's own stop
        ev(5.6, EventKind.FRONT_IN, "c-1"),
    ]
    report = summarize(events, T, ["c-1"], None, fleet_healthy_at=T + 6)
    (victim,) = report.per_victim
    assert victim.detected_by == "unhealthy" and victim.detect_s == pytest.approx(1.3)
    assert victim.front_out_s == pytest.approx(1.31) and victim.recover_s == pytest.approx(5.6)


def test_summarize_without_a_front_recovers_on_health():
    events = [
        ev(0.01, EventKind.DEATH, "c-1"),
        ev(0.02, EventKind.RESTART, "c-1"),
        ev(1.1, EventKind.HEALTH, "c-1", healthy=True),
    ]
    report = summarize(events, T, ["c-1"], None, front=False, fleet_healthy_at=T + 1.5)
    assert report.recovered and report.time_to_recover_s == pytest.approx(1.1)
    assert report.time_to_front_out_s is None
    # With a front, healthy alone is not back in service.
    assert not summarize(events, T, ["c-1"], None, fleet_healthy_at=T + 1.5).recovered


def test_summarize_the_front():
    events = [
        ev(0.45, EventKind.FRONT_DOWN, None),
        ev(0.47, EventKind.FRONT_RESTART, None),
        ev(0.46, EventKind.FRONT_OUT, "c-1"),  # unrelated to the front victim: collateral
    ]
    report = summarize(
        events,
        T,
        [FRONT],
        load_report(ok=3, failed={"refused": 2}),
        front_listening_at=T + 0.6,
        fleet_healthy_at=T + 1,
    )
    (front,) = report.per_victim
    assert front.detect_s == pytest.approx(0.45) and front.detected_by == "front_down"
    assert front.recover_s == pytest.approx(0.6)  # listening again, after the restart event
    assert report.front_restarts == 1 and report.time_to_front_out_s is None
    assert report.connections_failed == 2 and report.failed_by_reason == {"refused": 2}
    assert report.collateral == ("c-1",)
    not_restarted = summarize(events[:1], T, [FRONT], None, fleet_healthy_at=T + 1)
    assert not not_restarted.recovered


def test_summarize_a_timed_fault_without_victims():
    events = [
        ev(1.6, EventKind.HEALTH, "c-4", healthy=False, reason="timeout"),
        ev(1.61, EventKind.FRONT_OUT, "c-4"),
        ev(1.62, EventKind.RESTART, "c-4"),
        ev(4.5, EventKind.FRONT_IN, "c-4"),
    ]
    report = summarize(events, T, [], None, scenario="loss", fault_s=4.0, fleet_healthy_at=T + 5)
    assert report.recovered and report.fleet_healthy_s == pytest.approx(5)
    assert report.time_to_detect_s is None and report.per_victim == ()
    assert report.collateral == ("c-4",) and report.restarts == 1
    (c4,) = report.collateral_times
    assert c4.detect_s == pytest.approx(1.6) and c4.recover_s == pytest.approx(4.5)
    assert not summarize(events, T, [], None, fleet_healthy_at=None).recovered


def test_summarize_counts_alerts_since_the_start_and_notification_failures():
    events = [
        ev(-30, EventKind.ALERT_FIRED, "c-1", rule="cpu_high"),  # before the drill began
        ev(-1, EventKind.ALERT_FIRED, None, rule="host_memory_low", severity="warning"),
        ev(0.5, EventKind.ALERT_FIRED, "c-2", rule="oom", severity="warning", inhibited=False),
        ev(0.5, EventKind.ALERT_FIRED, "c-2", rule="backend_down", inhibited=True),
        ev(0.6, EventKind.ALERT_RESOLVED, "c-2", rule="oom"),
        ev(2.0, EventKind.NOTIFY_FAILED, None, target="json://x"),
        ev(-20, EventKind.NOTIFY_FAILED, None, target="json://x"),
    ]
    report = summarize(events, T, [], None, t0=T - 2, fleet_healthy_at=T + 1)
    assert [a["rule"] for a in report.alerts_fired] == ["host_memory_low", "oom", "backend_down"]
    assert report.alerts_fired[1] == {
        "rule": "oom",
        "severity": "warning",
        "backend": "c-2",
        "at_s": 0.5,
        "inhibited": False,
        "message": "alert_fired c-2",
    }
    assert report.alerts_sent == 2  # the inhibited one was not notified
    assert report.notify_failed == 1


def test_summarize_merges_the_load_and_the_new_connections():
    report = summarize(
        KILL,
        T,
        ["c-2"],
        load_report(ok=6, dropped=3),
        new_connections=load_report(ok=4, failed={"reset": 2, "timeout": 1}, dropped=1),
        fleet_healthy_at=T + 1,
    )
    assert report.connections_attempted == 9 + 8
    assert report.connections_failed == 3
    assert report.new_connections_attempted == 8 and report.new_connections_failed == 3
    assert report.failed_by_reason == {"reset": 2, "timeout": 1}  # zeros left out
    assert report.sessions_dropped == 4 and report.dropped_by_reason == {"eof": 4}
    assert report.load is not None and report.load["attempted"] == 9
    assert report.new_connections is not None and report.new_connections["attempted"] == 8


def test_an_aborted_drill_did_not_recover():
    report = summarize(KILL, T, ["c-2"], None, fleet_healthy_at=T + 1, aborted=True)
    assert not report.recovered and report.aborted


def test_report_to_dict_is_one_json_document():
    report = summarize(
        KILL,
        T,
        ["c-2"],
        load_report(ok=2),
        scenario="kill",
        fault="SIGKILL c-2",
        fleet_healthy_at=T + 1.23456,
        notes=["n"],
    )
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["scenario"] == "kill" and doc["victims"] == ["c-2"] and doc["recovered"] is True
    assert doc["fleet_healthy_s"] == 1.235 and doc["notes"] == ["n"]
    assert doc["per_victim"][0]["name"] == "c-2"
    assert doc["load"]["attempted"] == 2 and doc["new_connections"] is None


def test_victim_times_ignore_events_before_the_fault():
    times = victim_times(KILL, T, "c-2")
    assert times.restarts == 1 and times.detect_s == pytest.approx(0.004)
    assert victim_times(KILL, T + 10, "c-2").detect_s is None


# --------------------------------------------------------------------------- cleanups


def test_cleanups_run_last_in_first_out_once_and_past_a_failure():
    done: list[str] = []
    cleanups = Cleanups()
    cleanups.add("a", lambda: done.append("a"))

    def broken() -> None:
        raise OSError("nft gone")

    cleanups.add("b", broken)
    cleanups.add("c", lambda: done.append("c"))
    assert cleanups.run() == ["b: nft gone"]
    assert done == ["c", "a"]
    assert cleanups.run() == [] and done == ["c", "a"]  # once

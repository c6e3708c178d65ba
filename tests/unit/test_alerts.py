"""The alert engine: rules from hand-built ticks, lifecycle under an injected clock,
inhibition, grouping, dedup (needs_update) and the state's JSON round trip. All pure."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from conduitctl.alerts import (
    OOM_QUIET_S,
    RULES,
    AlertState,
    AlertStatus,
    Condition,
    History,
    NotifyReason,
    RuleName,
    SentRecord,
    TransitionKind,
    active_alerts,
    conditions,
    evaluate,
    make_labels,
    mark_sent,
    needs_update,
    plan_notifications,
    step,
)
from conduitctl.events import EventKind
from conduitctl.observe.model import (
    BackendObservation,
    FrontObservation,
    HostObservation,
    Tick,
)
from conduitctl.settings import Settings, settings_from_dict

GIB = 1024**3
MIB = 1024**2
REPEAT = 4 * 3600.0


def settings(**sections: Any) -> Settings:
    data: dict[str, Any] = {"cluster": {"name": "c", "containers": 3}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return settings_from_dict(data)


FRONTED = {
    "workload": {"profile": "sim"},
    "front": {"kind": "nginx", "listeners": ["tcp:443"]},
}


def backend(i: int, **kw: Any) -> BackendObservation:
    base = BackendObservation(name=f"c-{i}", index=i, running=True, healthy=True, in_front=True)
    return replace(base, **kw)


HOST = HostObservation(mem_total_bytes=4 * GIB, mem_available_bytes=2 * GIB, cpu_percent=10.0)
NO_FRONT = FrontObservation(kind="none", running=False, listening=False)
FRONT_OK = FrontObservation(kind="nginx", running=True, listening=True)


def tick(
    ts: float = 1000.0,
    backends: tuple[BackendObservation, ...] | None = None,
    host: HostObservation = HOST,
    front: FrontObservation = NO_FRONT,
) -> Tick:
    if backends is None:
        backends = tuple(backend(i) for i in (1, 2, 3))
    return Tick(ts=ts, backends=backends, host=host, front=front)


def with_backend(i: int, **kw: Any) -> tuple[BackendObservation, ...]:
    return tuple(backend(j, **kw) if j == i else backend(j) for j in (1, 2, 3))


def found(conds: list[Condition]) -> dict[str, float | None]:
    return {c.fingerprint: c.value for c in conds}


# --- conditions: one row per rule case --------------------------------------------------------

CASES: list[tuple[str, Settings, Tick, dict[str, float | None]]] = [
    ("healthy fleet", settings(), tick(), {}),
    (
        "backend not running",
        settings(),
        tick(backends=with_backend(2, running=False, healthy=None)),
        {"backend_down{backend=c-2}": None},
    ),
    (
        "backend unhealthy",
        settings(),
        tick(backends=with_backend(1, healthy=False)),
        {"backend_down{backend=c-1}": None},
    ),
    (
        "not probed yet is not down",
        settings(),
        tick(backends=with_backend(1, healthy=None)),
        {},
    ),
    (
        "all backends down",
        settings(),
        tick(backends=tuple(backend(i, running=False) for i in (1, 2, 3))),
        {
            "backend_down{backend=c-1}": None,
            "backend_down{backend=c-2}": None,
            "backend_down{backend=c-3}": None,
            "all_backends_down": 3.0,
        },
    ),
    (
        "crash loop",
        settings(),
        tick(backends=with_backend(3, running=False, crash_looping=True, restarts=5)),
        {"backend_down{backend=c-3}": None, "crash_loop{backend=c-3}": 5.0},
    ),
    (
        "cpu over 90% of a 1 CPU limit",
        settings(),
        tick(backends=with_backend(1, cpu_percent=95.0)),
        {"cpu_high{backend=c-1}": 95.0},
    ),
    (
        "cpu under 90% of a 2 CPU override",
        settings(workload={"overrides": {2: {"cpus": 2.0}}}),
        tick(backends=with_backend(2, cpu_percent=170.0)),
        {},
    ),
    (
        "cpu over 90% of a 2 CPU override",
        settings(workload={"overrides": {2: {"cpus": 2.0}}}),
        tick(backends=with_backend(2, cpu_percent=185.0)),
        {"cpu_high{backend=c-2}": 92.5},
    ),
    (
        "process runtime: no limit, one core",
        settings(cluster={"runtime": "process"}, container={"cpus": 2.0}),
        tick(backends=with_backend(1, cpu_percent=95.0)),
        {"cpu_high{backend=c-1}": 95.0},
    ),
    (
        "cpu threshold from alerts.cpu_percent",
        settings(alerts={"cpu_percent": 50}),
        tick(backends=with_backend(1, cpu_percent=60.0)),
        {"cpu_high{backend=c-1}": 60.0},
    ),
    (
        "rss over 85% of the observed limit",
        settings(),
        tick(backends=with_backend(1, rss_bytes=460 * MIB, memory_limit_bytes=512 * MIB)),
        {"ram_high{backend=c-1}": 89.8},
    ),
    (
        "rss over 85% of the configured memory (no observed limit)",
        settings(container={"memory": "1g"}),
        tick(backends=with_backend(1, rss_bytes=900 * MIB)),
        {"ram_high{backend=c-1}": 87.9},
    ),
    (
        "rss under the threshold",
        settings(),
        tick(backends=with_backend(1, rss_bytes=400 * MIB, memory_limit_bytes=512 * MIB)),
        {},
    ),
    (
        "host memory: 10% available is under 100-85",
        settings(),
        tick(host=replace(HOST, mem_available_bytes=int(0.1 * 4 * GIB))),
        {"host_memory_low": 10.0},
    ),
    (
        "host memory: 20% available is fine",
        settings(),
        tick(host=replace(HOST, mem_available_bytes=int(0.2 * 4 * GIB))),
        {},
    ),
    (
        "nic over alerts.nic_mbps",
        settings(alerts={"nic_mbps": 100}),
        tick(host=replace(HOST, nic="eth0", nic_rx_mbps=20.0, nic_tx_mbps=150.0)),
        {"nic_high": 150.0},
    ),
    (
        "nic default: 0.8 x observed 1000 Mbit/s",
        settings(),
        tick(host=replace(HOST, nic_rx_mbps=850.0, nic_tx_mbps=10.0, nic_speed_mbps=1000.0)),
        {"nic_high": 850.0},
    ),
    (
        "nic default: under 0.8 x 1000",
        settings(),
        tick(host=replace(HOST, nic_rx_mbps=700.0, nic_tx_mbps=10.0, nic_speed_mbps=1000.0)),
        {},
    ),
    (
        "nic: host.nic_mbps wins over the kernel's speed",
        settings(host={"nic_mbps": 100}),
        tick(host=replace(HOST, nic_rx_mbps=90.0, nic_speed_mbps=1000.0)),
        {"nic_high": 90.0},
    ),
    (
        "nic: speed unknown, no threshold, no alert",
        settings(),
        tick(host=replace(HOST, nic_rx_mbps=5000.0)),
        {},
    ),
    (
        "nic half duplex: rx + tx",
        settings(host={"duplex": False}, alerts={"nic_mbps": 100}),
        tick(host=replace(HOST, nic_rx_mbps=60.0, nic_tx_mbps=60.0)),
        {"nic_high": 120.0},
    ),
    (
        "front not running",
        settings(**FRONTED),
        tick(front=replace(FRONT_OK, running=False, listening=False)),
        {"front_down": None},
    ),
    (
        "front running but not listening",
        settings(**FRONTED),
        tick(front=replace(FRONT_OK, listening=False)),
        {"front_down": None},
    ),
    ("front fine", settings(**FRONTED), tick(front=FRONT_OK), {}),
    ("no front configured: never front_down", settings(), tick(front=NO_FRONT), {}),
    (
        "accept queue at half its backlog",
        settings(**FRONTED),
        tick(
            front=replace(FRONT_OK, accept_queue={"tcp:443": 300}, accept_backlog={"tcp:443": 511})
        ),
        {"accept_queue_growing{listener=tcp:443}": 300.0},
    ),
    (
        "a small queue with no history is not growing",
        settings(**FRONTED),
        tick(front=replace(FRONT_OK, accept_queue={"tcp:443": 3}, accept_backlog={"tcp:443": 511})),
        {},
    ),
]


@pytest.mark.parametrize(
    ("settings_", "tick_", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_conditions(settings_: Settings, tick_: Tick, expected: dict[str, float | None]) -> None:
    assert found(conditions(tick_, settings_)) == expected


def test_condition_summaries_name_the_label_and_value() -> None:
    conds = conditions(tick(backends=with_backend(2, cpu_percent=95.0, running=False)), settings())
    summaries = {c.rule: c.summary for c in conds}
    assert summaries[RuleName.BACKEND_DOWN] == "backend c-2 is down: not running"
    assert "c-2" in summaries[RuleName.CPU_HIGH] and "95%" in summaries[RuleName.CPU_HIGH]


@pytest.mark.parametrize(
    ("samples", "growing"),
    [
        ((0, 2), 5),  # 0 -> 2 -> 5: grew over three ticks
        ((2, 2), 2),  # flat
        ((5, 3), 4),  # dropped in between
        ((1, 2), 0),  # empty now
    ],
)
def test_accept_queue_growth_over_ticks(samples: tuple[int, int], growing: int) -> None:
    s = settings(**FRONTED)
    history = History()
    for i, depth in enumerate(samples):
        front = replace(FRONT_OK, accept_queue={"tcp:443": depth})
        history = history.observe(tick(ts=1000.0 + i, front=front))
    now = tick(ts=1002.0, front=replace(FRONT_OK, accept_queue={"tcp:443": growing}))
    fps = found(conditions(now, s, history))
    expect = samples == (0, 2)
    assert ("accept_queue_growing{listener=tcp:443}" in fps) is expect


def test_oom_fires_on_increase_and_resolves_after_quiet() -> None:
    s = settings()
    state = AlertState()
    # first sight of a non-zero counter is a baseline, not news
    state, tr = step(state, tick(ts=0.0, backends=with_backend(1, oom_kills=2)), s)
    assert tr == []
    state, tr = step(state, tick(ts=10.0, backends=with_backend(1, oom_kills=3)), s)
    assert [(t.kind, t.alert.rule) for t in tr] == [(TransitionKind.FIRED, RuleName.OOM)]
    assert tr[0].alert.value == 1.0
    state, tr = step(state, tick(ts=20.0, backends=with_backend(1, oom_kills=5)), s)
    assert tr == [] and active_alerts(state)[0].value == 3.0  # kills in this episode
    state, tr = step(
        state, tick(ts=20.0 + OOM_QUIET_S - 1, backends=with_backend(1, oom_kills=5)), s
    )
    assert tr == []
    state, tr = step(state, tick(ts=20.0 + OOM_QUIET_S, backends=with_backend(1, oom_kills=5)), s)
    assert [(t.kind, t.alert.rule) for t in tr] == [(TransitionKind.RESOLVED, RuleName.OOM)]


def test_oom_counter_reset_counts_from_zero() -> None:
    s = settings()
    state, _ = step(AlertState(), tick(ts=0.0, backends=with_backend(1, oom_kills=4)), s)
    state, tr = step(state, tick(ts=1.0, backends=with_backend(1, oom_kills=0)), s)
    assert tr == []  # recreated: counter back to 0, no kill
    state, tr = step(state, tick(ts=2.0, backends=with_backend(1, oom_kills=1)), s)
    assert [t.alert.rule for t in tr] == [RuleName.OOM]


# --- lifecycle --------------------------------------------------------------------------------

DOWN_2 = [Condition(RuleName.BACKEND_DOWN, make_labels(backend="c-2"), None, "not running")]
FOR_S = RULES[RuleName.BACKEND_DOWN].for_s


def test_pending_then_firing_after_for_s() -> None:
    state, tr = evaluate(AlertState(), DOWN_2, now=100.0)
    assert tr == []
    assert [(a.rule, a.state) for a in active_alerts(state)] == [
        (RuleName.BACKEND_DOWN, AlertStatus.PENDING)
    ]
    state, tr = evaluate(state, DOWN_2, now=100.0 + FOR_S - 0.5)
    assert tr == []
    assert plan_notifications(state, 100.0 + FOR_S - 0.5, REPEAT) == []  # pending: silent
    state, tr = evaluate(state, DOWN_2, now=100.0 + FOR_S)
    assert [(t.kind, t.alert.fingerprint) for t in tr] == [
        (TransitionKind.FIRED, "backend_down{backend=c-2}")
    ]
    alert = active_alerts(state)[0]
    assert alert.state == AlertStatus.FIRING and alert.since == 100.0
    event = tr[0].event()
    assert event.kind == EventKind.ALERT_FIRED and event.backend == "c-2"
    assert event.data["rule"] == "backend_down"


def test_zero_for_s_fires_at_once() -> None:
    cond = [Condition(RuleName.CRASH_LOOP, make_labels(backend="c-1"), 5.0, "x")]
    _, tr = evaluate(AlertState(), cond, now=1.0)
    assert [t.kind for t in tr] == [TransitionKind.FIRED]


def test_clearing_while_pending_is_silent() -> None:
    state, _ = evaluate(AlertState(), DOWN_2, now=100.0)
    state, tr = evaluate(state, [], now=110.0)
    assert tr == [] and state.alerts == {}
    assert plan_notifications(state, 110.0, REPEAT) == []
    # and a new episode waits the full for_s again
    state, _ = evaluate(state, DOWN_2, now=120.0)
    state, tr = evaluate(state, DOWN_2, now=120.0 + FOR_S - 1)
    assert tr == []


def fire(conds: list[Condition], t0: float = 0.0) -> tuple[AlertState, float]:
    """Evaluate `conds` until every one of them fires; returns the state and the time."""
    longest = max(RULES[c.rule].for_s for c in conds)
    state, _ = evaluate(AlertState(), conds, now=t0)
    state, _ = evaluate(state, conds, now=t0 + longest)
    return state, t0 + longest


def test_resolved_notice_once() -> None:
    state, now = fire(DOWN_2)
    [n] = plan_notifications(state, now, REPEAT)
    assert n.reason == NotifyReason.FIRST and n.level == "warning"
    state = mark_sent(state, n, now)
    assert plan_notifications(state, now + 1, REPEAT) == []  # dedup

    state, tr = evaluate(state, [], now=now + 5)
    assert [t.kind for t in tr] == [TransitionKind.RESOLVED]
    assert tr[0].event().kind == EventKind.ALERT_RESOLVED
    assert active_alerts(state) == []
    [n] = plan_notifications(state, now + 5, REPEAT)
    assert n.reason == NotifyReason.RESOLVED and n.level == "resolved"
    assert n.title == "[RESOLVED] backend_down"
    assert "c-2" in n.body and "Resolved:" in n.body
    state = mark_sent(state, n, now + 5)
    assert state.alerts == {}
    assert plan_notifications(state, now + 6, REPEAT) == []
    assert plan_notifications(state, now + 6 + REPEAT, REPEAT) == []  # nothing fires: no repeat


def test_resolved_without_a_firing_notice_stays_silent() -> None:
    state, now = fire(DOWN_2)  # fired, but nothing was sent (e.g. no notifiers)
    state, tr = evaluate(state, [], now=now + 1)
    assert [t.kind for t in tr] == [TransitionKind.RESOLVED]  # still in the history
    assert state.alerts == {} and plan_notifications(state, now + 1, REPEAT) == []


def test_refiring_after_resolved_notice_is_new() -> None:
    state, now = fire(DOWN_2)
    state = mark_sent(state, plan_notifications(state, now, REPEAT)[0], now)
    state, _ = evaluate(state, [], now=now + 1)
    state = mark_sent(state, plan_notifications(state, now + 1, REPEAT)[0], now + 1)
    state, _ = evaluate(state, DOWN_2, now=now + 2)
    state, tr = evaluate(state, DOWN_2, now=now + 2 + FOR_S)
    assert [t.kind for t in tr] == [TransitionKind.FIRED]
    [n] = plan_notifications(state, now + 2 + FOR_S, REPEAT)
    assert n.reason == NotifyReason.NEW_ALERTS


# --- inhibition -------------------------------------------------------------------------------

FRONT_DOWN = [Condition(RuleName.FRONT_DOWN, (), None, "nginx not running")]
ALL_DOWN = [Condition(RuleName.ALL_BACKENDS_DOWN, (), 3.0, "0 of 3")]


def down(*names: str) -> list[Condition]:
    return [
        Condition(RuleName.BACKEND_DOWN, make_labels(backend=n), None, "not running") for n in names
    ]


def cpu(name: str) -> list[Condition]:
    return [Condition(RuleName.CPU_HIGH, make_labels(backend=name), 95.0, "95%")]


def test_front_down_mutes_per_backend_alerts() -> None:
    conds = FRONT_DOWN + down("c-1") + cpu("c-2")
    state, now = fire(conds)
    rows = {a.rule: a for a in active_alerts(state)}
    assert rows[RuleName.BACKEND_DOWN].state == AlertStatus.FIRING  # still tracked
    assert rows[RuleName.BACKEND_DOWN].inhibited and rows[RuleName.CPU_HIGH].inhibited
    assert not rows[RuleName.FRONT_DOWN].inhibited
    plan = plan_notifications(state, now, REPEAT)
    assert [n.rule for n in plan] == [RuleName.FRONT_DOWN]
    for n in plan:
        state = mark_sent(state, n, now)

    # the front comes back: the muted alerts, still firing, are notified now
    state, tr = evaluate(state, down("c-1") + cpu("c-2"), now=now + 1)
    assert [(t.kind, t.alert.rule) for t in tr] == [(TransitionKind.RESOLVED, RuleName.FRONT_DOWN)]
    plan = plan_notifications(state, now + 1, REPEAT)
    assert {n.rule: n.reason for n in plan} == {
        RuleName.FRONT_DOWN: NotifyReason.RESOLVED,
        RuleName.BACKEND_DOWN: NotifyReason.FIRST,
        RuleName.CPU_HIGH: NotifyReason.FIRST,
    }


def test_muting_a_notified_alert_sends_nothing() -> None:
    state, now = fire(down("c-1"))
    state = mark_sent(state, plan_notifications(state, now, REPEAT)[0], now)
    state, _ = fire_more(state, FRONT_DOWN + down("c-1"), now)
    plan = plan_notifications(state, now + 20, REPEAT)
    assert [n.rule for n in plan] == [RuleName.FRONT_DOWN]  # not a "resolved" for c-1


def fire_more(state: AlertState, conds: list[Condition], now: float) -> tuple[AlertState, float]:
    state, _ = evaluate(state, conds, now=now + 1)
    state, _ = evaluate(state, conds, now=now + 20)
    return state, now + 20


def test_all_backends_down_mutes_backend_down() -> None:
    state, now = fire(ALL_DOWN + down("c-1", "c-2", "c-3"))
    assert all(a.inhibited for a in active_alerts(state) if a.rule == RuleName.BACKEND_DOWN)
    plan = plan_notifications(state, now, REPEAT)
    assert [n.rule for n in plan] == [RuleName.ALL_BACKENDS_DOWN]
    assert plan[0].level == "critical"


def test_crash_loop_mutes_backend_down_of_the_same_backend_only() -> None:
    loop = [Condition(RuleName.CRASH_LOOP, make_labels(backend="c-1"), 5.0, "x")]
    state, now = fire(loop + down("c-1", "c-2"))
    muted = {a.labels["backend"] for a in active_alerts(state) if a.inhibited}
    assert muted == {"c-1"}
    plan = {n.rule: n for n in plan_notifications(state, now, REPEAT)}
    assert plan[RuleName.BACKEND_DOWN].firing == frozenset({"backend_down{backend=c-2}"})


def test_inhibition_needs_the_source_firing_not_pending() -> None:
    # all_backends_down for_s (10 s) < backend_down (30 s); at 0 s both are pending
    all_down = [Condition(RuleName.ALL_BACKENDS_DOWN, (), None, "0 of 1 healthy")]
    state, _ = evaluate(AlertState(), all_down + down("c-1"), now=0.0)
    assert not any(a.inhibited for a in active_alerts(state))


def test_front_down_fires_at_once() -> None:
    _, transitions = evaluate(AlertState(), FRONT_DOWN, now=0.0)
    assert [t.kind for t in transitions] == [TransitionKind.FIRED]


# --- grouping and dedup -----------------------------------------------------------------------


def test_three_backends_down_make_one_message() -> None:
    state, now = fire(down("c-1", "c-2", "c-3"))
    [n] = plan_notifications(state, now, REPEAT, origin="c@vps1")
    assert n.rule == RuleName.BACKEND_DOWN and n.reason == NotifyReason.FIRST
    assert n.title == "c@vps1: [FIRING:3] backend_down (warning)"
    for name in ("c-1", "c-2", "c-3"):
        assert f"backend {name} is down" in n.body
    assert len(n.firing) == 3


def test_partial_resolution_lists_both() -> None:
    state, now = fire(down("c-1", "c-2"))
    state = mark_sent(state, plan_notifications(state, now, REPEAT)[0], now)
    state, _ = evaluate(state, down("c-1"), now=now + 1)
    [n] = plan_notifications(state, now + 1, REPEAT)
    assert n.reason == NotifyReason.RESOLVED
    assert n.title == "[FIRING:1, RESOLVED:1] backend_down (warning)"
    firing, resolved = n.body.split("Resolved:")
    assert "c-1" in firing and "c-2" in resolved


def test_new_backend_in_a_firing_group() -> None:
    state, now = fire(down("c-1"))
    state = mark_sent(state, plan_notifications(state, now, REPEAT)[0], now)
    state, _ = evaluate(state, down("c-1", "c-2"), now=now + 1)
    state, _ = evaluate(state, down("c-1", "c-2"), now=now + 1 + FOR_S)
    [n] = plan_notifications(state, now + 1 + FOR_S, REPEAT)
    assert n.reason == NotifyReason.NEW_ALERTS and len(n.firing) == 2


def test_repeat_interval() -> None:
    state, now = fire(down("c-1"))
    state = mark_sent(state, plan_notifications(state, now, REPEAT)[0], now)
    state, _ = evaluate(state, down("c-1"), now=now + REPEAT - 1)
    assert plan_notifications(state, now + REPEAT - 1, REPEAT) == []
    state, _ = evaluate(state, down("c-1"), now=now + REPEAT)
    [n] = plan_notifications(state, now + REPEAT, REPEAT)
    assert n.reason == NotifyReason.REPEAT


def test_critical_groups_come_first() -> None:
    state, now = fire(cpu("c-1") + ALL_DOWN)
    assert [n.rule for n in plan_notifications(state, now, REPEAT)] == [
        RuleName.ALL_BACKENDS_DOWN,
        RuleName.CPU_HIGH,
    ]


A, B = "backend_down{backend=c-1}", "backend_down{backend=c-2}"
F = frozenset


@pytest.mark.parametrize(
    ("last", "firing", "resolved", "now", "reason"),
    [
        (None, F({A}), F(), 0.0, NotifyReason.FIRST),
        (None, F(), F(), 0.0, None),
        (None, F(), F({A}), 0.0, None),  # never told: nothing to resolve
        (SentRecord(F({A}), F(), 0.0), F({A}), F(), 10.0, None),
        (SentRecord(F({A}), F(), 0.0), F({A, B}), F(), 10.0, NotifyReason.NEW_ALERTS),
        (SentRecord(F({A, B}), F(), 0.0), F({A}), F({B}), 10.0, NotifyReason.RESOLVED),
        (SentRecord(F({A}), F(), 0.0), F(), F({A}), 10.0, NotifyReason.RESOLVED),
        (SentRecord(F({A}), F({B}), 0.0), F({A}), F({B}), 10.0, None),  # already said
        (SentRecord(F({A}), F(), 0.0), F({A}), F(), REPEAT - 1, None),
        (SentRecord(F({A}), F(), 0.0), F({A}), F(), REPEAT, NotifyReason.REPEAT),
        (SentRecord(F(), F({A}), 0.0), F(), F(), REPEAT * 2, None),  # nothing fires
        (SentRecord(F({A, B}), F(), 0.0), F({A}), F(), 10.0, None),  # B muted: no word
    ],
)
def test_needs_update(
    last: SentRecord | None,
    firing: frozenset[str],
    resolved: frozenset[str],
    now: float,
    reason: NotifyReason | None,
) -> None:
    assert needs_update(last, firing, resolved, REPEAT, now) == reason


# --- persistence ------------------------------------------------------------------------------


def test_state_round_trips_through_json() -> None:
    s = settings(**FRONTED)
    state = AlertState()
    front = replace(FRONT_OK, running=False, accept_queue={"tcp:443": 1})
    for ts in (0.0, 10.0, 40.0):
        backends = (
            backend(1, running=False),
            backend(2, oom_kills=int(ts)),
            backend(3, cpu_percent=99.0),
        )
        state, _ = step(state, tick(ts=ts, backends=backends, front=front), s)
    for n in plan_notifications(state, 40.0, REPEAT):
        state = mark_sent(state, n, 40.0)
    state, _ = evaluate(state, [], now=41.0)  # some resolved entries await their notice
    assert state.alerts and state.sent and state.history.oom and state.history.queues

    restored = AlertState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    assert restored.to_dict() == state.to_dict()


def test_from_dict_drops_unknown_rules_and_rejects_other_versions() -> None:
    state, _ = fire(down("c-1"))
    data = state.to_dict()
    data["alerts"].append({**data["alerts"][0], "rule": "retired_rule"})
    data["sent"]["retired_rule"] = {"firing": [], "resolved": [], "ts": 0.0}
    assert AlertState.from_dict(data) == state
    with pytest.raises(ValueError, match="version"):
        AlertState.from_dict({**data, "version": 99})
    with pytest.raises(ValueError, match="not valid"):
        AlertState.from_dict({"version": 1, "alerts": [{"rule": "oom"}]})


def test_active_alerts_json_rows() -> None:
    conds = down("c-1") + cpu("c-2") + ALL_DOWN
    state, _ = evaluate(AlertState(), conds, now=5.0)
    state, _ = evaluate(state, conds, now=5.0 + FOR_S)
    rows = [a.to_dict() for a in active_alerts(state)]
    assert [(r["rule"], r["state"]) for r in rows] == [
        ("all_backends_down", "firing"),
        ("backend_down", "firing"),
        ("cpu_high", "pending"),
    ]
    assert rows[1]["labels"] == {"backend": "c-1"} and rows[1]["inhibited"] is True
    json.dumps(rows)


def test_every_rule_has_a_summary_that_renders() -> None:
    labels = {"backend": make_labels(backend="c-1"), "listener": make_labels(listener="tcp:443")}
    for rule in RULES.values():
        text = rule.render(labels.get(rule.scope.value, ()), "detail")
        assert "{" not in text and "detail" in text

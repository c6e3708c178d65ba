from conduitctl.supervise.health import Health, dead, observe_probe
from conduitctl.supervise.plan import BackendView, FrontView, Kind, plan_tick
from conduitctl.supervise.restarts import (
    RestartPolicy,
    RestartState,
    declare_loop,
    delay,
    exhausted,
    may_restart,
    record_restart,
    record_stable,
)

RISE, FALL = 2, 2


def probes(state: Health, results: list[bool], start: float = 0.0) -> Health:
    for i, ok in enumerate(results):
        state = observe_probe(state, ok, rise=RISE, fall=FALL, now=start + i, reason="timeout")
    return state


def test_unknown_turns_healthy_on_first_good_probe():
    assert probes(Health(), [True]).healthy is True


def test_fall_bad_probes_make_unhealthy_and_rise_good_bring_back():
    state = probes(Health(), [True, False])
    assert state.healthy is True  # one bad probe is not enough
    state = probes(state, [False], start=2)
    assert state.healthy is False and state.since == 2 and state.reason == "timeout"
    state = probes(state, [True], start=3)
    assert state.healthy is False  # one good probe is not enough
    state = probes(state, [True], start=4)
    assert state.healthy is True and state.since == 4


def test_flapping_probe_never_moves_it():
    state = probes(Health(), [True, False, True, False, True, False, True])
    assert state.healthy is True


def test_death_is_immediate():
    state = dead(probes(Health(), [True]), now=5.0, reason="exit code 1")
    assert state.healthy is False and state.since == 5.0 and state.reason == "exit code 1"


POLICY = RestartPolicy(backoff=1, backoff_max=8, loop_restarts=4, loop_window=60, stable_after=30)


def test_backoff_doubles_and_caps():
    assert [delay(POLICY, n) for n in range(6)] == [0, 1, 2, 4, 8, 8]


def test_first_restart_immediate_then_backoff():
    state = RestartState()
    assert may_restart(state, 0)
    state = record_restart(POLICY, state, now=0)
    assert state.next_at == 1 and not may_restart(state, 0.5) and may_restart(state, 1)
    state = record_restart(POLICY, state, now=1)
    assert state.next_at == 3


def test_crash_loop_when_it_dies_again_after_n_restarts_in_window():
    state = RestartState()
    for t in (0, 1, 3):
        state = record_restart(POLICY, state, now=t)
    assert not exhausted(POLICY, state, now=7)  # 3 restarts: one more is allowed
    state = record_restart(POLICY, state, now=7)
    assert exhausted(POLICY, state, now=9)  # died again after the 4th
    looping = declare_loop(state)
    assert not may_restart(looping, state.next_at - 0.1)  # its backoff still applies
    assert may_restart(looping, state.next_at)  # a crash loop never stops the restarts


def test_in_a_crash_loop_the_backoff_grows_to_its_own_cap_and_keeps_the_loop():
    policy = RestartPolicy(backoff=1, backoff_max=8, loop_backoff_max=300)
    state = declare_loop(RestartState())
    gaps = []
    for _ in range(12):
        before = state.next_at
        state = record_restart(policy, state, now=before)
        gaps.append(state.next_at - before)
    assert gaps[:4] == [1, 2, 4, 8] and max(gaps) == 300 and gaps[-1] == 300
    assert state.crash_loop  # said once: it stays declared until it is healthy long enough
    calm = record_restart(policy, RestartState(), 0)
    assert delay(policy, 20) == 8 and calm.next_at - 0 == 1  # outside a loop: backoff_max


def test_a_long_enough_healthy_run_ends_the_loop_and_its_count():
    """Five deaths in 300 s, each after a healthy run of min_healthy or more, are no loop."""
    policy = RestartPolicy(backoff=1, loop_restarts=3, loop_window=300, stable_after=60)
    state = RestartState()
    now = 0.0
    for _ in range(5):
        state = record_restart(policy, state, now)
        state = record_stable(policy, state, healthy_since=now + 2, now=now + 62)
        now += 65
    assert not exhausted(policy, state, now) and state == RestartState()
    looping = declare_loop(record_restart(policy, RestartState(), 0))
    assert record_stable(policy, looping, healthy_since=10, now=69) == looping  # 59 s: not yet
    assert record_stable(policy, looping, healthy_since=10, now=70) == RestartState()


def test_restarts_spread_beyond_window_are_no_loop():
    state = RestartState()
    for t in (0, 100, 200, 300, 400):
        state = record_restart(POLICY, state, now=t)
    assert not exhausted(POLICY, state, now=401)


def test_plan_declares_the_loop_once_and_restarts_anyway():
    state = RestartState()
    for t in (0, 1, 3, 7):
        state = record_restart(POLICY, state, now=t)
    dead_view = view(running=False, in_front=False, restart=state)
    assert kinds(plan_tick([dead_view], FRONT, now=30, policy=POLICY)) == [
        (Kind.CRASH_LOOP, "c-1"),
        (Kind.RESTART, "c-1"),
    ]
    declared = view(running=False, in_front=False, restart=declare_loop(state))
    assert kinds(plan_tick([declared], FRONT, now=30, policy=POLICY)) == [(Kind.RESTART, "c-1")]


def test_stability_resets_backoff():
    state = record_restart(POLICY, record_restart(POLICY, RestartState(), 0), 1)
    assert record_stable(POLICY, state, healthy_since=5, now=20) == state
    calm = record_stable(POLICY, state, healthy_since=5, now=40)
    assert calm.attempts == 0 and calm.next_at == 0


def test_restart_state_round_trips():
    state = record_restart(POLICY, RestartState(), 3)
    assert RestartState.from_dict(state.to_dict()) == state


HEALTHY = Health(healthy=True)
FRONT = FrontView(kind="nginx", running=True, listening=True)


def view(name="c-1", **kw):
    base = dict(name=name, running=True, health=HEALTHY, restart=RestartState(), in_front=True)
    return BackendView(**{**base, **kw})


def kinds(actions):
    return [(a.kind, a.name) for a in actions]


def test_healthy_fleet_needs_nothing():
    assert plan_tick([view("c-1"), view("c-2")], FRONT, now=100) == []


def test_dead_backend_leaves_front_and_restarts():
    actions = plan_tick([view(running=False)], FRONT, now=100)
    assert kinds(actions) == [(Kind.FRONT_OUT, "c-1"), (Kind.RESTART, "c-1")]


def test_dead_backend_out_of_front_waits_for_backoff():
    restart = RestartState(attempts=2, next_at=105)
    actions = plan_tick([view(running=False, in_front=False, restart=restart)], FRONT, now=100)
    assert actions == []


def test_hung_backend_restarted_only_after_restart_after():
    sick = Health(healthy=False, since=95, reason="timeout")
    early = plan_tick([view(health=sick)], FRONT, now=100, restart_after=10)
    assert kinds(early) == [(Kind.FRONT_OUT, "c-1")]  # out of the front, not restarted yet
    late = plan_tick([view(health=sick)], FRONT, now=106, restart_after=10)
    assert kinds(late) == [(Kind.FRONT_OUT, "c-1"), (Kind.RESTART, "c-1")]


def test_dead_backend_restarted_at_once_whatever_restart_after():
    dead_health = Health(healthy=False, since=99, reason="died")
    actions = plan_tick([view(running=False, health=dead_health)], FRONT, 100, restart_after=60)
    assert kinds(actions) == [(Kind.FRONT_OUT, "c-1"), (Kind.RESTART, "c-1")]


def test_a_crash_loop_waits_out_its_backoff():
    loop = RestartState(crash_loop=True, next_at=400)
    actions = plan_tick([view(running=False, in_front=False, restart=loop)], FRONT, now=100)
    assert actions == []
    later = plan_tick([view(running=False, in_front=False, restart=loop)], FRONT, now=400)
    assert kinds(later) == [(Kind.RESTART, "c-1")]


def test_recovered_backend_comes_back():
    assert kinds(plan_tick([view(in_front=False)], FRONT, now=1)) == [(Kind.FRONT_IN, "c-1")]


def test_unknown_health_stays_where_it_is():
    assert plan_tick([view(health=Health(), in_front=True)], FRONT, now=1) == []


def test_held_backends_are_left_to_the_operator():
    assert plan_tick([view(running=False, held=True)], FRONT, now=1) == []


def test_front_down_or_deaf_is_restarted():
    down = FrontView(kind="nginx", running=False, listening=False)
    deaf = FrontView(kind="haproxy", running=True, listening=False)
    assert kinds(plan_tick([], down, 1)) == [(Kind.FRONT_RESTART, None)]
    assert plan_tick([], deaf, 1)[0].reason == "not listening"


def test_no_front_means_no_front_actions():
    none = FrontView(kind="none", running=False, listening=False)
    actions = plan_tick([view(running=False)], none, now=1)
    assert kinds(actions) == [(Kind.RESTART, "c-1")]

from conduitctl.supervise.degrade import Member, Move, plan_degradation


def member(name, healthy=True, down_since=None, configured=100, current=100, load=0):
    return Member(name, healthy, down_since, configured, current, load)


def test_nothing_when_all_healthy_and_configured():
    assert plan_degradation([member("a"), member("b")], 100, 60, 1000) is None


def test_no_raise_before_degrade_after():
    members = [member("a", load=100), member("b", healthy=False, down_since=90)]
    assert plan_degradation(members, 100, 60, 1000) is None


def test_no_raise_when_survivors_have_room():
    members = [member("a", load=50), member("b", healthy=False, down_since=0)]
    assert plan_degradation(members, 100, 60, 1000) is None


def test_raise_one_survivor_at_a_time_to_cover_the_fleet():
    members = [
        member("a", load=95),
        member("b", load=95),
        member("c", healthy=False, down_since=0),
    ]
    change = plan_degradation(members, 100, 60, 1000)
    assert change is not None and change.move == Move.RAISE
    assert (change.name, change.max_clients) == ("a", 150)  # 300 configured over 2 survivors
    raised = [member("a", current=150, load=95), *members[1:]]
    assert plan_degradation(raised, 100, 60, 1000) is None  # room again: 190 of 250
    full = [member("a", current=150, load=145), *members[1:]]
    assert plan_degradation(full, 100, 60, 1000).name == "b"  # full again: 240 of 250


def test_raise_never_past_the_ceiling():
    members = [member("a", load=100), member("b", healthy=False, down_since=0)]
    assert plan_degradation(members, 100, 60, 120).max_clients == 120


def test_restore_one_at_a_time_when_recovered():
    members = [member("a", current=150), member("b", current=150), member("c")]
    change = plan_degradation(members, 100, 60, 1000)
    assert change is not None and (change.move, change.name, change.max_clients) == (
        Move.RESTORE,
        "a",
        100,
    )


def test_no_restore_while_someone_is_still_down():
    members = [member("a", current=150), member("c", healthy=False, down_since=99)]
    assert plan_degradation(members, 100, 60, 1000) is None


def test_nothing_when_everyone_is_down():
    members = [member("a", healthy=False, down_since=0)]
    assert plan_degradation(members, 100, 60, 1000) is None


def test_a_survivor_briefly_out_while_raised_is_not_covered_for():
    """a is being raised (restarting: unhealthy for a moment); b must get the same share,
    not the whole down backend's and a's clients as well."""
    members = [
        member("a", healthy=False, down_since=99.5, current=150),
        member("b", load=95),
        member("c", healthy=False, down_since=0),
    ]
    change = plan_degradation(members, 100, 60, 1000)
    assert change is not None and (change.name, change.max_clients) == ("b", 150)

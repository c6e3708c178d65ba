import pytest

from conduitctl.errors import BadInput
from conduitctl.rollout_plan import (
    CPU_WINDOW,
    MIN_PROBES,
    Gates,
    Sample,
    Soak,
    check_change,
    default_stages,
    judge,
    parse_stages,
    parse_steps,
    stage_specs,
)
from conduitctl.settings import settings_from_dict


def settings(containers=8, image="conduit-sim:local", max_clients=200, front="none", **cluster):
    return settings_from_dict(
        {
            "cluster": {"containers": containers, "name": "c", **cluster},
            "workload": {"profile": "sim", "image": image, "max_clients": max_clients},
            "front": {"kind": front},
        }
    )


def test_stages_default_to_canary_half_and_all():
    assert default_stages(8) == [1, 4, 8]
    assert default_stages(1) == [1]
    assert parse_stages(None, 3) == [1, 3]
    assert parse_stages("1,4,8", 8) == [1, 4, 8]


@pytest.mark.parametrize("text", ["1,4", "0,8", "4,2,8", "1,1,8", "1,x,8", "1,9"])
def test_bad_stages_are_refused_with_an_example(text):
    with pytest.raises(BadInput, match="--stages"):
        parse_stages(text, 8)


def test_client_steps_end_on_the_configured_value():
    assert parse_steps(None, [1, 4, 8], 200) is None
    assert parse_steps("20,100", [1, 4, 8], 200) == [20, 100, 200]
    assert parse_steps("20,100,200", [1, 4, 8], 200) == [20, 100, 200]
    for bad in ("20", "20,100,150", "100,20", "0,100", "20,300", "a,b"):
        with pytest.raises(BadInput, match="--clients-steps"):
            parse_steps(bad, [1, 4, 8], 200)


def test_a_rollout_carries_backend_changes_only():
    old = settings()
    check_change(old, settings(image="conduit-sim:new"))
    with pytest.raises(BadInput, match="nothing to roll out"):
        check_change(old, settings())
    with pytest.raises(BadInput, match=r"cluster\.containers"):
        check_change(old, settings(containers=6, image="conduit-sim:new"))
    with pytest.raises(BadInput, match="front"):
        check_change(old, settings(front="nginx", image="conduit-sim:new"))


def test_stage_specs_move_the_first_backends_at_the_stage_clients():
    old, new = settings(), settings(image="conduit-sim:new")
    specs = stage_specs(old, new, 4, clients=50)
    assert [s.image for s in specs] == ["conduit-sim:new"] * 4 + ["conduit-sim:local"] * 4
    assert [s.backend.max_clients for s in specs] == [50] * 4 + [200] * 4
    final = stage_specs(old, new, 8, clients=200)
    assert [s.config_hash() for s in final] == [s.config_hash() for s in stage_specs(old, new, 8)]


def sample(name="c-1", upgraded=True, **kw):
    values = {"running": True, "instance": "100:0", "ready": True, "oom": False}
    return Sample(name=name, upgraded=upgraded, **{**values, **kw})


def test_gates_pass_a_quiet_soak():
    soak = Soak()
    for _ in range(10):
        assert judge(soak, [sample(cpu_percent=20, memory_percent=30), sample("c-2", False)],
                     Gates()) is None  # fmt: skip
    assert soak.probes == 10 and soak.failed == 0


@pytest.mark.parametrize(
    ("later", "words"),
    [
        ({"oom": True}, "OOM-killed"),
        ({"running": False}, "is down"),
        ({"instance": "101:1"}, "restarted during the soak"),
        ({"memory_percent": 95}, "memory limit"),
    ],
)
def test_each_gate_fails_on_its_sign(later, words):
    soak = Soak()
    assert judge(soak, [sample()], Gates()) is None
    failure = judge(soak, [sample(**later)], Gates())
    assert failure is not None and words in failure


def test_an_old_backend_going_down_also_fails_the_stage():
    soak = Soak()
    judge(soak, [sample("c-8", upgraded=False)], Gates())
    assert "c-8 is down" in (judge(soak, [sample("c-8", False, running=False)], Gates()) or "")


def test_cpu_is_judged_on_a_window_not_a_burst():
    soak = Soak()
    assert judge(soak, [sample(cpu_percent=400)], Gates()) is None  # a start-up burst
    for _ in range(CPU_WINDOW - 2):
        assert judge(soak, [sample(cpu_percent=95)], Gates()) is None
    assert "CPU limit" in (judge(soak, [sample(cpu_percent=95)], Gates()) or "")


def test_error_ratio_waits_for_enough_probes():
    soak = Soak()
    gates = Gates(max_error_ratio=0.2)
    assert judge(soak, [sample(ready=False)], gates) is None  # 1 of 1, too few to judge
    for _ in range(MIN_PROBES - 2):
        assert judge(soak, [sample()], gates) is None
    failure = judge(soak, [sample(ready=False)], gates)
    assert failure is not None and "2 of 5 probes" in failure

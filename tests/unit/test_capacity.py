import pytest

from conduitctl.capacity import PlanInput, make_plan

REVIEW_HOST = dict(cpus=2, memory_gb=4, nic_mbps=1000, mbps_per_client=3, active_ratio=0.5)


def test_worked_case_network_limit_is_533_with_the_reviews_1066_beside():
    """800 Mbps / (3 Mbps x 0.5) = 533 already counts every client; a relay's bytes cross
    the NIC both ways, so a full-duplex NIC doubles nothing (the review doubled it)."""
    network = make_plan(PlanInput(**REVIEW_HOST)).limits["network"]
    assert network.clients == 533
    assert network.note is not None and "1,066" in network.note and "duplex" in network.note


def test_worked_case_limits_side_by_side():
    plan = make_plan(PlanInput(**REVIEW_HOST))
    cpu, memory = plan.limits["cpu"], plan.limits["memory"]
    assert (cpu.low, cpu.clients, cpu.high) == (300, 500, 700)  # 150-350 per CPU, plan at 250
    assert (memory.low, memory.clients, memory.high) == (262, 437, 612)  # 3.5 GB usable
    assert plan.bottleneck == "memory"
    assert plan.total_clients <= memory.clients
    assert plan.warnings == [
        "2 stations on one host share its public IP: more capacity, no IP diversity "
        "(Psiphon's guide: spread stations across data centres)"
    ]


def test_review_configuration_is_flagged_naming_the_limits():
    plan = make_plan(PlanInput(**REVIEW_HOST, containers=8, max_clients=250))
    assert plan.total_clients == 2000
    assert plan.requested
    (warning,) = [w for w in plan.warnings if "over-provisioned" in w]
    for name in ("cpu", "memory", "network"):
        assert name in warning
    assert "fds" not in warning
    assert "2,000" in warning


def test_network_bound_host():
    plan = make_plan(PlanInput(cpus=16, memory_gb=64, nic_mbps=100, mbps_per_client=3))
    assert plan.bottleneck == "network"
    assert plan.limits["network"].clients == 53  # 0.8 x 100 / 1.5
    assert plan.total_clients <= 53


def test_half_duplex_halves_network_limit():
    full = make_plan(PlanInput(**REVIEW_HOST))
    half = make_plan(PlanInput(**REVIEW_HOST, duplex=False))
    assert half.limits["network"].clients == full.limits["network"].clients // 2


def test_fd_limit_binds_with_tiny_nofile():
    plan = make_plan(PlanInput(**REVIEW_HOST, nofile=1024, containers=1, max_clients=600))
    assert plan.limits["fds"].clients == (1024 - 64) // 2
    assert any("fds" in w for w in plan.warnings)


def test_recommendation_respects_containers_given():
    plan = make_plan(PlanInput(**REVIEW_HOST, containers=4))
    assert plan.containers == 4
    assert plan.max_clients_per_container == 437 // 4
    assert [w for w in plan.warnings if "public IP" not in w] == []


def test_one_station_shares_no_ip_and_is_not_warned():
    plan = make_plan(PlanInput(**REVIEW_HOST, containers=1))
    assert not any("public IP" in w for w in plan.warnings)


def test_recommendation_never_exceeds_conduit_ceiling():
    plan = make_plan(PlanInput(cpus=64, memory_gb=256, nic_mbps=100_000, containers=2))
    assert plan.max_clients_per_container <= 1000


def test_expected_load_scales_with_clients():
    small = make_plan(PlanInput(**REVIEW_HOST, containers=1, max_clients=100))
    big = make_plan(PlanInput(**REVIEW_HOST, containers=1, max_clients=400))
    assert big.expected["ram_mb"] > small.expected["ram_mb"]
    assert big.expected["network_mbps"] == pytest.approx(4 * small.expected["network_mbps"])


@pytest.mark.parametrize(
    "bad", [dict(cpus=0), dict(active_ratio=1.5), dict(mbps_per_client=0), dict(nic_mbps=-1)]
)
def test_bad_inputs_rejected(bad):
    with pytest.raises(ValueError):
        PlanInput(**{**REVIEW_HOST, **bad})


def test_json_keys():
    data = make_plan(PlanInput(**REVIEW_HOST)).to_dict()
    for key in (
        "containers",
        "max_clients_per_container",
        "total_clients",
        "limits",
        "bottleneck",
        "warnings",
    ):
        assert key in data
    assert set(data["limits"]) == {"cpu", "memory", "network", "fds"}

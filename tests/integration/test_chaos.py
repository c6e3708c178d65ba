"""Chaos drills against a real fleet: simulators behind nginx, the supervisor started by `up`,
each fault injected for real under a concurrent load through the front.

The process-runtime drills share one fleet (each waits for it to be healthy first); the
docker drill has its own.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from fleet_helpers import FAST_HEALTH, PURGE, cli, cli_json, write_config

from conduitctl.drills.chaos import ChaosReport, chaos_tables, run_chaos
from conduitctl.errors import ConduitctlError
from conduitctl.settings import load_settings
from conftest import find_free_block

# Alone, after the parallel pass of `make test`: the drills burn a core, hold host memory,
# drop loopback packets and time detection and recovery to the second under their own load.
pytestmark = [pytest.mark.serial]


def drill(
    config: Path,
    scenario: str,
    *,
    load: int = 300,
    duration: float = 8.0,
    say: Callable[[str], None] | None = None,
    **kw: Any,
) -> ChaosReport:
    messages: list[str] = []

    def progress(message: str) -> None:
        messages.append(message)
        if say is not None:
            say(message)

    report = run_chaos(
        load_settings(config), config, scenario, load, duration, seed=3, progress=progress, **kw
    )
    print(f"{scenario}: {report.to_dict()}\n" + "\n".join(messages))  # shown on failure
    return report


def no_failed_connects(report: ChaosReport) -> None:
    """nginx retries a refused connect on another backend, so no new connection fails for
    want of a backend. A connection caught mid-handshake by the kill (accepted, greeting not
    yet sent) is reset: one or two of those are the kill itself, not the front."""
    assert set(report.failed_by_reason) <= {"reset"}, report.failed_by_reason
    assert report.connections_failed <= 2, report.failed_by_reason


def events_since(config: Path, since: float, backend: str) -> list:
    from conduitctl.store import Store

    with Store(config.parent / "state/history.db") as store:
        return store.events(since=since, backend=backend)


def chaos_nft_tables() -> list[str]:
    listing = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return chaos_tables(listing.stdout)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Four simulators on the process runtime behind nginx, supervised."""
    directory = tmp_path_factory.mktemp("chaos")
    config = write_config(
        directory / "chp", find_free_block(140), name="chp", containers=4, extra=FAST_HEALTH
    )
    cli("up", "--config", str(config))
    yield config
    cli(*PURGE, "--config", str(config), check=False)


def test_kill_one_backend_under_load(fleet):
    report = drill(fleet, "kill")
    assert report.recovered, report.notes
    assert len(report.victims) == 1
    assert report.time_to_detect_s is not None and report.time_to_detect_s < 1.0
    assert report.time_to_front_out_s is not None and report.time_to_front_out_s < 1.0
    assert report.time_to_recover_s is not None and report.time_to_recover_s < 5.0
    assert report.per_victim[0].detected_by == "death"
    assert report.restarts >= 1 and report.restarts_by_backend.get(report.victims[0], 0) >= 1
    assert report.new_connections_attempted > 100  # connections tried during the fault
    no_failed_connects(report)
    assert 0 < report.sessions_dropped <= 300  # the victim's share of the sessions
    assert report.collateral == ()


def test_kill_many_kills_two_of_four_at_once(fleet):
    report = drill(fleet, "kill-many", duration=6.0)
    assert report.recovered, report.notes
    assert len(report.victims) == 2 and len(set(report.victims)) == 2
    assert report.time_to_front_out_s is not None and report.time_to_front_out_s < 1.0
    assert all(v.restarts >= 1 for v in report.per_victim)
    no_failed_connects(report)


@pytest.mark.slow
def test_hang_is_found_by_probes_and_restarted(fleet):
    status = {b["name"]: b["pid"] for b in cli_json("status", "--config", str(fleet))["backends"]}
    report = drill(fleet, "hang")
    assert report.recovered, report.notes
    (victim,) = report.per_victim
    assert victim.detected_by == "unhealthy"  # alive, so only the probes can tell
    assert victim.front_out_s is not None and victim.front_out_s >= victim.detect_s
    assert victim.restarts >= 1
    hung = status[victim.name]
    assert not psutil.pid_exists(hung) or psutil.Process(hung).status() == psutil.STATUS_ZOMBIE


def test_front_restart_under_load(fleet):
    before = cli_json("status", "--config", str(fleet))["front"]
    workers = psutil.Process(before["pid"]).children()
    assert workers
    report = drill(fleet, "front-restart", duration=6.0)
    assert report.recovered, report.notes
    assert report.victims == ("front",)
    assert report.front_restarts >= 1
    assert report.time_to_recover_s is not None and report.time_to_recover_s < 5.0
    after = cli_json("status", "--config", str(fleet))["front"]
    assert after["pid"] != before["pid"] and after["running"] and not after["not_listening"]
    # The supervisor starts the new master first (reuseport), then retires the killed
    # master's workers gracefully: no connection refused, no session dropped.
    assert report.connections_failed == 0 and report.sessions_dropped == 0
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    assert not any("outlived it" in note for note in report.notes)


@pytest.mark.slow
def test_packet_loss_is_applied_then_always_removed(fleet):
    if shutil.which("nft") is None:
        pytest.skip("nftables is not installed (apt-get install nftables)")
    during: list[list[str]] = []

    def look(message: str) -> None:
        if message.startswith("fault:"):
            during.append(chaos_nft_tables())

    report = drill(fleet, "loss", fault_s=4.0, say=look)
    table = re.search(r"nft table inet (\S+)\)", report.fault)
    assert table is not None and during == [[table.group(1)]]  # in place during the fault
    assert chaos_nft_tables() == []  # and gone afterwards
    assert report.fault_s is not None and 3.9 <= report.fault_s < 6
    assert report.recovered, report.notes


def test_oom_one_backend_through_the_simulators_leak(fleet):
    report = drill(fleet, "oom", duration=10.0)
    assert report.recovered, report.notes
    (victim,) = report.per_victim
    assert victim.detected_by in ("oom", "death") and victim.restarts >= 1
    events = events_since(fleet, report.t_fault - 10, victim.name)
    assert any(e.kind.value == "oom" for e in events)


def test_cpu_burn_is_bounded_and_the_burner_gone(fleet):
    report = drill(fleet, "cpu", duration=5.0, fault_s=3.0)
    burner = re.search(r"pid (\d+)", report.fault)
    assert burner is not None
    pid = int(burner.group(1))
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert report.fault_s is not None and 2.9 <= report.fault_s < 4.5
    assert report.recovered, report.notes
    cpu = report.resources["host_cpu_percent"]["max"]
    assert cpu is not None and cpu >= 60 / psutil.cpu_count()  # one core of them, busy
    assert set(report.resources["backend_cpu_percent"]) == {f"chp-{i}" for i in range(1, 5)}


def test_memory_pressure_is_released(fleet):
    report = drill(fleet, "memory", load=100, duration=4.0, fault_s=1.5)
    holder = re.search(r"held by pid (\d+)", report.fault)
    assert holder is not None
    pid = int(holder.group(1))
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert report.recovered, report.notes


def test_no_supervisor_no_drill(tmp_path, free_block):
    config = write_config(tmp_path / "chn", free_block(140), name="chn", containers=2)
    with pytest.raises(ConduitctlError, match="no supervisor runs"):
        run_chaos(load_settings(config), config, "kill", 10, 4)


@pytest.fixture(scope="module")
def docker_fleet(tmp_path_factory: pytest.TempPathFactory, sim_image: str) -> Iterator[Path]:
    """Three simulator containers behind nginx, supervised."""
    directory = tmp_path_factory.mktemp("chaosd")
    config = write_config(
        directory / "chd",
        find_free_block(140),
        name="chd",
        containers=3,
        runtime="docker",
        image=sim_image,
        extra=FAST_HEALTH,
    )
    cli("up", "--config", str(config))
    yield config
    cli(*PURGE, "--config", str(config), check=False)


@pytest.mark.docker
def test_kill_a_docker_backend(docker_fleet):
    report = drill(docker_fleet, "kill")
    assert report.recovered, report.notes
    assert report.time_to_front_out_s is not None and report.time_to_front_out_s < 1.0
    no_failed_connects(report)


@pytest.mark.docker
@pytest.mark.slow
def test_hang_a_docker_backend(docker_fleet):
    report = drill(docker_fleet, "hang")
    assert report.recovered, report.notes
    (victim,) = report.per_victim
    assert victim.detected_by == "unhealthy" and victim.restarts >= 1


@pytest.mark.docker
def test_kill_many_docker_backends(docker_fleet):
    report = drill(docker_fleet, "kill-many", duration=6.0)
    assert report.recovered, report.notes
    assert len(report.victims) == 2
    no_failed_connects(report)


@pytest.mark.docker
@pytest.mark.slow
def test_packet_loss_on_a_docker_fleet_is_removed_afterwards(docker_fleet):
    report = drill(docker_fleet, "loss", fault_s=3.0)
    assert chaos_nft_tables() == []
    assert report.recovered, report.notes


@pytest.mark.docker
def test_oom_a_docker_backend(docker_fleet):
    report = drill(docker_fleet, "oom", duration=10.0)
    assert report.recovered, report.notes
    assert report.per_victim[0].restarts >= 1


@pytest.mark.docker
def test_front_restart_in_front_of_docker_backends(docker_fleet):
    report = drill(docker_fleet, "front-restart", duration=6.0)
    assert report.recovered, report.notes
    assert report.connections_failed == 0 and report.sessions_dropped == 0

"""Staged rollouts on real fleets: stages and gates, the supervisor resuming a rollout whose
driver was killed, and (docker) an image that OOMs under load rolled back automatically
with every identity key byte-identical."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time

import pytest
from fleet_helpers import (
    CONDUITCTL,
    PURGE,
    cli,
    cli_json,
    connected_clients,
    key_hashes,
    running_hashes,
    wait_for,
    wanted_hashes,
    write_config,
)

from conduitctl.drills.loadtest import LoadSpec, run_load
from conduitctl.settings import load_settings


def rollout_state(config) -> dict | None:
    return cli_json("status", "--config", str(config))["rollout"]


def test_rollout_moves_the_fleet_in_stages(tmp_path, free_block):
    base = free_block(140)
    config = write_config(tmp_path, base, name="ro", containers=3)
    try:
        cli("up", "--no-daemon", "--config", str(config))
        first = config.read_text()
        config.write_text(first.replace("max_clients = 1000", "max_clients = 400"))
        refused = cli("rollout", "--stages", "1,2", "--config", str(config), check=False)
        assert refused.returncode == 2 and "last is the whole fleet (3)" in refused.stderr

        result = cli("rollout", "--stages", "1,3", "--soak", "2s", "--clients-steps", "100",
                     "--drain-timeout", "1", "--json", "--config", str(config))  # fmt: skip
        state = json.loads(result.stdout)
        assert state["phase"] == "passed"
        assert [p["backends"] for p in state["passed"]] == [1, 3]
        assert running_hashes(config) == wanted_hashes(config)  # all on the new settings
        assert "passed all 2 stages" in cli("status", "--config", str(config)).stdout
        reasons = [s["reason"] for s in cli_json("snapshots", "--config", str(config))]
        assert reasons[-3:] == ["rollout", "rollout-1", "rollout-2"]
        # Nothing left to roll out: a clear refusal, exit 2.
        again = cli("rollout", "--config", str(config), check=False)
        assert again.returncode == 2 and "nothing to roll out" in again.stderr
    finally:
        cli(*PURGE, "--config", str(config), check=False)


def test_the_supervisor_resumes_a_rollout_after_a_reboot(tmp_path, free_block):
    """Driver and supervisor both die (a reboot, as far as they can tell); the supervisor,
    started again as systemd would, finds the orphaned rollout and resumes it."""
    base = free_block(140)
    # not "rr": test_drain.py's fleet of that name may run at the same time (xdist), and
    # process backends of one cluster name share a memory cgroup
    config = write_config(tmp_path, base, name="rs", containers=2, front="haproxy")
    env = {**os.environ, "CONDUITCTL_CONFIG": ""}
    try:
        cli("up", "--config", str(config))  # with the supervisor
        config.write_text(config.read_text().replace("max_clients = 1000", "max_clients = 600"))
        argv = [CONDUITCTL, "rollout", "--stages", "1,2", "--soak", "3s", "--drain-timeout", "1"]
        driver = subprocess.Popen([*argv, "--config", str(config)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wait_for(lambda: (rollout_state(config) or {}).get("phase") == "soaking", 30, "a soak")
        cli("daemon-stop", "--config", str(config))  # first, or it resumes at once
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(5)
        assert rollout_state(config)["active"]
        # An operator change meanwhile is refused, and told how to go on.
        busy = cli("up", "--config", str(config), check=False)
        assert busy.returncode == 2 and "driver is gone: `rollout --resume`" in busy.stderr
        subprocess.Popen([CONDUITCTL, "daemon", "--config", str(config)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)  # fmt: skip
        done = wait_for(
            lambda: (s := rollout_state(config)) and not s["active"] and s, 60, "the resume"
        )
        assert done["phase"] == "passed" and done["driver_pid"] != driver.pid
        assert running_hashes(config) == wanted_hashes(config)
    finally:
        cli(*PURGE, "--config", str(config), check=False)


# Serial: the rollout must reach rn-1 while the 4 s load still runs; on a host loaded by the
# other tests its CLI took longer (rn-1 had no session left: nothing to wait for).
@pytest.mark.serial
def test_without_a_front_a_stage_waits_for_the_sessions_to_end(tmp_path, free_block):
    """Real Conduit has no front to drain: a backend moves at a low-client moment, so a
    load held straight at it loses no session."""
    base = free_block(140)
    config = write_config(tmp_path, base, name="rn", containers=2, front="none")
    try:
        cli("up", "--no-daemon", "--config", str(config))
        config.write_text(config.read_text().replace("max_clients = 1000", "max_clients = 500"))
        reports = []
        spec = LoadSpec("127.0.0.1", base + 4, clients=60, duration_s=4, rate_kbps=8, ramp_s=0.5)
        load = threading.Thread(target=lambda: reports.append(asyncio.run(run_load(spec))))
        load.start()
        wait_for(lambda: connected_clients(base, 1) >= 60, 10, "the sessions up")
        started = time.monotonic()
        result = cli("rollout", "--stages", "1,2", "--soak", "1s", "--drain-timeout", "30",
                     "--config", str(config))  # fmt: skip
        load.join(30)
        assert "waiting for 50 or fewer (no front)" in result.stderr
        assert time.monotonic() - started >= 2.0  # it waited for the load to end
        assert reports[0].connected == 60 and reports[0].sessions_dropped == 0
        assert running_hashes(config) == wanted_hashes(config)
    finally:
        cli(*PURGE, "--config", str(config), check=False)


def test_abort_rolls_back_a_running_rollout(tmp_path, free_block):
    base = free_block(140)
    config = write_config(tmp_path, base, name="ra", containers=2)
    try:
        cli("up", "--no-daemon", "--config", str(config))
        original = config.read_text()
        config.write_text(original.replace("max_clients = 1000", "max_clients = 700"))
        driver = subprocess.Popen(
            [CONDUITCTL, "rollout", "--stages", "1,2", "--soak", "5m", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "CONDUITCTL_CONFIG": ""},
        )
        wait_for(lambda: (rollout_state(config) or {}).get("phase") == "soaking", 30, "a soak")
        aborted = cli("rollout", "--abort", "--json", "--config", str(config))
        driver.wait(15)
        state = json.loads(aborted.stdout)
        assert state["phase"] == "rolled_back" and state["message"] == "aborted by the operator"
        assert config.read_text() == original
        assert running_hashes(config) == wanted_hashes(config)
        rejected = load_settings(config).state_dir / "rollout" / "rejected.toml"
        assert "max_clients = 700" in rejected.read_text()  # the operator's edit is kept
        nothing = cli("rollout", "--abort", "--config", str(config), check=False)
        assert nothing.returncode == 2 and "no rollout in progress" in nothing.stderr
    finally:
        cli(*PURGE, "--config", str(config), check=False)


# Serial: with the other tests loading the host, the roll back's recreate of a backend lost
# the name race against the supervisor's in-flight restart of it four times running
# ("rk-3: docker could not start it: Conflict", runtime/docker.py NAME_CONFLICT_RETRIES).
@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.serial
def test_rollout_of_an_image_that_ooms_is_rolled_back(tmp_path, free_block, sim_image):
    import docker
    from sim_images import build_faulty_image, remove_faulty_image

    bad_image = build_faulty_image("conduit-sim:oom-under-load", {"CONDUIT_SIM_SESSION_MB": "8"})
    base = free_block(140)
    config = write_config(tmp_path, base, name="rk", containers=8, runtime="docker",
                          image=sim_image, memory="96m", max_clients=100)  # fmt: skip
    load_done = threading.Event()
    try:
        cli("up", "--config", str(config), timeout=180)
        original = config.read_text()
        keys_before = key_hashes(config)
        assert len(keys_before) == 8

        def hold_load() -> None:  # ~25 live sessions per backend, renewed until told to stop
            while not load_done.is_set():
                spec = LoadSpec("127.0.0.1", base, clients=200, duration_s=8, rate_kbps=4,
                                ramp_s=1)  # fmt: skip
                asyncio.run(run_load(spec))

        load = threading.Thread(target=hold_load)
        load.start()
        config.write_text(original.replace(f'image = "{sim_image}"', f'image = "{bad_image}"'))
        rollout_started = time.time()
        # Stage 1: one backend at 2 clients holds 16 MB; stage 2: four at 100 clients OOM.
        result = cli("rollout", "--stages", "1,4,8", "--soak", "8s", "--clients-steps", "2,100",
                     "--drain-timeout", "1", "--json", "--config", str(config),
                     check=False, timeout=300)  # fmt: skip
        load_done.set()
        load.join(30)
        assert result.returncode == 1 and result.stdout, result.stderr  # 1: rolled back
        state = json.loads(result.stdout)
        assert state["phase"] == "rolled_back", state["message"]
        assert [p["stage"] for p in state["passed"]] == [1]  # stage 1 passed, stage 2 failed
        assert state["stage"] == 1, state["message"]  # the second stage
        # The kernel OOM-killed a backend of that stage; the gate that tripped says so (an
        # OOM kill, or the failed probes of the memory-starved backend just before it).
        ooms = {
            e["Actor"]["Attributes"]["name"]
            for e in docker.from_env().events(
                since=int(rollout_started), until=int(time.time()) + 1,
                filters={"type": "container", "event": "oom"}, decode=True,
            )
        }  # fmt: skip
        assert ooms & {"rk-1", "rk-2", "rk-3", "rk-4"}, ooms
        assert "OOM-killed" in state["message"], state["message"]
        assert config.read_text() == original  # conduit.toml is the old one again
        assert running_hashes(config) == wanted_hashes(config)
        assert key_hashes(config) == keys_before  # every identity key byte-identical
        events = cli_json("events", "--config", str(config))
        assert any(e["kind"] == "operation_failed" and "rollout" in e["message"] for e in events)
    finally:
        load_done.set()
        cli(
            "down",
            "--purge",
            "--yes",
            "--discard-keys",
            "--config",
            str(config),
            check=False,
            timeout=180,
        )
        remove_faulty_image(bad_image)

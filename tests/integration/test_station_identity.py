"""A station is the process we started, not whoever answers on its port (issue #10, 11): a
simulator started by hand on a station's ports, greeting with the station's own name, is
refused by `up`, and found by the supervisor: never healthy, a port_stolen alert."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_helpers import FAST_HEALTH, PURGE, cli, cli_json, wait_for, write_config

from conduitctl.fleet import BackendSpec, desired_backends
from conduitctl.intent import holding
from conduitctl.observe.probe import tcp_probe
from conduitctl.settings import load_settings
from conduitctl.store import Store

SIM = str(Path(sys.executable).with_name("conduit-sim"))


def station(config: Path) -> BackendSpec:
    [backend] = desired_backends(load_settings(config))
    return backend


def intruder(backend: BackendSpec, data_dir: Path) -> subprocess.Popen[bytes]:
    """A simulator started by hand on the station's ports, calling itself by its name."""
    assert backend.listen_port is not None
    proc = subprocess.Popen(
        [SIM, "start", "--data-dir", str(data_dir), "--name", backend.name,
         "--listen", f"{backend.host}:{backend.listen_port}",
         "--metrics-addr", f"{backend.host}:{backend.metrics_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(lambda: tcp_probe(backend.host, backend.listen_port or 0, 0.5, greeting=True).ok
             or proc.poll() is not None, 15, "the intruder's greeting")  # fmt: skip
    assert proc.poll() is None, "the intruder could not bind the station's ports"
    return proc


@pytest.fixture
def stop() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def alerts_fired(config: Path) -> list[str]:
    with Store(config.parent / "state/history.db") as store:
        return [e.message for e in store.events() if e.kind.value == "alert_fired"]


def test_up_refuses_a_fleet_whose_station_ports_a_hand_started_simulator_holds(
    tmp_path, free_block, stop
):
    config = write_config(tmp_path / "f", free_block(140), name="sti", containers=1)
    backend = station(config)
    stop.append(intruder(backend, tmp_path / "intruder"))
    try:
        result = cli("up", "--config", str(config), check=False)
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"{backend.host}:" in result.stderr and "sti-1" in result.stderr
        status = cli_json("status", "--config", str(config))
        assert not any(b["pid"] for b in status["backends"])  # nothing was started
        assert status["front"]["running"] is False
    finally:
        cli(*PURGE, "--config", str(config), check=False)
    assert stop[0].poll() is None  # the stranger is left alone


def test_a_station_whose_port_a_stranger_holds_is_never_healthy_and_alerts(
    tmp_path, free_block, stop
):
    config = write_config(tmp_path / "f", free_block(140), name="sts", containers=1,
                          extra=FAST_HEALTH)  # fmt: skip
    backend = station(config)
    state = config.parent / "state"
    try:
        cli("up", "--config", str(config))
        pid = cli_json("status", "--config", str(config))["backends"][0]["pid"]
        with holding(state, [backend.name]):  # as an operator would, for the swap
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 5, "the station gone")
            stop.append(intruder(backend, tmp_path / "intruder"))
        # Released: the supervisor restarts the station, which finds its port taken, while
        # the intruder greets with the station's name and reports itself live on /metrics.
        fired = wait_for(lambda: [m for m in alerts_fired(config) if "port" in m], 20,
                         "the port_stolen alert")  # fmt: skip
        assert backend.name in fired[0] and f"pid {stop[0].pid}" in fired[0]
        for _ in range(6):
            [b] = cli_json("status", "--config", str(config))["backends"]
            assert b["health"] != "healthy", b
            time.sleep(0.5)
        stop[0].kill()
        stop[0].wait()  # the stranger leaves: ours comes back, the alert resolves
        wait_for(lambda: cli_json("status", "--config", str(config))["backends"][0]["health"]
                 == "healthy", 30, "the station healthy again")  # fmt: skip

        def resolved() -> list[str]:  # the supervisor's next tick, after status saw it
            with Store(config.parent / "state/history.db") as store:
                return [e.message for e in store.events()
                        if e.kind.value == "alert_resolved" and "port" in e.message]  # fmt: skip

        wait_for(resolved, 15, "the port_stolen alert resolved")
    finally:
        cli(*PURGE, "--config", str(config), check=False)

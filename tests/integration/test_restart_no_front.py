"""Graceful restart without a front (front.kind = "none", as for real Conduit): nothing can be
drained, so each backend is restarted at a quiet moment, its sessions at or below a
low-water mark, or anyway once the bound passes. Real sim processes, the real supervisor,
a real load straight at one backend's port."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from fleet_helpers import PURGE, cli, cli_json, connected_clients, wait_for, write_config

from conduitctl.drills.loadtest import LoadReport, LoadSpec, run_load
from conduitctl.front.base import NoFront
from conduitctl.ops.drain import graceful_restart
from conduitctl.runtime import runtime_for
from conduitctl.settings import load_settings


def listen_port(base: int, index: int) -> int:
    return base + 4 + index - 1  # write_config: listen_port_base = base + 4


def greets(port: int) -> bool:
    """The backend on `port` accepts and names itself right now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3) as sock:
            return sock.recv(100).startswith(b"CONDUIT-SIM ")
    except OSError:
        return False


class Watch:
    """Probes every backend's port about every 0.1 s: how many serve, and when each one
    was first seen not serving."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self.serving: list[int] = []
        self.first_down: dict[str, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(10)
        # The last sample is taken now, after the watched command returned: one still in
        # flight when it returned may have probed a backend that was not back yet.
        self._sample()

    def _run(self) -> None:
        while not self._done.is_set():
            self._sample()
            time.sleep(0.1)

    def _sample(self) -> None:
        now = time.time()
        up = {name: greets(port) for name, port in self.ports.items()}
        for name, ok in up.items():
            if not ok:
                self.first_down.setdefault(name, now)
        self.serving.append(sum(up.values()))


def start_load(port: int, clients: int, duration_s: float) -> tuple[threading.Thread, list]:
    reports: list[LoadReport] = []
    spec = LoadSpec("127.0.0.1", port, clients, duration_s, rate_kbps=8, ramp_s=0.5)
    thread = threading.Thread(target=lambda: reports.append(asyncio.run(run_load(spec))))
    thread.start()
    return thread, reports


def pids(config) -> dict[str, int]:
    return {b["name"]: b["pid"] for b in cli_json("status", "--config", str(config))["backends"]}


# Serial: it times the wait for the sessions (>= 2.5 s of the 5 s load left when the
# restart starts); on a host loaded by the other tests the CLI started late and waited
# 1.54 s (with the 1.5 s sleep this file had then; the margin is thin either way).
@pytest.mark.serial
def test_rolling_restart_waits_for_the_sessions_to_end(tmp_path, free_block):
    base = free_block(140)
    # low-water: 10 % of 200 = 20 sessions
    config = write_config(tmp_path, base, name="nf", containers=2, front="none", max_clients=200)
    try:
        cli("up", "--config", str(config))  # with the supervisor: the hold keeps it off
        before = pids(config)
        ports = {f"nf-{i}": listen_port(base, i) for i in (1, 2)}
        load_start = time.time()
        load, reports = start_load(ports["nf-1"], clients=100, duration_s=5)
        wait_for(lambda: connected_clients(base, 1) >= 100, 10, "every session on nf-1")
        with Watch(ports) as watch:
            started = time.monotonic()
            # Low-water 0: it waits for every session to end (at 20, the default here, a
            # sample could land while the last few close and the restart would cut them).
            result = cli_json("restart", "--all", "--timeout", "30", "--low-clients", "0",
                              "--config", str(config))  # fmt: skip
            took = time.monotonic() - started
        load.join(30)
        (report,) = reports
        first, second = result["results"]

        assert result["restarted"] == ["nf-1", "nf-2"]
        # nf-1 held the load: it waited until the sessions were low, without a timeout...
        assert first["sessions_at_start"] >= 90 and first["low_water"] == 0
        assert first["sessions_left"] == 0 and not first["timed_out"]
        assert first["waited_s"] >= 2.5  # the load still had about 3.5 s to run
        # ...and went down only after the load's sessions had ended on their own
        assert watch.first_down["nf-1"] >= load_start + 5 - 0.05
        assert report.connected == 100 and report.failed == 0
        assert report.per_backend == {"nf-1": 100}
        assert report.sessions_dropped == 0
        # nf-2 was idle: restarted at once
        assert second["sessions_at_start"] <= 1 and second["waited_s"] < 1
        assert not second["timed_out"]
        # one at a time, each ready before the next: one of the two always served
        assert watch.serving and min(watch.serving) == 1 and watch.serving[-1] == 2
        after = pids(config)
        assert all(after[n] != before[n] for n in before)
        # the supervisor left them alone (the hold): it restarted nothing itself
        assert cli_json("events", "--kind", "restart", "--config", str(config)) == []
        print(f"restart --all took {took:.1f}s")
    finally:
        cli(*PURGE, "--config", str(config), check=False)


def test_restart_anyway_when_the_bound_passes(tmp_path, free_block):
    base = free_block(140)
    config = write_config(tmp_path, base, name="nt", containers=2, front="none")
    try:
        cli("up", "--config", str(config))
        settings = load_settings(config)
        before = pids(config)
        load, reports = start_load(listen_port(base, 2), clients=100, duration_s=5)
        # every session established on nt-2 (they last until 5 s after the load started)
        wait_for(lambda: connected_clients(base, 2) >= 100, 10, "every session on nt-2")
        said: list[str] = []
        result = graceful_restart(
            settings,
            runtime_for(settings),
            NoFront(settings),
            "nt-2",
            timeout=2,
            low_clients=10,
            progress=said.append,
        )
        load.join(30)
        (report,) = reports

        assert result.timed_out and result.low_water == 10
        assert result.sessions_at_start >= 90 and result.sessions_left >= 90
        assert 1.9 <= result.waited_s <= 3.5
        assert any("timed out after 2s" in m and "restarting anyway" in m for m in said), said
        assert report.connected == 100
        assert report.sessions_dropped >= 90  # the bound passed: those were cut, as it says
        after = pids(config)
        assert after["nt-2"] != before["nt-2"] and after["nt-1"] == before["nt-1"]
    finally:
        cli(*PURGE, "--config", str(config), check=False)


def test_low_clients_is_refused_with_a_front(tmp_path, free_block):
    config = write_config(tmp_path, free_block(140), name="nl", containers=1)
    result = cli("restart", "--all", "--low-clients", "5", "--config", str(config), check=False)
    assert result.returncode == 2
    assert "--low-clients is for a fleet without a front" in result.stderr

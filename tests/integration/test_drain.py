"""Drain: a backend holding live sessions through the front leaves it for new connections,
its sessions end on their own, then it stops: none of them is dropped."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from fleet_helpers import cli, cli_json, write_config

from conduitctl.drills.loadtest import LoadReport, LoadSpec, run_load


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_drain_drops_no_live_session_then_undrain(kind, tmp_path, free_block):
    base = free_block(140)
    name = f"dr{kind[0]}"
    config = write_config(tmp_path, base, name=name, containers=2, front=kind)
    try:
        cli("up", "--config", str(config))
        reports: list[LoadReport] = []
        spec = LoadSpec("127.0.0.1", base, clients=400, duration_s=8, rate_kbps=8, ramp_s=1)
        load = threading.Thread(target=lambda: reports.append(asyncio.run(run_load(spec))))
        load.start()
        time.sleep(2.5)  # every session established, about 200 on each backend
        victim = f"{name}-1"
        result = cli_json("drain", victim, "--timeout", "30", "--config", str(config))
        load.join(30)
        (report,) = reports
        assert report.connected == 400 and report.failed == 0
        assert report.per_backend[victim] >= 150  # it really held live sessions
        assert report.sessions_dropped == 0  # none of them was cut
        assert result["sessions_at_start"] >= 150 and result["sessions_left"] == 0
        assert not result["timed_out"]
        status = cli_json("status", "--config", str(config))
        row = next(b for b in status["backends"] if b["name"] == victim)
        assert row["state"] == "stopped"
        time.sleep(2)  # the supervisor leaves a drained backend alone
        row = next(
            b
            for b in cli_json("status", "--config", str(config))["backends"]
            if b["name"] == victim
        )
        assert row["state"] == "stopped"
        cli("undrain", victim, "--config", str(config))
        seen = set()
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", base), timeout=3) as sock:
                seen.add(sock.recv(100).decode().split()[1])
        assert victim in seen
    finally:
        cli("down", "--purge", "--config", str(config), check=False)


def test_rolling_restart_keeps_all_but_one_serving(tmp_path, free_block):
    base = free_block(140)
    config = write_config(tmp_path, base, name="rr", containers=4)
    try:
        cli("up", "--config", str(config))
        before = {
            b["name"]: b["pid"] for b in cli_json("status", "--config", str(config))["backends"]
        }
        serving: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                rows = cli_json("status", "--config", str(config))["backends"]
                serving.append(
                    sum(b["state"] == "running" and b["health"] == "healthy" for b in rows)
                )
                time.sleep(0.2)

        sampler = threading.Thread(target=sample)
        sampler.start()
        reports: list[LoadReport] = []
        spec = LoadSpec("127.0.0.1", base, clients=200, duration_s=10, rate_kbps=8, ramp_s=9)
        load = threading.Thread(target=lambda: reports.append(asyncio.run(run_load(spec))))
        load.start()
        result = cli_json("restart", "--all", "--timeout", "1", "--config", str(config))
        done.set()
        sampler.join(10)
        load.join(30)
        assert result["restarted"] == ["rr-1", "rr-2", "rr-3", "rr-4"]
        after = {
            b["name"]: b["pid"] for b in cli_json("status", "--config", str(config))["backends"]
        }
        assert all(after[n] != before[n] for n in before)  # every one was restarted
        assert serving and min(serving) >= 3  # never more than one out at a time
        assert reports[0].failed == 0  # new connections kept landing on the others
    finally:
        cli("down", "--purge", "--config", str(config), check=False)

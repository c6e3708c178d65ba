"""A real fleet: simulator backends as processes (and containers) behind real nginx / HAProxy."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import psutil
import pytest
from fleet_helpers import PURGE, cli, cli_json, write_config


def greeting_via(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.settimeout(3)
        return sock.recv(200).decode().split()[1]


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(params=["nginx", "haproxy"])
def process_fleet(request, tmp_path, free_block):
    base = free_block(140)
    # A name of its own for each test (pfn-utcn: test_up_twice_changes_nothing, nginx): tests
    # of this file may run at the same time (tests/conftest.py, SPREAD_FILES).
    initials = "".join(word[0] for word in request.node.originalname.split("_")[1:])
    name = f"pf{request.param[0]}-{initials}"
    config = write_config(tmp_path, base, name=name, containers=3, front=request.param)
    yield config, base
    cli(*PURGE, "--config", str(config), check=False)


def test_up_twice_changes_nothing(process_fleet):
    config, base = process_fleet
    first = cli_json("up", "--config", str(config))
    assert first["changed"] is True
    assert [a["kind"] for a in first["actions"]] == ["create"] * 3
    assert first["front"] == "started"
    second = cli_json("up", "--config", str(config))
    assert second["changed"] is False
    assert [a["kind"] for a in second["actions"]] == ["keep"] * 3
    assert second["front"] == "unchanged"
    seen = {greeting_via(base) for _ in range(12)}
    assert len(seen) == 3  # every backend serves through the front
    front_logs = [
        p for p in config.parent.rglob("*.log")
        if p.name in ("nginx-error.log", "stream-access.log", "haproxy.log")
    ]  # fmt: skip
    assert front_logs and all(p.stat().st_mode & 0o777 == 0o640 for p in front_logs)


def test_status_reports_every_backend_and_they_run_without_privileges(process_fleet):
    """How fast status is: benchmarks/bench_status.py (not a wall-clock bound here)."""
    config, _ = process_fleet
    cli("up", "--config", str(config))
    status = cli_json("status", "--config", str(config))
    assert [b["health"] for b in status["backends"]] == ["healthy"] * 3
    assert all(b["rss_bytes"] > 0 and b["pid"] for b in status["backends"])
    assert status["front"]["running"] and status["front"]["not_listening"] == []
    assert status["elapsed_ms"] > 0
    for backend in status["backends"]:  # cap_drop = ["ALL"], no_new_privileges = true
        fields = dict(
            line.split(":\t", 1)
            for line in Path(f"/proc/{backend['pid']}/status").read_text().splitlines()
            if ":\t" in line
        )
        assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0, fields
        assert fields["NoNewPrivs"].strip() == "1"


def test_scale_up_and_down_keeps_data(process_fleet):
    config, base = process_fleet
    cli("up", "--config", str(config))
    cli("scale", "5", "--config", str(config))
    assert "containers = 5" in config.read_text()
    status = cli_json("status", "--config", str(config))
    assert len(status["backends"]) == 5
    assert {greeting_via(base) for _ in range(25)} == {
        f"{status['cluster']}-{i}" for i in range(1, 6)
    }
    third_listen = status["backends"][2]["listen"]
    cli("scale", "2", "--config", str(config))
    status = cli_json("status", "--config", str(config))
    assert [b["name"] for b in status["backends"]] == [f"{status['cluster']}-{i}" for i in (1, 2)]
    assert {greeting_via(base) for _ in range(12)} <= {f"{status['cluster']}-{i}" for i in (1, 2)}
    host, port = third_listen.rsplit(":", 1)
    assert not listening(int(port))  # the third backend is gone, its port free
    with socket.socket() as squatter:  # another process takes the third backend's port
        # The greetings just served leave TIME_WAIT sockets on that port when the
        # backend closed first; a stranger's server sets SO_REUSEADDR like any other.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((host, int(port)))
        squatter.listen()
        refused = cli("scale", "3", "--config", str(config), check=False)
    assert refused.returncode == 2 and "nothing changed" in refused.stderr
    assert "containers = 2" in config.read_text()  # a refused scale leaves the file alone
    removed_key = Path(
        config.parent / "state/process" / f"{status['cluster']}-5/data/conduit_key.json"
    )
    assert removed_key.exists()  # the identity key outlives the backend


def test_down_leaves_nothing_running(process_fleet):
    config, base = process_fleet
    cli("up", "--config", str(config))
    status = cli_json("status", "--config", str(config))
    pids = [b["pid"] for b in status["backends"]] + [status["front"]["pid"]]
    ports = [base] + [int(b["listen"].rsplit(":", 1)[1]) for b in status["backends"]]
    result = cli_json("down", "--config", str(config))
    assert len(result["stopped"]) == 3 and result["front_stopped"]
    time.sleep(0.2)
    assert not [pid for pid in pids if psutil.pid_exists(pid)]
    assert not [port for port in ports if listening(port)]
    keys = list((config.parent / "state/process").glob("*/data/conduit_key.json"))
    assert len(keys) == 3  # data kept without --purge


def test_restart_and_logs(process_fleet):
    config, _ = process_fleet
    cli("up", "--config", str(config))
    name = cli_json("status", "--config", str(config))["backends"][0]["name"]
    before = (config.parent / "state/process" / name / "data/conduit_key.json").read_bytes()
    cli("restart", name, "--config", str(config))
    status = cli_json("status", "--config", str(config))
    assert status["backends"][0]["restarts"] == 1
    assert status["backends"][0]["health"] == "healthy"
    after = (config.parent / "state/process" / name / "data/conduit_key.json").read_bytes()
    assert before == after
    log = cli("logs", name, "--tail", "50", "--config", str(config)).stdout
    assert "conduit-sim" in log and "Stopped." in log
    changes = cli_json("events", "--kind", "change", "--config", str(config))
    assert [(e["data"]["command"], e["backend"]) for e in changes] == [
        ("up", None),
        ("restart", name),
    ]


def test_bad_backend_name_is_input_error(process_fleet):
    config, _ = process_fleet
    result = cli("logs", "nope-9", "--config", str(config), check=False)
    assert result.returncode == 2 and "no backend named nope-9" in result.stderr


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_broken_front_config_is_refused_and_old_front_keeps_serving(
    kind, tmp_path, free_block, monkeypatch
):
    from conduitctl.errors import ValidationFailed
    from conduitctl.front import front_for
    from conduitctl.hostinfo import render_env
    from conduitctl.render import haproxy as haproxy_render
    from conduitctl.render import nginx as nginx_render
    from conduitctl.render.base import Rendered
    from conduitctl.settings import load_settings

    base = free_block(140)
    config = write_config(tmp_path, base, name=f"bf{kind[0]}", containers=2, front=kind)
    try:
        cli("up", "--config", str(config))
        settings = load_settings(config)
        front = front_for(settings, render_env(settings, config))
        live = Path(front.status().config or "")
        before = live.read_bytes()
        pid = front.status().pid
        module = nginx_render if kind == "nginx" else haproxy_render
        broken = Rendered(text=before.decode() + "\nthis is not a directive;\n", filename=live.name)
        monkeypatch.setattr(module, "render_config", lambda *a, **k: broken)
        with pytest.raises(ValidationFailed) as caught:
            front.apply()
        assert kind in str(caught.value)
        assert live.read_bytes() == before  # the live config was not replaced
        status = front.status()
        assert status.running and status.pid == pid
        assert greeting_via(base).startswith(f"bf{kind[0]}-")  # still serving
    finally:
        cli(*PURGE, "--config", str(config), check=False)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
@pytest.mark.parametrize("runtime", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_fleet_holds_1000_clients_through_the_front(runtime, kind, request, tmp_path, free_block):
    if runtime == "docker":
        request.getfixturevalue("sim_image")
    base = free_block(140)
    name = f"l{runtime[0]}{kind[0]}"
    config = write_config(tmp_path, base, name=name, containers=4, front=kind, runtime=runtime)
    try:
        cli("up", "--config", str(config))
        report = cli_json(
            "loadtest", "--config", str(config), "--clients", "1000", "--duration", "6",
            "--rate", "8", "--max-failed-ratio", "0",
        )  # fmt: skip
        assert report["connected"] == 1000 and report["failed"] == 0
        assert report["sessions_dropped"] == 0
        assert sorted(report["per_backend"]) == [f"{name}-{i}" for i in range(1, 5)]
        assert report["balance_ratio"] < 1.5  # least connections spreads the sessions
        status = cli_json("status", "--config", str(config))
        assert status["totals"]["healthy"] == 4
    finally:
        cli(*PURGE, "--config", str(config), check=False)

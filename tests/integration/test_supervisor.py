"""The supervisor against real faults: a fleet of simulators behind nginx, the daemon started
by `up`, faults injected for real (SIGKILL, a hang, a crash loop, a dead front, an OOM)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from fleet_helpers import (
    FAST_HEALTH,
    PURGE,
    cli,
    cli_json,
    daemon_metrics,
    wait_for,
    wait_ticks,
    write_config,
)

from conduitctl.events import Event
from conduitctl.store import Store


def events_of(config: Path, backend: str | None = None) -> list[Event]:
    with Store(config.parent / "state/history.db") as store:
        return store.events(backend=backend)


def first(events: list[Event], kind: str, after: float = 0.0) -> Event | None:
    return next((e for e in events if e.kind.value == kind and e.ts >= after), None)


def backend_pid(config: Path, name: str) -> int:
    status = cli_json("status", "--config", str(config))
    return next(b["pid"] for b in status["backends"] if b["name"] == name)


@pytest.fixture
def fleet(tmp_path, free_block) -> Iterator[Callable[..., Path]]:
    configs: list[Path] = []

    def make(name: str, containers: int = 3, extra: str = FAST_HEALTH, **kw: Any) -> Path:
        config = write_config(
            tmp_path / name, free_block(140), name=name, containers=containers, extra=extra, **kw
        )
        configs.append(config)
        cli("up", "--config", str(config))
        return config

    yield make
    for config in configs:
        cli(*PURGE, "--config", str(config), check=False)


def test_killed_backend_leaves_the_front_in_under_a_second_and_recovers(fleet):
    config = fleet("svk")
    victim = "svk-2"
    pid = backend_pid(config, victim)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: first(events_of(config, victim), "front_in"), 15, "the backend back in")
    events = events_of(config, victim)
    death, out, restart = (
        first(events, "death"),
        first(events, "front_out"),
        first(events, "restart"),
    )
    assert death and out and restart
    assert out.ts - death.ts < 1.0  # event-driven, not the next probe
    assert "exit code 137" in death.message
    status = cli_json("status", "--config", str(config))
    row = next(b for b in status["backends"] if b["name"] == victim)
    assert row["health"] == "healthy" and row["pid"] != pid
    assert first(events_of(config, victim), "front_in").ts - death.ts < 5.0  # crash -> healthy


def test_hung_backend_is_taken_out_and_restarted(fleet):
    config = fleet("svh")
    victim = "svh-1"
    pid = backend_pid(config, victim)
    # the supervisor has seen every backend healthy: the hang is a change of health
    wait_for(lambda: daemon_metrics(config).get("conduitctl_backend_healthy") == 3, 10, "healthy")
    os.kill(pid, signal.SIGUSR1)  # the simulator stops answering but stays alive
    wait_for(lambda: first(events_of(config, victim), "front_in"), 20, "the backend back in")
    events = events_of(config, victim)
    unhealthy = next(e for e in events if e.kind.value == "health" and not e.data["healthy"])
    out = first(events, "front_out")
    assert out and out.ts >= unhealthy.ts
    assert first(events, "restart")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_with_hang_check_greetings_a_hang_is_out_before_any_probe_sees_it(fleet):
    """health.hang_check = "greetings": every station greeted every 0.4 s finds a hang with
    no traffic at all, before the 3 s probes (fall 2) would."""
    slow_probes = '[health]\ninterval = "3s"\ntimeout = "1s"\nrestart_after = "30s"\n'
    config = fleet("svq", containers=2, extra=slow_probes + 'hang_check = "greetings"\n')
    victim = "svq-1"
    pid = backend_pid(config, victim)
    wait_for(lambda: daemon_metrics(config).get("conduitctl_backend_healthy") == 2, 20, "healthy")
    hung_at = time.time()
    os.kill(pid, signal.SIGUSR1)  # alive, silent
    wait_for(lambda: first(events_of(config, victim), "front_out", after=hung_at), 10,
             "the hung station out of the front")  # fmt: skip
    # The watch's finding, not the probes' ("timeout"); how fast: benchmarks/bench_hang.py
    unhealthy = next(e for e in events_of(config, victim)
                     if e.kind.value == "health" and not e.data["healthy"])  # fmt: skip
    assert "no greeting within 250 ms" in unhealthy.message
    os.kill(pid, signal.SIGUSR2)  # it answers again


def test_dead_front_is_restarted(fleet):
    config = fleet("svf")
    front = cli_json("status", "--config", str(config))["front"]
    killed_at = time.time()
    os.kill(front["pid"], signal.SIGKILL)
    wait_for(lambda: first(events_of(config), "front_restart"), 10, "the front restarted")
    down = first(events_of(config), "front_down", after=killed_at)
    assert down is not None and down.ts - killed_at < 0.25  # a pidfd event, not the next tick
    fired = wait_for(lambda: first(events_of(config), "alert_fired", after=killed_at), 5, "alert")
    assert "front" in fired.message

    def serving() -> bool:
        status = cli_json("status", "--config", str(config))["front"]
        return status["running"] and not status["not_listening"] and status["pid"] != front["pid"]

    wait_for(serving, 10, "the new front listening")


def test_daemon_killed_with_sigkill_adopts_the_fleet_without_restarts(fleet):
    config = fleet("svd")
    before = {b["name"]: b["pid"] for b in cli_json("status", "--config", str(config))["backends"]}
    daemon = int((config.parent / "state/daemon.pid").read_text())
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(daemon), 5, "the daemon gone")
    restarted_at = time.time()
    result = cli_json("up", "--config", str(config))
    assert result["changed"] is False and result["daemon_pid"] != daemon
    wait_ticks(config, 6)  # several ticks of the new daemon (3 s of them)
    status = cli_json("status", "--config", str(config))
    after = {b["name"]: b["pid"] for b in status["backends"]}
    assert after == before  # nobody was restarted
    assert status["supervisor"]["pid"] == result["daemon_pid"]
    events = events_of(config)
    start = first(events, "daemon_start", after=restarted_at)
    assert start and start.data["running"] == 3
    assert not [e for e in events if e.ts >= restarted_at and e.kind.value in ("restart", "death")]


@pytest.fixture
def smtp(free_port) -> Iterator[Any]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    messages: list[Any] = []

    class Keep(Message):
        def handle_message(self, message: Any) -> None:
            messages.append(message)

    controller = Controller(Keep(), hostname="127.0.0.1", port=free_port())
    controller.start()
    controller.messages = messages  # type: ignore[attr-defined]
    yield controller
    controller.stop()


def kill_fresh_pids(config: Path, name: str, count: int) -> None:
    """SIGKILL `count` successive processes of backend `name`, each as soon as it runs."""
    seen: set[int] = set()
    for _ in range(count):
        pid = wait_for(
            lambda: (p := backend_pid(config, name)) and p not in seen and p, 15, "a fresh pid"
        )
        seen.add(pid)
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)


def test_crash_loop_alerts_by_webhook_and_email_and_the_restarts_go_on(fleet, webhook, smtp):
    smtp_port = smtp.port
    extra = (
        FAST_HEALTH
        + 'crash_loop_restarts = 3\ncrash_loop_window = "60s"\nmin_healthy = "3s"\n'
        + "\n[alerts]\nnotifiers = ["
        + f'"json://127.0.0.1:{webhook.port}/hook", '
        + f'"mailto://127.0.0.1:{smtp_port}?from=alerts@example.com&to=ops@example.com"]\n'
    )
    config = fleet("svc", containers=2, extra=extra)
    victim = "svc-1"
    kill_fresh_pids(config, victim, 4)  # 3 restarts allowed; the 4th death is the loop
    loop = wait_for(lambda: first(events_of(config, victim), "crash_loop"), 15, "a crash loop")
    assert loop.data["restarts"] == 3
    assert "restarts go on" in loop.message
    # It is not given up on: restarted again, healthy, back into the front.
    back = wait_for(
        lambda: first(events_of(config, victim), "front_in", after=loop.ts), 30, "back in"
    )
    restarts = [e for e in events_of(config, victim) if e.kind.value == "restart"]
    assert len(restarts) >= 4 and restarts[-1].ts >= loop.ts
    post = wait_for(
        lambda: next((p for p in webhook.bodies if "crash" in json.dumps(p).lower()), None),
        20,
        "the webhook notification",
    )
    assert victim in json.dumps(post)
    mail = wait_for(lambda: smtp.messages, 20, "the e-mail")
    assert "crash" in mail[0]["Subject"].lower()
    # Healthy for min_healthy: the loop is over and its alert resolves by itself.
    resolved = wait_for(
        lambda: next(
            (e for e in events_of(config)
             if e.kind.value == "alert_resolved" and "crash" in e.message and e.ts > back.ts),
            None,
        ),
        30,
        "the crash-loop alert resolved",
    )  # fmt: skip
    assert victim in resolved.message or resolved.backend == victim
    fired = [e for e in events_of(config) if e.kind.value == "alert_fired" and "crash" in e.message]
    assert len(fired) == 1  # said once


@pytest.mark.parametrize("runtime", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_oom_kill_is_reported_as_oom(fleet, runtime, request):
    if runtime == "docker":
        request.getfixturevalue("sim_image")
    name = f"so{runtime[0]}"
    config = fleet(
        name, containers=1, runtime=runtime, memory="64m", extra_args=["--leak-mb-per-s", "20"]
    )
    oom = wait_for(lambda: first(events_of(config, f"{name}-1"), "oom"), 30, "an OOM event")
    assert "OOM" in oom.message
    death = wait_for(lambda: first(events_of(config, f"{name}-1"), "death"), 10, "the death")
    assert abs(death.ts - oom.ts) < 5
    if runtime == "process":
        assert "OOM-killed" in death.message  # from the backend's own memory cgroup


def test_degradation_raises_a_full_survivor_then_restores_it(fleet):
    import asyncio
    import urllib.request

    from conduitctl.drills.loadtest import LoadSpec, run_load
    from conduitctl.runtime import runtime_for
    from conduitctl.settings import load_settings

    extra = (
        FAST_HEALTH + 'degrade_after = "2s"\ncrash_loop_restarts = 2\ncrash_loop_window = "60s"\n'
    )
    config = fleet("svg", containers=3, max_clients=100, extra=extra)
    status = cli_json("status", "--config", str(config))
    front_port = int(status["front"]["listening"][0].rsplit(":", 1)[1])
    metrics = {b["name"]: b["metrics"] for b in status["backends"]}
    kill_fresh_pids(config, "svg-3", 3)  # svg-3 into a crash loop
    wait_for(lambda: first(events_of(config, "svg-3"), "crash_loop"), 15, "the crash loop")
    stop_killing = threading.Event()
    runtime = runtime_for(load_settings(config))

    def keep_it_down() -> None:  # the restarts go on: each one dies before it is healthy
        while not stop_killing.wait(0.05):
            for status in runtime.backends():
                if status.name == "svg-3" and status.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(status.pid, signal.SIGKILL)

    killer = threading.Thread(target=keep_it_down, daemon=True)
    killer.start()

    spec = LoadSpec("127.0.0.1", front_port, clients=190, duration_s=12, rate_kbps=8, ramp_s=1)
    load = threading.Thread(target=lambda: asyncio.run(run_load(spec)), daemon=True)
    load.start()
    raised = wait_for(lambda: first(events_of(config), "degrade"), 20, "a survivor raised")
    assert raised.backend in ("svg-1", "svg-2") and raised.data["to"] == 150

    def max_clients(name: str) -> float:
        try:
            with urllib.request.urlopen(f"http://{metrics[name]}/metrics", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return -1  # restarting

        line = next(x for x in text.splitlines() if x.startswith("conduit_max_common_clients "))
        return float(line.split()[1])

    wait_for(lambda: max_clients(raised.backend) == 150, 15, "the raised backend serving")
    load.join(20)
    stop_killing.set()
    killer.join(5)
    cli("restart", "svg-3", "--config", str(config))  # the operator repairs it
    try:
        restored = wait_for(lambda: first(events_of(config), "restore"), 30, "the restore")
    except AssertionError as exc:  # say what the supervisor did instead
        seen = [f"{e.kind.value} {e.backend}: {e.message}" for e in events_of(config)[-25:]]
        shown = cli_json("status", "--config", str(config))["backends"]
        health = [(b["name"], b["health"], b["health_detail"]) for b in shown]
        raise AssertionError(f"{exc}; status {health}; last events {seen}") from None
    assert restored.backend == raised.backend and restored.data["to"] == 100
    wait_for(lambda: max_clients(raised.backend) == 100, 15, "the configured max again")


def test_alerts_test_sends_to_every_notifier_and_fails_on_a_dead_one(tmp_path, webhook, free_port):
    config = write_config(tmp_path / "sat", free_port(), name="sat", containers=1)
    dead = free_port()  # nothing listens there
    text = config.read_text() + (
        "\n[alerts]\nnotifiers = ["
        f'"json://127.0.0.1:{webhook.port}/hook", "json://127.0.0.1:{dead}/hook"]\n'
    )
    config.write_text(text)
    result = cli("alerts", "test", "--json", "--config", str(config), check=False)
    assert result.returncode == 1  # one of two failed
    outcome = json.loads(result.stdout)
    assert [r["ok"] for r in outcome] == [True, False]
    assert all(r["target"] == "json://***" for r in outcome)  # secrets never printed
    post = wait_for(lambda: webhook.bodies, 10, "the test message")
    assert "test alert" in json.dumps(post[0]).lower()


def test_events_and_history_commands(fleet):
    config = fleet("seh", containers=2)
    wait_ticks(config, 4)  # a few ticks
    events = cli_json("events", "--config", str(config), "--since", "10m")
    # `up` records its change before it starts the supervisor
    assert [e["kind"] for e in events[:2]] == ["change", "daemon_start"]
    assert events[0]["data"]["command"] == "up"
    [out] = config.parent.rglob("daemon.out")  # the daemon's output: never world-readable
    assert out.stat().st_mode & 0o777 == 0o640
    deaths = cli_json("events", "--config", str(config), "--kind", "death")
    assert deaths == []
    points = cli_json("history", "--config", str(config), "--backend", "seh-1", "--since", "5m")
    assert points and points[-1]["series"] == "seh-1"
    assert points[-1]["values"]["running"] == 1
    host = cli_json("history", "--config", str(config), "--backend", "host", "--since", "5m")
    assert host and host[-1]["values"]["mem_total_bytes"] > 0
    bad = cli("events", "--config", str(config), "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_sighup_swaps_the_notifiers_a_revoked_url_is_never_used_again(fleet, webhook):
    from fleet_helpers import Webhook

    replacement = Webhook()
    try:
        extra = (
            FAST_HEALTH
            + 'crash_loop_restarts = 2\ncrash_loop_window = "60s"\n'
            + f'\n[alerts]\nnotifiers = ["json://127.0.0.1:{webhook.port}/hook"]\n'
        )
        config = fleet("shn", containers=2, extra=extra)
        config.write_text(
            config.read_text().replace(f"127.0.0.1:{webhook.port}", f"127.0.0.1:{replacement.port}")
        )
        cli("up", "--config", str(config))  # nothing to change: the supervisor re-reads it
        wait_ticks(config, 2)
        kill_fresh_pids(config, "shn-2", 3)
        wait_for(lambda: first(events_of(config, "shn-2"), "crash_loop"), 15, "the crash loop")
        post = wait_for(
            lambda: next((p for p in replacement.bodies if "crash" in json.dumps(p).lower()), None),
            20,
            "the new notifier's message",
        )
        assert "shn-2" in json.dumps(post)
        assert not [p for p in webhook.bodies if "crash" in json.dumps(p).lower()]  # revoked
    finally:
        replacement.close()

"""Shared helpers of the integration tests: write a conduit.toml on free loopback ports, run
the CLI, wait for a condition, watch a fleet's supervisor and backends, receive webhooks."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

CONDUITCTL = str(Path(sys.executable).with_name("conduitctl"))
HOST = "127.0.0.1"

# Probes every 500 ms, restarts without waiting: the supervisor's reactions within seconds.
FAST_HEALTH = """
[health]
interval = "500ms"
timeout = "400ms"
restart_backoff = "200ms"
restart_after = "2s"
"""


def write_config(
    directory: Path,
    base: int,
    *,
    name: str,
    containers: int,
    runtime: str = "process",
    front: str = "nginx",
    udp: bool = False,
    max_clients: int = 1000,
    image: str | None = None,
    memory: str = "512m",
    extra_args: list[str] | None = None,
    extra: str = "",
    as_root: bool = True,
) -> Path:
    """A sim fleet whose ports all sit in [base, base + 2 * 64 + 4). Process backends stay
    root (AS_ROOT) unless `as_root` is False."""
    listeners = [f'"tcp:127.0.0.1:{base}"']
    if udp:
        listeners.append(f'"udp:127.0.0.1:{base}"')
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "conduit.toml"
    config.write_text(
        f"""
[cluster]
name = "{name}"
containers = {containers}
runtime = "{runtime}"
state_dir = "{directory / "state"}"

[workload]
profile = "sim"
{f'image = "{image}"' if image else ""}
extra_args = {json.dumps(extra_args or [])}
max_clients = {max_clients}
bandwidth_mbps = -1
listen_port_base = {base + 4}
metrics_port_base = {base + 4 + 64}

[container]
nofile = 16384
memory = "{memory}"
{AS_ROOT if runtime == "process" and as_root else ""}

[front]
kind = "{front}"
bind = "127.0.0.1"
listeners = [{", ".join(listeners)}]
per_ip_limit = 0
stats_port = {base + 1}

[daemon]
metrics_port = {base + 2}
{extra}
"""
    )
    return config


# The simulator runs from this checkout's venv, whose Python only root can reach here (under
# /root): process backends stay root, by the named opt-out. test_privileges.py runs them as
# another user, from a Python that user can reach.
AS_ROOT = 'user = "0:0"\nallow_weak_hardening = true'

# A test's own fleet, gone for good: its keys are throwaway (no backup first).
PURGE = ("down", "--purge", "--yes", "--discard-keys")


def cli(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [CONDUITCTL, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "CONDUITCTL_CONFIG": ""},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"conduitctl {' '.join(args)} failed: {result.stderr}")
    return result


def cli_json(*args: str) -> Any:
    return json.loads(cli(*args, "--json").stdout)


def wait_keys(store: Any, names: list[str], timeout: float = 15) -> dict[str, bytes]:
    """Every named backend's identity key, waiting for each to be written (a backend writes
    it a moment after it starts)."""
    deadline = time.monotonic() + timeout
    found: dict[str, bytes] = {}
    while time.monotonic() < deadline:
        found = {n: data for n in names if (data := store.read(n)) is not None}
        if len(found) == len(names):
            return found
        time.sleep(0.05)
    raise AssertionError(f"keys never appeared: {sorted(set(names) - set(found))}")


def key_hashes(config: Path) -> dict[str, str]:
    """sha256 of every backend's identity key."""
    from conduitctl.ops import keys
    from conduitctl.settings import load_settings

    settings = load_settings(config)
    found = wait_keys(keys.store_for(settings), settings.backend_names(), timeout=20)
    return {name: hashlib.sha256(data).hexdigest() for name, data in found.items()}


def running_hashes(config: Path) -> dict[str, str | None]:
    """The config hash each backend runs with."""
    from conduitctl.runtime import runtime_for
    from conduitctl.settings import load_settings

    return {s.name: s.config_hash for s in runtime_for(load_settings(config)).backends()}


def wanted_hashes(config: Path) -> dict[str, str]:
    """The config hash conduit.toml wants for each backend."""
    from conduitctl.runtime.base import launch_specs
    from conduitctl.settings import load_settings

    return {s.name: s.config_hash() for s in launch_specs(load_settings(config))}


def wait_for(check: Callable[[], Any], timeout: float, what: str = "", every: float = 0.1) -> Any:
    """The first truthy value of `check()` within `timeout` s (tried once more when the time
    is up), else AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    result = check()
    if result:
        return result
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")


def metrics_of(port: int, host: str = HOST) -> dict[str, float]:
    """A /metrics page on loopback, sample name -> value (summed over labels); {} when it
    does not answer."""
    from conduitctl.observe.scrape import scrape

    found = scrape(host, port, timeout=2)
    return found.values if found.ok else {}


def daemon_metrics(config: Path) -> dict[str, float]:
    """The fleet's supervisor's exporter (on daemon.metrics_port), summed over labels."""
    from conduitctl.settings import load_settings

    return metrics_of(load_settings(config).daemon.metrics_port)


def daemon_ticks(config: Path) -> int:
    """Ticks the fleet's supervisor has completed since it started; -1 while none answers."""
    return int(daemon_metrics(config).get("conduitctl_ticks_total", -1))


def wait_ticks(config: Path, count: int, timeout: float = 30) -> None:
    """Wait until the supervisor has completed `count` more ticks than now: what a fixed
    sleep meant by "a few ticks", whatever the load on the machine."""
    first: list[int] = []

    def done() -> bool:
        ticks = daemon_ticks(config)
        if ticks >= 0 and not first:
            first.append(ticks)
        return bool(first) and ticks >= first[0] + count

    wait_for(done, timeout, f"{count} ticks of the supervisor")


def connected_clients(base: int, *indexes: int) -> int:
    """conduit_connected_clients summed over the write_config fleet's backends `indexes`
    (1-based), read from their own metrics ports; one that does not answer counts 0."""
    return sum(
        int(metrics_of(base + 4 + 64 + i - 1).get("conduit_connected_clients", 0)) for i in indexes
    )


class Webhook:
    """A webhook on 127.0.0.1 (stdlib http.server): each POST is answered with the next
    scripted status, then 200; every one answered 200 is kept in `requests` (path, content
    type and body: JSON, or a form as a dict)."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.requests: list[dict[str, Any]] = []
        self.hits = 0
        self.arrived = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook.arrived:
                    hook.hits += 1
                    code = hook.script.pop(0) if hook.script else 200
                    if code == 200:
                        kind = self.headers.get("Content-Type", "")
                        body = (
                            json.loads(raw or b"{}")
                            if "json" in kind
                            else {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                        )
                        hook.requests.append({"path": self.path, "type": kind, "body": body})
                        hook.arrived.notify_all()
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, scheme: str = "json", path: str = "hook") -> str:
        return f"{scheme}://{HOST}:{self.port}/{path}"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The bodies received, in order."""
        return [r["body"] for r in self.requests]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The requests once `count` have arrived; AssertionError after `timeout` s."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)
        assert len(self.requests) >= count, f"{len(self.requests)} of {count} arrived"
        return self.requests

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

"""Helpers for fleet tests: write a conduit.toml on free loopback ports, run the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONDUITCTL = str(Path(sys.executable).with_name("conduitctl"))


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
) -> Path:
    """A sim fleet whose ports all sit in [base, base + 2 * 64 + 4)."""
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


def wait_for(check: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    """The first truthy value of `check()` within `timeout` s, else AssertionError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

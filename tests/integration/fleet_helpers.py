"""Helpers for fleet tests: write a conduit.toml on free loopback ports, run the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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

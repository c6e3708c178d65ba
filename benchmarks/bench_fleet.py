"""Fleet benchmark: 8 simulator backends (process runtime) behind nginx on this host.

Measures, side by side in one run:
- the most concurrent clients the loadtest holds through the front with 0 failures and 0 drops
  (steps up to --max-clients; target >= 10,000; the review planned for 2,000);
- connections per second through the front;
- the front's throughput ratio: the same bulk echo load through nginx vs straight to the
  backends (target >= 0.9).

    .venv/bin/python benchmarks/bench_fleet.py [--max-clients 10000] [--hold 10] [--json]

Everything binds 127.0.0.1; the fleet is stopped at the end, even on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from conduitctl.drills.loadtest import LoadReport, LoadSpec, run_load
from conduitctl.fleet import desired_backends
from conduitctl.front import front_for
from conduitctl.hostinfo import render_env
from conduitctl.ops.converge import down, up
from conduitctl.runtime import runtime_for
from conduitctl.settings import load_settings

BACKENDS = 8


PY = sys.executable


def cli(*args: str) -> dict:
    out = subprocess.run(
        [PY, "-m", "conduitctl", *args, "--json"], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def teardown(config: str) -> None:
    """`down --purge`, with `--yes` where the CLI asks for it before deleting keys; loud
    when the fleet could not be stopped."""
    for extra in (["--yes", "--discard-keys"], []):  # this code; an older checkout
        argv = [PY, "-m", "conduitctl", "down", "--purge", *extra, "--config", config, "--json"]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode == 0:
            return
    print(f"warning: the fleet of {config} may still run: {done.stderr.strip()}", file=sys.stderr)


def free_base(count: int) -> int:
    import random

    for _ in range(200):
        base = random.randrange(20000, 32000 - count)
        ok = True
        for port in range(base, base + count):
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as sock:
                    try:
                        sock.bind(("127.0.0.1", port))
                    except OSError:
                        ok = False
            if not ok:
                break
        if ok:
            return base
    raise SystemExit("no free port block on loopback")


def write_config(
    directory: Path, base: int, *, name: str = "bench", max_clients: int = 2000
) -> Path:
    """8 simulator backends as processes behind nginx, every port in [base, base + 140)."""
    config = directory / "conduit.toml"
    config.write_text(
        f"""
[cluster]
name = "{name}"
containers = {BACKENDS}
runtime = "process"
state_dir = "{directory / "state"}"

[workload]
profile = "sim"
max_clients = {max_clients}
bandwidth_mbps = -1
listen_port_base = {base + 2}
metrics_port_base = {base + 2 + 64}

[container]
nofile = 16384
user = "0:0"  # the simulator runs from the venv, which only root may reach here
allow_weak_hardening = true

[front]
kind = "nginx"
bind = "127.0.0.1"
listeners = ["tcp:127.0.0.1:{base}"]
per_ip_limit = 0
nofile = 20000
worker_connections = 20000

[daemon]
metrics_port = {base + 1}
"""
    )
    return config


async def load_many(specs: list[LoadSpec]) -> list[LoadReport]:
    return list(await asyncio.gather(*(run_load(spec) for spec in specs)))


def capacity_step(port: int, clients: int, hold: float) -> LoadReport:
    ramp = max(clients / 2500, 1.0)
    spec = LoadSpec(
        "127.0.0.1",
        port,
        clients=clients,
        duration_s=ramp + hold,
        rate_kbps=8,
        ramp_s=ramp,
        connect_timeout_s=10,
    )
    return asyncio.run(run_load(spec))


def throughput(port_groups: list[int], clients: int, seconds: float, rate_kbps: float) -> float:
    """Total echo Mbps of `clients` bulk clients spread over the given ports."""
    per = clients // len(port_groups)
    specs = [
        LoadSpec(
            "127.0.0.1", port, clients=per, duration_s=seconds, rate_kbps=rate_kbps, ramp_s=0.5
        )
        for port in port_groups
    ]
    reports = asyncio.run(load_many(specs))
    return sum(r.throughput.mbps for r in reports)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-clients", type=int, default=15000)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results: dict[str, object] = {
        "host": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
        "backends": BACKENDS,
    }
    with tempfile.TemporaryDirectory(prefix="conduitctl-bench-") as tmp:
        base = free_base(140)
        config = write_config(Path(tmp), base)
        settings = load_settings(config)
        runtime = runtime_for(settings)
        front = front_for(settings, render_env(settings, config))
        try:
            up(settings, runtime, front)
            steps = []
            held = 0
            for clients in (1000, 2000, 5000, 10000, 15000):
                if clients > args.max_clients:
                    break
                report = capacity_step(base, clients, args.hold)
                ok = report.failed == 0 and report.sessions_dropped == 0
                steps.append(
                    {
                        "clients": clients,
                        "connected": report.connected,
                        "failed": report.failed,
                        "dropped": report.sessions_dropped,
                        "connections_per_second": round(report.connections_per_second),
                        "p99_ms": report.latency.p99_ms,
                        "balance_ratio": report.balance_ratio,
                    }
                )
                print(f"capacity {clients:>6}: {steps[-1]}", file=sys.stderr)
                if not ok:
                    break
                held = clients
            results["capacity"] = {
                "held_clients": held,
                "steps": steps,
                "target": 10000,
                "review_target": 2000,
            }

            burst = asyncio.run(
                run_load(
                    LoadSpec(
                        "127.0.0.1",
                        base,
                        clients=4000,
                        duration_s=6,
                        rate_kbps=0,
                        ramp_s=0,
                        connect_timeout_s=10,
                    )
                )
            )
            results["connect_burst"] = {
                "clients": 4000,
                "connected": burst.connected,
                "failed": burst.failed,
                "connections_per_second": round(burst.connections_per_second),
                "p99_ms": burst.latency.p99_ms,
            }
            print(f"burst: {results['connect_burst']}", file=sys.stderr)

            direct_ports = [b.listen_port for b in desired_backends(settings)]
            assert all(port is not None for port in direct_ports)
            bulk = dict(clients=64, seconds=8.0, rate_kbps=50_000)
            via_front = throughput([base], **bulk)  # type: ignore[arg-type]
            direct = throughput([p for p in direct_ports if p], **bulk)  # type: ignore[arg-type]
            results["throughput"] = {
                "via_front_mbps": round(via_front, 1),
                "direct_mbps": round(direct, 1),
                "ratio": round(via_front / direct, 3) if direct else None,
                "target_ratio": 0.9,
                "load": bulk,
            }
        finally:
            down(settings, runtime, front, purge=True)

    if args.json:
        print(json.dumps(results, indent=2))
    else:
        cap = results["capacity"]
        thr = results["throughput"]
        print(f"{'measure':42} {'result':>12} {'target':>10} {'anchor':>14}")
        print(
            f"{'concurrent clients held through nginx':42} {cap['held_clients']:>12,} "  # type: ignore[index]
            f"{'>= 10,000':>10} {'review 2,000':>14}"
        )
        burst = results["connect_burst"]
        print(
            f"{'connections per second (4,000 at once)':42} "
            f"{burst['connections_per_second']:>12,} {'':>10} {'':>14}"
        )  # type: ignore[index]
        print(
            f"{'throughput via front / direct':42} {thr['ratio']:>12} {'>= 0.9':>10} "  # type: ignore[index]
            f"{'':>14}"
        )
        print(f"  via front {thr['via_front_mbps']} Mbps, direct {thr['direct_mbps']} Mbps")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main())


def failures(report: LoadReport, clients: int, target: str) -> dict[str, object]:
    """A load test's new connections failed and sessions dropped, as the benchmarks print."""
    return {
        "clients": clients,
        "new_connections_failed": report.failed,
        "failed_by_reason": {k: v for k, v in report.failed_by_reason.items() if v},
        "established_sessions_dropped": report.sessions_dropped,
        "target": target,
    }

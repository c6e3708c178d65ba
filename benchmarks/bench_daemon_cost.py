"""Supervisor cost as the fleet grows: CPU (% of one core) and RSS of the daemon at 8, 32
and 64 simulator backends (process runtime), default health settings (1 s probes), the front
nginx (or none, with --front none), the daemon started by `up`.

Each size: up, a warm-up, then the daemon's own CPU seconds (psutil cpu_times, user + system)
over a fixed window; down. Targets: <= 1 % of a core at 8 backends, and linear in N: the
per-backend slope, and how far 64 is from 8 times the 8-backend cost.

    .venv/bin/python benchmarks/bench_daemon_cost.py [--sizes 8,32,64] [--window 30]
        [--warmup 10] [--front nginx|none] [--held-clients N] [--json]

--held-clients N holds N idle client sessions through the front during the warm-up and the
window (a fleet serving clients: the hang watch looks at full pace then).

Everything binds 127.0.0.1; each fleet is stopped at the end, even on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from bench_fleet import cli, free_base, teardown

from conduitctl.drills.loadtest import LoadSpec, run_load

PY = sys.executable
TARGET_AT_8 = 1.0  # % of one core


def write_config(directory: Path, count: int, front: str, base: int) -> Path:
    """`count` simulator backends as processes; every port in [base, base + 2 + 2 * count)."""
    front_section = (
        f'kind = "nginx"\nbind = "127.0.0.1"\nlisteners = ["tcp:127.0.0.1:{base}"]\n'
        if front == "nginx"
        else 'kind = "none"\n'
    )
    config = directory / "conduit.toml"
    config.write_text(
        f"""
[cluster]
name = "cost{count}"
containers = {count}
runtime = "process"
state_dir = "{directory / "state"}"

[workload]
profile = "sim"
max_clients = 100
bandwidth_mbps = -1
listen_port_base = {base + 2}
metrics_port_base = {base + 2 + count}

[container]
user = "0:0"  # the simulator runs from the venv, which only root may reach here
allow_weak_hardening = true

[front]
{front_section}
[daemon]
metrics_port = {base + 1}
"""
    )
    return config


def wait_healthy(config: Path, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cli("status", "--config", str(config))["totals"]["healthy"] == count:
            return
        time.sleep(1)
    raise SystemExit(f"{count} backends never all healthy")


def hold_clients(port: int, clients: int, seconds: float) -> threading.Thread:
    """`clients` sessions held (connected, idle) through the front on `port` for `seconds`."""
    spec = LoadSpec("127.0.0.1", port, clients=clients, duration_s=seconds, ramp_s=2.0)
    thread = threading.Thread(target=lambda: asyncio.run(run_load(spec)), daemon=True)
    thread.start()
    return thread


def measure(
    count: int,
    front: str,
    warmup: float,
    window: float,
    hang_check: str = "queues",
    held_clients: int = 0,
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="conduitctl-bench-") as tmp:
        base = free_base(2 + 2 * count)
        config = write_config(Path(tmp), count, front, base)
        if hang_check != "queues":
            config.write_text(config.read_text() + f'\n[health]\nhang_check = "{hang_check}"\n')
        try:
            daemon = psutil.Process(cli("up", "--config", str(config))["daemon_pid"])
            wait_healthy(config, count)
            load = hold_clients(base, held_clients, warmup + window + 5) if held_clients else None
            time.sleep(warmup)
            before, started = daemon.cpu_times(), time.monotonic()
            time.sleep(window)
            after, elapsed = daemon.cpu_times(), time.monotonic() - started
            busy = after.user + after.system - before.user - before.system
            row = {
                "backends": count,
                "cpu_percent_of_core": round(busy / elapsed * 100, 2),
                "rss_mb": round(daemon.memory_info().rss / 2**20, 1),
            }
            if load is not None:
                row["clients_served"] = cli("status", "--config", str(config))["totals"].get(
                    "connected"
                )
                load.join()
            return row
        finally:
            teardown(str(config))


def linearity(rows: list[dict[str, float]]) -> dict[str, float]:
    """Least-squares slope and intercept, and the largest size against `N / N0` times the
    smallest (what exactly linear, per backend, would cost there)."""
    xs = [r["backends"] for r in rows]
    ys = [r["cpu_percent_of_core"] for r in rows]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    proportional = ys[0] * xs[-1] / xs[0]
    return {
        "slope_percent_per_backend": round(slope, 4),
        "intercept_percent": round(mean_y - slope * mean_x, 3),
        f"at_{xs[-1]}_if_proportional_to_{xs[0]}": round(proportional, 2),
        f"at_{xs[-1]}_vs_proportional": round(ys[-1] / proportional, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,32,64")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--front", choices=("nginx", "none"), default="nginx")
    parser.add_argument("--hang-check", choices=("queues", "greetings"), default="queues")
    parser.add_argument("--held-clients", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for count in sizes:
        rows.append(
            measure(count, args.front, args.warmup, args.window, args.hang_check, args.held_clients)
        )
        print(f"daemon at {count}: {rows[-1]}", file=sys.stderr)
    results: dict[str, object] = {
        "front": args.front,
        "hang_check": args.hang_check,
        "held_clients": args.held_clients,
        "window_s": args.window,
        "probe_interval_s": 1.0,
        "rows": rows,
        "target": f"<= {TARGET_AT_8} % of one core at 8 backends, linear in N",
    }
    if len(rows) > 1:
        results["linearity"] = linearity(rows)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    held = f", {args.held_clients} clients held" if args.held_clients else ", no clients"
    print(f"front {args.front}, 1 s probes, {args.window:g} s window after {args.warmup:g} s{held}")
    print(f"{'backends':>8} {'cpu % of a core':>16} {'per backend':>12} {'rss':>9}")
    for row in rows:
        per = row["cpu_percent_of_core"] / row["backends"]
        print(
            f"{row['backends']:>8} {row['cpu_percent_of_core']:>14.2f} % {per:>10.3f} % "
            f"{row['rss_mb']:>6.1f} MB"
            + (f", {row['clients_served']:.0f} clients served" if "clients_served" in row else "")
        )
    at_8 = next((r for r in rows if r["backends"] == 8), None)
    if at_8 is not None:
        verdict = "pass" if at_8["cpu_percent_of_core"] <= TARGET_AT_8 else "FAIL"
        print(f"at 8: {at_8['cpu_percent_of_core']} % (target <= {TARGET_AT_8} %): {verdict}")
    for key, value in results.get("linearity", {}).items():  # type: ignore[attr-defined]
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Supervisor benchmark: 8 simulator backends (process runtime) behind nginx, default health
settings (1 s probes, fall 2, rise 2), the daemon started by `up`.

Measures, side by side with the anchors of DESIGN.md:
- failure -> out of the front, median over N SIGKILLs (anchors: the review's 5-minute cron;
  nginx passive 30 s; HAProxy inter 2 s x fall 3; Kubernetes readiness 10 s x 3);
- a hang (alive, answering nothing) -> out of the front, median over N hangs;
- crash -> healthy and back in the front, median (anchor: docker restart backoff; target 5 s);
- new connections failed while 2 of 8 backends are killed under 1,000 clients (target 0);
- the daemon's own CPU and RSS at 8 backends with 1 s probes (target <= 2 % of a core, 60 MB).

    .venv/bin/python benchmarks/bench_supervisor.py [--faults 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

from conduitctl.drills.loadtest import LoadSpec, run_load
from conduitctl.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from bench_fleet import failures, free_base, write_config

BACKENDS = 8
CONDUITCTL = str(Path(sys.executable).with_name("conduitctl"))


def cli(*args: str) -> dict:
    import subprocess

    out = subprocess.run([CONDUITCTL, *args, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def pids(config: Path) -> dict[str, int]:
    status = cli("status", "--config", str(config))
    return {b["name"]: b["pid"] for b in status["backends"] if b["pid"]}


def wait_event(store_path: Path, backend: str, kind: str, after: float, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Store(store_path) as store:
            for event in store.events(since=after, backend=backend):
                if event.kind.value == kind:
                    return event
        time.sleep(0.05)
    return None


def fault_round(config: Path, store: Path, name: str, sig: signal.Signals) -> dict[str, float]:
    pid = pids(config)[name]
    injected = time.time()
    os.kill(pid, sig)
    out = wait_event(store, name, "front_out", injected - 0.01, 30)
    back = wait_event(store, name, "front_in", injected - 0.01, 60)
    if sig == signal.SIGUSR1 and psutil.pid_exists(pid):
        os.kill(pid, signal.SIGUSR2)  # in case the supervisor has not restarted it yet
    return {
        "out_s": out.ts - injected if out else float("nan"),
        "healthy_s": back.ts - injected if back else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, object] = {"backends": BACKENDS, "faults": args.faults}
    with tempfile.TemporaryDirectory(prefix="conduitctl-bench-") as tmp:
        base = free_base(140)
        config = write_config(Path(tmp), base, name="sup", max_clients=1000)
        store = Path(tmp) / "state/history.db"
        try:
            up = cli("up", "--config", str(config))
            daemon = psutil.Process(up["daemon_pid"])
            time.sleep(3)

            # The daemon at rest: 8 backends, 1 s probes.
            before, started = daemon.cpu_times(), time.time()
            time.sleep(30)
            after = daemon.cpu_times()
            cpu = (after.user + after.system - before.user - before.system) / (
                time.time() - started
            )
            results["daemon"] = {
                "cpu_percent_of_core": round(cpu * 100, 2),
                "rss_mb": round(daemon.memory_info().rss / 2**20, 1),
                "target": "<= 2 % of one core, <= 60 MB",
            }
            print(f"daemon: {results['daemon']}", file=sys.stderr)

            names = sorted(pids(config))
            kills = [fault_round(config, store, names[i % BACKENDS], signal.SIGKILL)
                     for i in range(args.faults)]  # fmt: skip
            hangs = [fault_round(config, store, names[(i + 3) % BACKENDS], signal.SIGUSR1)
                     for i in range(args.faults)]  # fmt: skip
            results["kill"] = {
                "out_of_front_median_s": round(statistics.median(k["out_s"] for k in kills), 3),
                "out_of_front_max_s": round(max(k["out_s"] for k in kills), 3),
                "crash_to_healthy_median_s": round(
                    statistics.median(k["healthy_s"] for k in kills), 3
                ),
            }
            results["hang"] = {
                "out_of_front_median_s": round(statistics.median(h["out_s"] for h in hangs), 3),
                "back_in_front_median_s": round(
                    statistics.median(h["healthy_s"] for h in hangs), 3
                ),
            }
            print(f"kill: {results['kill']}\nhang: {results['hang']}", file=sys.stderr)

            # 2 of 8 killed while 1,000 clients connect through the front.
            time.sleep(5)
            spec = LoadSpec("127.0.0.1", base, clients=1000, duration_s=12, rate_kbps=8,
                            ramp_s=8)  # fmt: skip

            async def load_and_kill():
                task = asyncio.create_task(run_load(spec))
                await asyncio.sleep(3)
                current = pids(config)
                for name in names[:2]:
                    os.kill(current[name], signal.SIGKILL)
                return await task

            report = asyncio.run(load_and_kill())
            results["kill_2_of_8_under_load"] = failures(
                report, 1000, "0 new connections failed (review: < 1 %)"
            )
            print(f"kill 2 of 8: {results['kill_2_of_8_under_load']}", file=sys.stderr)
        finally:
            cli("down", "--purge", "--yes", "--discard-keys", "--config", str(config))

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    k, h, d, u = (
        results["kill"],
        results["hang"],
        results["daemon"],
        results["kill_2_of_8_under_load"],
    )
    rows = [
        (
            "kill -> out of the front (median)",
            f"{k['out_of_front_median_s']} s",
            "<= 1 s",  # type: ignore[index]
            "cron 5 min; nginx passive 30 s; HAProxy 6 s; k8s 30 s",
        ),
        (
            "hang -> out of the front (median)",
            f"{h['out_of_front_median_s']} s",
            "",  # type: ignore[index]
            "same anchors",
        ),
        (
            "crash -> healthy, back in front (median)",
            f"{k['crash_to_healthy_median_s']} s",  # type: ignore[index]
            "<= 5 s",
            "docker restart backoff",
        ),
        (
            "new connections failed, 2 of 8 killed, 1k clients",
            str(u["new_connections_failed"]),
            "0",
            "review < 1 %",
        ),  # type: ignore[index]
        ("daemon CPU (8 backends, 1 s probes)", f"{d['cpu_percent_of_core']} %", "<= 2 %", ""),  # type: ignore[index]
        ("daemon RSS", f"{d['rss_mb']} MB", "<= 60 MB", ""),  # type: ignore[index]
    ]
    for row in rows:
        print(f"{row[0]:50} {row[1]:>10} {row[2]:>8}   {row[3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The hang window: 8 simulator backends (process runtime) behind nginx or HAProxy, default
health settings (1 s probes, 0.8 s timeout, fall 2), the daemon started by `up`.

Measures:
- a hang (SIGUSR1: alive, answering nothing) -> out of the front, median and max over N
  hangs (target <= 1 s; before the sub-second greeting watch: 2.35 s, issue #10). Behind
  nginx, out is the supervisor's `front_out`; behind HAProxy, the moment HAProxy's own
  check marks the server DOWN (its stats socket, read every 10 ms), or the supervisor's
  front_out if that came first;
- new connections failed while one backend hangs during a 600-client ramp (target <= 2;
  before: 13-18 in the chaos drill).

    .venv/bin/python benchmarks/bench_hang.py [--faults 5] [--front nginx|haproxy]
        [--hang-check queues|greetings] [--json]
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

sys.path.insert(0, str(Path(__file__).parent))
from bench_fleet import failures, free_base, write_config
from bench_supervisor import BACKENDS, cli, pids, wait_event

from conduitctl.drills.loadtest import LoadSpec, run_load

CLIENTS, RAMP_S, HANG_AT_S = 600, 8.0, 3.0


def haproxy_down_at(socket_path: Path, name: str, timeout: float = 10.0) -> float | None:
    """When HAProxy's own check marked `name` DOWN (srv_op_state 0), read every 10 ms."""
    from conduitctl.front.haproxy import runtime_command

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in runtime_command(socket_path, "show servers state").splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[3] == name and fields[5] == "0":
                return time.time()
        time.sleep(0.01)
    return None


def hang_round(config: Path, store: Path, name: str, haproxy: Path | None) -> float:
    """Seconds from SIGUSR1 to out of the front; the backend is then let go on."""
    pid = pids(config)[name]
    injected = time.time()
    os.kill(pid, signal.SIGUSR1)
    down = haproxy_down_at(haproxy, name) if haproxy else None
    out = wait_event(store, name, "front_out", injected - 0.01, 30)
    if down is not None and (out is None or down < out.ts):
        return down - injected
    back = wait_event(store, name, "front_in", injected - 0.01, 60)
    if back is None:
        raise SystemExit(f"{name} never came back into the front")
    return out.ts - injected if out else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=5)
    parser.add_argument("--front", choices=("nginx", "haproxy"), default="nginx")
    parser.add_argument("--hang-check", choices=("queues", "greetings"), default="queues")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, object] = {
        "backends": BACKENDS,
        "faults": args.faults,
        "front": args.front,
        "hang_check": args.hang_check,
    }
    with tempfile.TemporaryDirectory(prefix="conduitctl-bench-") as tmp:
        base = free_base(140)
        config = write_config(Path(tmp), base, name="hng", max_clients=1000)
        if args.front == "haproxy":
            text = config.read_text().replace('kind = "nginx"', 'kind = "haproxy"')
            config.write_text(text.replace("[front]\n", f"[front]\nstats_port = {base + 139}\n"))
        if args.hang_check != "queues":
            text = config.read_text() + f'\n[health]\nhang_check = "{args.hang_check}"\n'
            config.write_text(text)
        store = Path(tmp) / "state/history.db"
        try:
            cli("up", "--config", str(config))
            time.sleep(3)
            names = sorted(pids(config))
            haproxy = None
            if args.front == "haproxy":
                from conduitctl.app.context import Fleet
                from conduitctl.render.haproxy import stats_socket_path

                haproxy = stats_socket_path(Fleet.load(config).env)
            outs = [
                hang_round(config, store, names[i % BACKENDS], haproxy) for i in range(args.faults)
            ]
            results["hang_out_of_front_s"] = {
                "median": round(statistics.median(outs), 3),
                "max": round(max(outs), 3),
                "all": [round(o, 3) for o in outs],
                "target": "<= 1 s (before: 2.35 s)",
            }
            print(f"hang -> out: {results['hang_out_of_front_s']}", file=sys.stderr)

            time.sleep(3)
            spec = LoadSpec("127.0.0.1", base, clients=CLIENTS, duration_s=RAMP_S + 4,
                            ramp_s=RAMP_S)  # fmt: skip
            victim = names[5]

            hung_at: list[float] = []

            async def load_and_hang():
                task = asyncio.create_task(run_load(spec))
                await asyncio.sleep(HANG_AT_S)
                hung_at.append(time.time())
                os.kill(pids(config)[victim], signal.SIGUSR1)
                return await task

            report = asyncio.run(load_and_hang())
            results["hang_under_load"] = failures(
                report, CLIENTS, "<= 2 new connections failed (before: 13-18)"
            )
            # How long the victim stayed in the supervisor's front under load: the window the
            # failures above fell into (HAProxy's own check may have closed it earlier).
            out = wait_event(store, victim, "front_out", hung_at[0] - 0.01, 1)
            results["hang_under_load"]["out_of_front_s"] = (
                round(out.ts - hung_at[0], 3) if out else None
            )
            print(f"hang under load: {results['hang_under_load']}", file=sys.stderr)
        finally:
            cli("down", "--purge", "--yes", "--discard-keys", "--config", str(config))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

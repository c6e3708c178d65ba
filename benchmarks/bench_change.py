"""Safe-change benchmark: rollback of 8 backends (process runtime, and docker when dockerd and
conduit-sim:local are here), side by side with the review's anchor (< 5 minutes) and the
target (<= 10 s, keys intact); and a rolling restart of 8 under load: the fewest backends
serving at any sample and the new connections that failed.

    .venv/bin/python benchmarks/bench_change.py [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from conduitctl.drills.loadtest import LoadSpec, run_load
from conduitctl.ops import keys
from conduitctl.settings import load_settings

sys.path.insert(0, str(Path(__file__).parent))
from bench_fleet import BACKENDS, free_base, write_config

CONDUITCTL = str(Path(sys.executable).with_name("conduitctl"))
PURGE = ("down", "--purge", "--yes", "--discard-keys")  # throwaway keys: no backup
REVIEW_ANCHOR_S = 300.0
TARGET_S = 10.0


def cli(*args: str) -> dict:
    out = subprocess.run([CONDUITCTL, *args, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def key_hashes(config: Path) -> dict[str, str]:
    settings = load_settings(config)
    store = keys.store_for(settings)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = {n: store.read(n) for n in settings.backend_names()}
        if all(found.values()):
            return {n: hashlib.sha256(d or b"").hexdigest() for n, d in found.items()}
        time.sleep(0.1)
    raise SystemExit("keys never appeared")


def docker_ready() -> bool:
    try:
        import docker

        docker.from_env(timeout=5).images.get("conduit-sim:local")
        return True
    except Exception:
        return False


def rollback_rounds(config: Path, rounds: int) -> dict[str, object]:
    """Change every backend (max clients), then time `rollback`; keys compared each round."""
    cli("up", "--no-daemon", "--config", str(config))
    keys_before = key_hashes(config)
    original = config.read_text()
    times = []
    for i in range(rounds):
        config.write_text(original.replace("max_clients = 2000", f"max_clients = {1000 + i}"))
        cli("up", "--no-daemon", "--config", str(config))
        started = time.monotonic()
        cli("rollback", "--config", str(config))
        times.append(time.monotonic() - started)
        assert config.read_text() == original
    intact = key_hashes(config) == keys_before
    median = statistics.median(times)
    return {
        "median_s": round(median, 2),
        "max_s": round(max(times), 2),
        "vs_review": round(REVIEW_ANCHOR_S / median, 1),
        "keys_intact": intact,
    }


def rolling_restart_under_load(config: Path, port: int) -> dict[str, object]:
    serving: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rows = cli("status", "--config", str(config))["backends"]
            serving.append(sum(r["state"] == "running" and r["health"] == "healthy" for r in rows))
            time.sleep(0.2)

    reports = []
    spec = LoadSpec("127.0.0.1", port, clients=400, duration_s=20, rate_kbps=8, ramp_s=18)
    load = threading.Thread(target=lambda: reports.append(asyncio.run(run_load(spec))))
    sampler = threading.Thread(target=sample)
    sampler.start()
    load.start()
    started = time.monotonic()
    cli("restart", "--all", "--timeout", "2", "--config", str(config))
    elapsed = time.monotonic() - started
    done.set()
    sampler.join(10)
    load.join(60)
    return {
        "elapsed_s": round(elapsed, 1),
        "min_serving": min(serving),
        "of": BACKENDS,
        "failed": reports[0].failed if reports else None,
    }


def docker_config(directory: Path, base: int) -> Path:
    config = write_config(directory, base, name="benchrbd")
    text = config.read_text().replace('runtime = "process"', 'runtime = "docker"')
    text = text.replace('user = "0:0"', 'user = "1000:1000"')  # the image's user, as shipped
    text = text.replace("[workload]\n", '[workload]\nimage = "conduit-sim:local"\n')
    text = text.replace("[container]\n", '[container]\nmemory = "96m"\n')
    config.write_text(text)
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-change-") as tmp:
        for sub in ("p", "d"):
            (Path(tmp) / sub).mkdir()
        base = free_base(140)
        config = write_config(Path(tmp) / "p", base, name="benchrb")
        try:
            results["rollback_process"] = rollback_rounds(config, args.rounds)
            cli("up", "--config", str(config))
            results["rolling_restart"] = rolling_restart_under_load(config, base)
        finally:
            subprocess.run([CONDUITCTL, *PURGE, "--config", str(config)],
                           capture_output=True)  # fmt: skip
        if docker_ready():
            base = free_base(140)
            config = docker_config(Path(tmp) / "d", base)
            try:
                results["rollback_docker"] = rollback_rounds(config, args.rounds)
            finally:
                subprocess.run([CONDUITCTL, *PURGE, "--config", str(config)],
                               capture_output=True)  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'measure':44} {'anchor':16} {'target':10} measured")
    for runtime in ("process", "docker"):
        r = results.get(f"rollback_{runtime}")
        if isinstance(r, dict):
            measured = (f"{r['median_s']} s (max {r['max_s']} s, {r['vs_review']}x faster "
                        f"than the anchor, keys intact: {r['keys_intact']})")  # fmt: skip
            label = f"rollback of 8 ({runtime}), median"
            print(f"{label:44} {'review < 300 s':16} {'<= 10 s':10} {measured}")
    rr = results["rolling_restart"]
    assert isinstance(rr, dict)
    print(f"{'rolling restart of 8 under 400 clients':44} {'docker stop: all':16} "
          f"{'>= 7 of 8':10} min {rr['min_serving']} of {rr['of']} serving, "
          f"{rr['failed']} new connections failed, {rr['elapsed_s']} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

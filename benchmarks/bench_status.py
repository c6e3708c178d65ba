"""`conduitctl status` benchmark: 8 simulator backends (process runtime) behind nginx, the
supervisor running (started by `up`), bytecode cached.

Times, alternating in the same run so the machine's load weighs on each alike: a bare
`python -c pass`; `conduitctl status -c CFG` and `status --json`, which the supervisor
answers over its status socket; the installed `conduitctl` script doing the same; and
`status --direct`, the full CLI reading the fleet itself. Then, the supervisor stopped,
`status` again (the full CLI, sampling CPU itself: two readings 100 ms apart). Target
(DESIGN.md, issue 9): status for 8 backends in at most 3.5 bare Python starts, while the
supervisor runs, as it always does once `up` has run.

    .venv/bin/python benchmarks/bench_status.py [--rounds 15] [--baseline-src DIR] [--json]

--baseline-src times the `status` of another checkout's src/ (say `git archive main`) in the
same rounds, against the same fleet: before and after side by side.

Everything binds 127.0.0.1; the fleet is stopped at the end, even on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import conduitctl

sys.path.insert(0, str(Path(__file__).parent))
from bench_fleet import BACKENDS, cli, free_base, teardown, write_config

PY = sys.executable
TARGET_RATIO = 3.5
# Bytecode is cached for every run (as on an installed host); the shell may say otherwise.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
    return (time.perf_counter() - started) * 1000


def wait_for_tick(config: str, timeout: float = 30.0) -> None:
    """Until the supervisor answers `status` with a CPU reading of every backend (its
    ticks' readings, not a sample of its own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = cli("status", "--config", config)
        if (
            shown.get("source") == "supervisor"
            and all(b["cpu_percent"] is not None for b in shown["backends"])
            and shown["totals"]["healthy"] == BACKENDS
        ):
            return
        time.sleep(0.2)
    raise SystemExit("the supervisor never answered status with every backend's CPU")


Case = tuple[list[str], dict[str, str]]


def rounds(cases: dict[str, Case], count: int) -> dict[str, float]:
    """Median ms of each case, the cases run one after another in every round."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for argv, env in cases.values():  # warm the page cache once
        timed(argv, env)
    for _ in range(count):
        for name, (argv, env) in cases.items():
            times[name].append(timed(argv, env))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline-src", type=Path, help="another checkout's src/ to compare")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    packages = [Path(conduitctl.__file__).parent]
    if args.baseline_src:
        packages.append(args.baseline_src.absolute() / "conduitctl")
    for package in packages:
        subprocess.run([PY, "-m", "compileall", "-q", str(package)], env=ENV, check=True)
    results: dict[str, object] = {"backends": BACKENDS, "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="conduitctl-bench-") as tmp:
        config = write_config(Path(tmp), free_base(140), name="stat")
        cfg = str(config)
        status = [PY, "-m", "conduitctl", "status", "-c", cfg]
        script = str(Path(PY).parent / "conduitctl")
        cases: dict[str, Case] = {
            "python -c pass": ([PY, "-c", "pass"], ENV),
            "status": (status, ENV),
            "status --json": ([*status, "--json"], ENV),
            "conduitctl status (script)": ([script, "status", "-c", cfg], ENV),
            "status --direct": ([*status, "--direct"], ENV),
        }
        if args.baseline_src:
            baseline = {**ENV, "PYTHONPATH": str(args.baseline_src.absolute())}
            cases["status, baseline src"] = (status, baseline)
        try:
            cli("up", "--config", cfg)
            wait_for_tick(cfg)
            shown = cli("status", "--config", cfg)
            assert shown["totals"]["healthy"] == BACKENDS, shown["totals"]
            assert shown.get("source") == "supervisor", "the supervisor did not answer status"
            results["inside_command_ms"] = shown["elapsed_ms"]
            results["supervised"] = rounds(cases, args.rounds)
            cli("daemon-stop", "--config", cfg)
            shown = cli("status", "--config", cfg)
            results["inside_command_unsupervised_ms"] = shown["elapsed_ms"]
            del cases["status --direct"]  # the same as `status` now
            results["unsupervised"] = rounds(cases, args.rounds)
        finally:
            teardown(cfg)

    rows = []
    for case in ("supervised", "unsupervised"):
        medians: dict[str, float] = results[case]  # type: ignore[assignment]
        bare = medians["python -c pass"]
        for name, ms in medians.items():
            ratio = ms / bare
            # The target is `status` as the operator meets it: the supervisor running.
            target = case == "supervised" and name in ("status", "status --json")
            rows.append(
                {
                    "case": f"{name} ({case})",
                    "median_ms": round(ms, 1),
                    "ratio": round(ratio, 2),
                    "target": f"<= {TARGET_RATIO}x" if target else "",
                    "pass": (ratio <= TARGET_RATIO) if target else None,
                }
            )
    results["rows"] = rows
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'case':40} {'median':>10} {'ratio':>7} {'target':>8}   verdict")
    for row in rows:
        verdict = "" if row["pass"] is None else "pass" if row["pass"] else "FAIL"
        print(
            f"{row['case']:40} {row['median_ms']:>7.1f} ms {row['ratio']:>6.2f}x "
            f"{row['target']:>8}   {verdict}"
        )
    print(
        f"inside: {results['inside_command_ms']} ms in the supervisor (its tick's CPU readings), "
        f"{results['inside_command_unsupervised_ms']} ms in the command, sampling CPU itself"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``run_chaos``: one drill in a fresh event loop, ended early (and undone) by Ctrl-C or
SIGTERM, its undo steps also registered with atexit."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import math
import signal
from pathlib import Path

from conduitctl.drills.chaos.drill import Drill, Progress
from conduitctl.drills.chaos.report import ChaosReport
from conduitctl.drills.chaos.scenarios import DEFAULT_LOSS_PERCENT, DEFAULT_TIMEOUT_S, validate
from conduitctl.drills.clock import REAL_CLOCK, Clock
from conduitctl.errors import BadInput
from conduitctl.settings import Settings


def run_chaos(
    settings: Settings,
    config_path: Path,
    scenario: str,
    load: int,
    duration: float,
    rate_kbps: float = 8,
    seed: int | None = None,
    progress: Progress | None = None,
    *,
    fault_s: float | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    loss_percent: float = DEFAULT_LOSS_PERCENT,
    clock: Clock = REAL_CLOCK,
) -> ChaosReport:
    """Run one drill in a fresh event loop and return its report.

    `load` clients (0: none) hold sessions through the front for `duration` seconds; the
    fault goes in once they are connected. A timed fault (loss, cpu, memory) is held
    `fault_s` (default half the duration). The drill waits at most `timeout_s` for recovery
    after the fault (or its removal). The first Ctrl-C or a SIGTERM ends it early, undoing
    the fault; the report then says `aborted`.

    Raises:
        BadInput: an unknown scenario, bad numbers, a scenario this fleet cannot run, nft
            missing or not permitted.
        ConduitctlError: no supervisor, no history, or a fleet not healthy to start with.
    """
    chosen = validate(scenario, load, duration, fault_s)
    if not (math.isfinite(loss_percent) and 0 < loss_percent <= 100):
        raise BadInput(f"--loss-percent must be in (0, 100] (got {loss_percent})")
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise BadInput(f"--timeout must be > 0 seconds (got {timeout_s})")

    async def main() -> ChaosReport:
        drill = Drill(
            settings,
            config_path,
            chosen,
            load=load,
            duration=duration,
            rate_kbps=rate_kbps,
            seed=seed,
            progress=progress,
            fault_s=fault_s,
            timeout_s=timeout_s,
            loss_percent=loss_percent,
            clock=clock,
        )
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []

        def interrupted(sig: signal.Signals) -> None:
            drill.say(f"{sig.name}: ending the drill early and undoing the fault")
            drill.abort.set()
            if sig == signal.SIGINT:  # a second Ctrl-C interrupts at once
                loop.remove_signal_handler(sig)

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, interrupted, sig)
                installed.append(sig)
        atexit.register(drill.cleanups.run)  # the last resort: an exit we did not see coming
        try:
            return await drill.run()
        finally:
            drill.cleanups.run()
            atexit.unregister(drill.cleanups.run)
            for sig in installed:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)

    return asyncio.run(main())

"""What a chaos drill can do (``Scenario``), and whether it may: the arguments, the fleet, how
many victims and which (pure)."""

from __future__ import annotations

import math
import random
import signal
from collections.abc import Mapping, Sequence
from enum import StrEnum

from conduitctl.errors import BadInput, ConduitctlError
from conduitctl.settings import Proto, Settings


class Scenario(StrEnum):
    """``--scenario``: one bounded fault. SCENARIOS says what each does."""

    KILL = "kill"
    KILL_MANY = "kill-many"
    HANG = "hang"
    OOM = "oom"
    FRONT_RESTART = "front-restart"
    LOSS = "loss"
    CPU = "cpu"
    MEMORY = "memory"

    @property
    def timed(self) -> bool:
        """Held fault_s, then removed (the host-wide faults)."""
        return self in TIMED

    @property
    def backend_signal(self) -> signal.Signals | None:
        """What the victims are sent: SIGKILL (kill, kill-many), SIGUSR1 (hang); None for
        the scenarios that signal no backend."""
        return _BACKEND_SIGNALS.get(self)


SCENARIOS: Mapping[Scenario, str] = {
    Scenario.KILL: "SIGKILL one random backend",
    Scenario.KILL_MANY: "SIGKILL 25 % of the backends (at least 2, never all) at once",
    Scenario.HANG: "SIGUSR1 one simulator backend: alive but answering nothing",
    Scenario.OOM: "recreate one backend leaking memory until the OOM killer strikes; the "
    "supervisor restarts it clean",
    Scenario.FRONT_RESTART: "SIGKILL the front's master process",
    Scenario.LOSS: "drop a share of loopback packets to and from the backends' ports (nftables)",
    Scenario.CPU: "keep one host core busy in a child process",
    Scenario.MEMORY: "hold min(1 GiB, 25 % of available) host memory in a child process",
}
TIMED = frozenset({Scenario.LOSS, Scenario.CPU, Scenario.MEMORY})  # held fault_s, then removed
_BACKEND_SIGNALS: Mapping[Scenario, signal.Signals] = {
    Scenario.KILL: signal.SIGKILL,
    Scenario.KILL_MANY: signal.SIGKILL,
    Scenario.HANG: signal.SIGUSR1,
}
FRONT = "front"  # the victim name of front-restart (no backend is called that: {cluster}-{i})

DEFAULT_TIMEOUT_S = 30.0  # fault (or its removal) -> recovered, at most
DEFAULT_LOSS_PERCENT = 10.0
MIN_DURATION_S = 2.0
POLL_S = 0.1  # how often the drill reads the supervisor's history

# Why a short drill's alerts stay quiet where one might expect them.
SCENARIO_NOTES: Mapping[Scenario, tuple[str, ...]] = {
    Scenario.CPU: (
        "cpu_high fires after 120 s above alerts.cpu_percent per backend and there is no host "
        "CPU rule: a short burn shows in `resources`, not in alerts",
    ),
    Scenario.MEMORY: (
        "host_memory_low fires after 60 s below (100 - alerts.ram_percent) % available: a "
        "short hold shows in `resources`, not in alerts",
    ),
}


def validate(scenario: str, load: int, duration: float, fault_s: float | None = None) -> Scenario:
    """Arguments that make sense on any fleet: the scenario they name. Raises BadInput naming
    the flag and the fix."""
    try:
        chosen = Scenario(scenario)
    except ValueError:
        raise BadInput(
            f"--scenario {scenario!r} is unknown; choose one of: {', '.join(SCENARIOS)}"
        ) from None
    if load < 0:
        raise BadInput(f"--load must be 0 (no load) or more clients (got {load})")
    if not (math.isfinite(duration) and duration >= MIN_DURATION_S):
        raise BadInput(
            f"--duration must be at least {MIN_DURATION_S:g} seconds (got {duration}): the load "
            "needs a warm-up before the fault"
        )
    if fault_s is not None and not (math.isfinite(fault_s) and fault_s > 0):
        raise BadInput(f"--fault-seconds must be > 0 (got {fault_s})")
    return chosen


def check_fleet(scenario: Scenario, settings: Settings, load: int) -> None:
    """Whether this fleet can run the scenario (pure). Raises BadInput with the reason."""
    front = settings.front.kind
    containers = settings.cluster.containers
    if load > 0 and front == "none":
        raise BadInput(
            'chaos drives its load through the front and front.kind = "none" has none; '
            'set front.kind = "nginx" or "haproxy", or pass --load 0 (the fault alone)'
        )
    if load > 0 and not any(lst.proto is Proto.TCP for lst in settings.front.listeners):
        raise BadInput(
            "chaos loads the first TCP front listener and there is none; add one "
            "to front.listeners or pass --load 0"
        )
    if scenario == Scenario.FRONT_RESTART and front == "none":
        raise BadInput('--scenario front-restart: front.kind = "none" runs no front')
    if scenario == Scenario.KILL_MANY and containers < 3:
        raise BadInput(
            f"--scenario kill-many needs at least 3 backends (one must survive); the fleet has "
            f"{containers}: use --scenario kill"
        )
    if scenario == Scenario.HANG and settings.workload.profile != "sim":
        raise BadInput(
            f"--scenario hang needs the sim profile (it hangs on SIGUSR1); workload.profile "
            f"{settings.workload.profile!r} has no such signal"
        )
    if scenario == Scenario.OOM and settings.workload.profile != "sim":
        raise BadInput(
            f"--scenario oom needs the sim profile (it leaks on --leak-mb-per-s); workload."
            f"profile {settings.workload.profile!r} cannot be made to leak"
        )


def victim_count(scenario: Scenario, backends: int) -> int:
    """How many backends the scenario hits: kill-many 25 % (at least 2, never all)."""
    if scenario == Scenario.KILL_MANY:
        return max(0, min(backends - 1, max(2, math.ceil(backends * 0.25))))
    if scenario in (Scenario.KILL, Scenario.HANG, Scenario.OOM):
        return min(1, backends)
    return 0


def pick_victims(candidates: Sequence[str], count: int, rng: random.Random) -> list[str]:
    """`count` distinct names at random (reproducible with a seeded rng), in fleet order."""
    if count > len(candidates):
        raise ConduitctlError(
            f"the drill needs {count} healthy backends and only {len(candidates)} are"
        )
    chosen = set(rng.sample(list(candidates), count))
    return [name for name in candidates if name in chosen]

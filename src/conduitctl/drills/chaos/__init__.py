"""The chaos drill behind ``conduitctl chaos``: one bounded fault against a running fleet,
under load, then a report of what the supervisor did about it.

A run, on a fleet started by ``conduitctl up`` (supervisor running):

1. Preflight: the scenario fits the fleet, the supervisor records ticks, every backend is
   running, healthy and in the front (waited for briefly: right after ``up`` it is probing).
2. ``load`` clients connect through the front (the first TCP listener) and hold echo sessions
   for ``duration`` seconds (``run_load``, in this process's event loop).
3. Once they are in (warm-up), the fault goes in at ``t_fault``; at the same moment a stream
   of new connections (``NEW_CONNECTIONS_PER_S``) starts, so connections *attempted during
   the fault* are measured, not only the sessions established before it.
4. The drill waits until the fleet recovered (each victim back in the front, or the front
   restarted and listening, and the supervisor's latest tick shows the whole fleet healthy)
   or ``timeout_s`` passes. A timed fault (loss, cpu, memory) is held ``fault_s`` and removed
   first.
5. The load ends at its duration; the events since the start are read from the history and
   ``summarize`` turns them into a ``ChaosReport``.

Everything is bounded in time and nothing is left behind: undo steps (the nftables table,
burner processes, SIGUSR2 for a backend still hung, orphaned front workers) are registered
as the fault goes in and run last-in-first-out on success, error, Ctrl-C or SIGTERM, with an
``atexit`` safety net. Should the drill be SIGKILLed, what it started still ends on its own:
burners at a deadline and with their parent (PR_SET_PDEATHSIG); the loss rules' port set
times out; and the next drill deletes a chaos table whose run is gone (its pid is in the
table's name).

The pure parts (``validate``, ``victim_count``, ``pick_victims``, ``nft_ruleset``,
``stale_tables``, ``fleet_health``, ``resource_summary``, ``summarize``) are separate from
the I/O and unit-tested as tables; the waits read an injected ``Clock`` (drills/clock.py).

Modules: ``scenarios`` (the ``Scenario`` enum, validation, victims), ``nft`` (the loss
table), ``faults`` (each fault, its undo, the undo steps), ``health`` (the supervisor's
ticks judged), ``report`` (the verdict), ``drill`` (the steps of one drill), ``run``
(``run_chaos``: the event loop and signals). Import from this package.
"""

from conduitctl.drills.chaos.drill import ANNOUNCED, LOAD_FIX, Drill, Timeline
from conduitctl.drills.chaos.faults import (
    AwaitOom,
    Cleanups,
    Fault,
    HostPressure,
    KillFront,
    LeakOne,
    PacketLoss,
    SignalBackends,
    Target,
    memory_pressure_bytes,
)
from conduitctl.drills.chaos.health import (
    FleetHealth,
    fleet_health,
    resource_summary,
    wait_for_health,
)
from conduitctl.drills.chaos.nft import (
    chaos_tables,
    loss_ports,
    nft_ruleset,
    nft_table_name,
    stale_tables,
)
from conduitctl.drills.chaos.report import (
    ChaosReport,
    VictimTimes,
    not_recovered,
    summarize,
    victim_times,
)
from conduitctl.drills.chaos.run import run_chaos
from conduitctl.drills.chaos.scenarios import (
    DEFAULT_LOSS_PERCENT,
    DEFAULT_TIMEOUT_S,
    FRONT,
    SCENARIOS,
    TIMED,
    Scenario,
    check_fleet,
    pick_victims,
    validate,
    victim_count,
)

__all__ = [
    "ANNOUNCED",
    "DEFAULT_LOSS_PERCENT",
    "DEFAULT_TIMEOUT_S",
    "FRONT",
    "LOAD_FIX",
    "SCENARIOS",
    "TIMED",
    "AwaitOom",
    "ChaosReport",
    "Cleanups",
    "Drill",
    "Fault",
    "FleetHealth",
    "HostPressure",
    "KillFront",
    "LeakOne",
    "PacketLoss",
    "Scenario",
    "SignalBackends",
    "Target",
    "Timeline",
    "VictimTimes",
    "chaos_tables",
    "check_fleet",
    "fleet_health",
    "loss_ports",
    "memory_pressure_bytes",
    "nft_ruleset",
    "nft_table_name",
    "not_recovered",
    "pick_victims",
    "resource_summary",
    "run_chaos",
    "stale_tables",
    "summarize",
    "validate",
    "victim_count",
    "victim_times",
    "wait_for_health",
]

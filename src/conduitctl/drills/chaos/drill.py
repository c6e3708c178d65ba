"""One drill, start to end: preflight, load, the fault, the wait for recovery, the report.
``run_chaos`` (run.py) runs it in its own event loop with its signal handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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
)
from conduitctl.drills.chaos.health import (
    FleetHealth,
    fleet_health,
    resource_summary,
    wait_for_health,
)
from conduitctl.drills.chaos.nft import loss_ports, nft_preflight
from conduitctl.drills.chaos.report import ChaosReport, is_unhealthy, not_recovered, summarize
from conduitctl.drills.chaos.scenarios import (
    FRONT,
    POLL_S,
    SCENARIO_NOTES,
    Scenario,
    check_fleet,
    pick_victims,
    victim_count,
)
from conduitctl.drills.clock import REAL_CLOCK, Clock
from conduitctl.drills.loadtest import (
    LoadReport,
    LoadSpec,
    Snapshot,
    ensure_fd_limit,
    front_target,
    run_load,
)
from conduitctl.errors import ConduitctlError
from conduitctl.events import Event, EventKind
from conduitctl.settings import Settings
from conduitctl.store import Store

log = logging.getLogger(__name__)
LOAD_FIX = "add one to front.listeners or pass --load 0"

NEW_CONNECTIONS_PER_S = 50.0  # the stream of new connections during the fault
WARMUP_EXTRA_S = 1.0  # after the ramp, before the fault
PRECHECK_WAIT_S = 15.0  # for the fleet to be healthy before the drill
STALE_TICKS = 5  # intervals without a recorded tick: the supervisor is not recording
LIVE_HISTORY_S = 900.0  # the supervisor writes each tick at once this long (a drill's bound)

INTERRUPTED_EARLY = "chaos interrupted before the fault went in; nothing was changed"

Progress = Callable[[str], None]
# What the drill says as it comes (the first of each per backend).
ANNOUNCED = frozenset(
    {
        "death",
        "oom",
        "unhealthy",
        "front_out",
        "restart",
        "front_in",
        "front_down",
        "front_restart",
        "crash_loop",
    }
)


@dataclass(frozen=True)
class Timeline:
    """When things happened in one drill (unix seconds)."""

    t_fault: float
    fault: str  # what was done, in words
    held_s: float | None  # a timed fault: how long it was in place
    front_listening_at: float | None
    fleet_healthy_at: float | None


class Drill:
    def __init__(
        self,
        settings: Settings,
        config_path: Path,
        scenario: Scenario,
        *,
        load: int,
        duration: float,
        rate_kbps: float,
        seed: int | None,
        progress: Progress | None,
        fault_s: float | None,
        timeout_s: float,
        loss_percent: float,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        from conduitctl.front import front_for
        from conduitctl.hostinfo import render_env
        from conduitctl.runtime import runtime_for

        self.settings = settings
        self.scenario = scenario
        self.clock = clock
        self.load = load
        self.duration = duration
        self.rate_kbps = rate_kbps
        self.rng = random.Random(seed)
        self.say: Progress = progress or (lambda message: None)
        self.timed_s = (fault_s or max(1.0, duration / 2)) if scenario.timed else None
        self.timeout_s = timeout_s
        self.loss_percent = loss_percent
        self.runtime = runtime_for(settings)
        self.front = front_for(settings, render_env(settings, config_path))
        self.has_front = settings.front.enabled
        self.names = settings.backend_names()
        self.cleanups = Cleanups()
        self.abort = asyncio.Event()
        self.notes: list[str] = []
        self.store: Store | None = None

    # --- preflight (blocking) ---------------------------------------------------------

    def open_store(self) -> Store:
        from conduitctl import daemon_link as control
        from conduitctl.supervise.files import history_path, stop_live_history, want_live_history

        state_dir = self.settings.state_dir
        if control.daemon_pid(state_dir) is None:
            raise ConduitctlError(
                f"no supervisor runs for {state_dir}: chaos measures what it does; start it "
                "with conduitctl up"
            )
        path = history_path(state_dir)
        if not path.exists():
            raise ConduitctlError(f"no history at {path} yet: the supervisor records it")
        self.store = Store(path)
        # The supervisor batches its ticks while all is well: ask for them as they come.
        want_live_history(state_dir, LIVE_HISTORY_S)
        self.cleanups.add("live history", lambda: stop_live_history(state_dir))
        return self.store

    def health_now(self) -> FleetHealth | None:
        assert self.store is not None
        window = max(self.settings.health.interval * STALE_TICKS, 2.0)
        points = self.store.history(since=self.clock.now() - window, resolution="raw")
        return fleet_health(points, self.names, self.has_front)

    def preflight(self) -> Fault:
        check_fleet(self.scenario, self.settings, self.load)
        if self.scenario == Scenario.LOSS:
            nft_preflight()  # fail before any load: missing nft, no permission
        self.open_store()
        self.say("waiting for the whole fleet to be healthy")
        healthy = wait_for_health(
            self.health_now, PRECHECK_WAIT_S, aborted=self.abort.is_set, clock=self.clock
        )
        if self.abort.is_set():
            raise ConduitctlError(INTERRUPTED_EARLY)
        if healthy is None:
            seen = self.health_now()
            why = "the supervisor records no ticks" if seen is None else ", ".join(seen.problems)
            raise ConduitctlError(
                f"the fleet is not healthy before the drill ({why}); see conduitctl status "
                "and try again once it is"
            )
        return self.make_fault()

    def make_fault(self) -> Fault:
        scenario = self.scenario
        sig = scenario.backend_signal
        if sig is not None:
            statuses = {s.name: s for s in self.runtime.backends() if s.pid}
            candidates = [n for n in self.names if n in statuses]
            chosen = pick_victims(candidates, victim_count(scenario, len(self.names)), self.rng)
            return SignalBackends(self.runtime, [Target(n, statuses[n].pid) for n in chosen], sig)
        if scenario == Scenario.FRONT_RESTART:
            return KillFront(self.front, self.clock)
        if scenario == Scenario.LOSS:
            assert self.timed_s is not None
            return PacketLoss(loss_ports(self.settings), self.loss_percent, self.timed_s)
        if scenario in (Scenario.CPU, Scenario.MEMORY):
            assert self.timed_s is not None
            return HostPressure(scenario, self.timed_s)
        assert self.store is not None
        victim = pick_victims(self.names, 1, self.rng)[0]
        return LeakOne(
            self.settings,
            self.runtime,
            victim,
            self.store,
            self.timeout_s,
            self.abort.is_set,
            self.clock,
        )

    # --- the run (async) ---------------------------------------------------------------

    async def run(self) -> ChaosReport:
        try:
            fault = await asyncio.to_thread(self.preflight)
            return await self.drive(fault)
        finally:
            if self.store is not None:
                self.store.close()

    async def drive(self, fault: Fault) -> ChaosReport:
        """Load, fault, recovery, report. On an error or a cancellation the fault is undone
        at once and the load stopped; on success the undo waits for the load to end."""
        assert self.store is not None
        store = self.store
        t0 = self.clock.now()
        stop = asyncio.Event()
        tasks: dict[str, asyncio.Task[LoadReport]] = {}
        try:
            timeline = await self.fault_under_load(fault, stop, tasks)
        except BaseException:
            self.cleanups.run()  # synchronous: also runs under cancellation
            stop.set()  # the load ends with the drill; its sockets close on the way out
            for task in tasks.values():
                task.cancel()
            raise
        if self.abort.is_set():
            stop.set()
        # The rest of the undo (SIGUSR2 to a backend still hung, a dead front's orphaned
        # workers) waits for the load: undoing must not drop the sessions being measured.
        load_report = await tasks["load"] if "load" in tasks else None
        stream_report = await tasks["stream"] if "stream" in tasks else None
        failures = await asyncio.to_thread(self.cleanups.run)
        self.notes.extend(f"cleanup failed: {f}" for f in failures)
        self.notes.extend(fault.notes)
        self.notes.extend(SCENARIO_NOTES.get(self.scenario, ()))
        t_end = self.clock.now()
        t_fault = timeline.t_fault
        events = await asyncio.to_thread(store.events, since=t0, limit=100_000)
        points = await asyncio.to_thread(
            store.history, since=t_fault, until=t_end, resolution="raw"
        )
        report = summarize(
            events,
            t_fault,
            fault.victims,
            load_report,
            scenario=self.scenario,
            fault=timeline.fault,
            new_connections=stream_report,
            t0=t0,
            front=self.has_front,
            front_listening_at=timeline.front_listening_at,
            fleet_healthy_at=timeline.fleet_healthy_at,
            fault_s=timeline.held_s,
            resources=resource_summary(points, t_fault, t_end),
            timeout_s=self.timeout_s,
            aborted=self.abort.is_set(),
            notes=self.notes,
        )
        verdict = "recovered" if report.recovered else "NOT recovered"
        self.say(
            f"{verdict}; {report.connections_failed} connections failed, "
            f"{report.sessions_dropped} sessions dropped"
        )
        return report

    async def fault_under_load(
        self, fault: Fault, stop: asyncio.Event, tasks: dict[str, asyncio.Task[LoadReport]]
    ) -> Timeline:
        """Start the load (into `tasks`), warm up, inject, hold a timed fault and remove it,
        wait for recovery."""
        load_end = self.clock.monotonic() + self.duration
        if self.load:
            host, port = front_target(self.settings, fix=LOAD_FIX)
            spec = LoadSpec(
                host=host,
                port=port,
                clients=self.load,
                duration_s=self.duration,
                rate_kbps=self.rate_kbps,
            )
            ensure_fd_limit(self.load + int(NEW_CONNECTIONS_PER_S * self.duration) + 100)
            self.say(f"load: {self.load} clients through {spec.target} for {self.duration:g}s")
            snaps: list[Snapshot] = []
            tasks["load"] = asyncio.create_task(run_load(spec, snaps.append, stop))
            await self.warm_up(spec, snaps, tasks["load"])
            remaining = load_end - self.clock.monotonic()
            if remaining >= 1.0:
                stream = self.stream_spec(remaining)
                tasks["stream"] = asyncio.create_task(run_load(stream, None, stop))
        if self.abort.is_set():
            raise ConduitctlError(INTERRUPTED_EARLY)
        t_fault = self.clock.now()
        self.cleanups.add(f"undo {self.scenario}", fault.undo)
        text = await asyncio.to_thread(fault.inject)
        if isinstance(fault, AwaitOom | LeakOne) and fault.at is not None:
            t_fault = fault.at  # the kernel's kill is the fault
        elif self.timed_s is not None:
            t_fault = self.clock.now()  # in place (a gigabyte takes a moment to allocate)
        self.say(f"fault: {text}")
        t_from = t_fault
        held: float | None = None
        announced: set[tuple[str | None, str]] = set()
        if self.timed_s is not None:
            await self.watch(t_fault, self.clock.monotonic() + self.timed_s, announced)
            await asyncio.to_thread(fault.undo)
            t_from = self.clock.now()
            held = t_from - t_fault
            self.say(f"fault removed after {held:.1f}s")
        front_at, healthy_at = await self.wait_recovered(fault, t_fault, t_from, announced)
        return Timeline(t_fault, text, held, front_at, healthy_at)

    def stream_spec(self, remaining: float) -> LoadSpec:
        """New connections through the fault window: started evenly, each held to the end."""
        host, port = front_target(self.settings, fix=LOAD_FIX)
        ramp = remaining * 0.9
        clients = max(1, int(NEW_CONNECTIONS_PER_S * ramp))
        return LoadSpec(
            host=host,
            port=port,
            clients=clients,
            duration_s=remaining,
            ramp_s=ramp,
            rate_kbps=self.rate_kbps,
        )

    async def warm_up(
        self, spec: LoadSpec, snaps: list[Snapshot], task: asyncio.Task[LoadReport]
    ) -> None:
        """Until every client is in (open + failed = clients), bounded by half the run."""
        started = self.clock.monotonic()
        await self.sleep(spec.effective_ramp_s + WARMUP_EXTRA_S)
        limit = started + self.duration / 2
        while self.clock.monotonic() < limit and not task.done() and not self.abort.is_set():
            snap = snaps[-1] if snaps else None
            if snap is not None and snap.open + snap.failed >= spec.clients:
                break
            await self.clock.pause(POLL_S)
        snap = snaps[-1] if snaps else None
        if snap is not None:
            self.say(f"warm: {snap.open} sessions open, {snap.failed} failed")
        if task.done():
            task.result()  # raises the load's own error (fd limit, resolve)

    async def sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.abort.wait(), timeout=max(seconds, 0))

    async def watch(
        self, t_fault: float, until: float, announced: set[tuple[str | None, str]]
    ) -> None:
        """Hold a timed fault until `until` (monotonic), saying what the supervisor does."""
        assert self.store is not None
        store = self.store
        while self.clock.monotonic() < until and not self.abort.is_set():
            events = await asyncio.to_thread(store.events, since=t_fault, limit=10_000)
            self.announce(events, t_fault, announced)
            await self.sleep(min(POLL_S * 2, until - self.clock.monotonic()))

    async def wait_recovered(
        self,
        fault: Fault,
        t_fault: float,
        t_from: float,
        announced: set[tuple[str | None, str]],
    ) -> tuple[float | None, float | None]:
        """(front seen listening at, fleet seen healthy at); None where it did not happen
        within timeout_s of `t_from`."""
        assert self.store is not None
        store = self.store
        deadline = self.clock.monotonic() + self.timeout_s - max(0.0, self.clock.now() - t_from)
        front_at: float | None = None
        while self.clock.monotonic() < deadline and not self.abort.is_set():
            events = await asyncio.to_thread(store.events, since=t_fault, limit=10_000)
            self.announce(events, t_fault, announced)
            pending = not_recovered(events, t_fault, fault.victims, front=self.has_front)
            if FRONT in fault.victims and front_at is None:
                restarted = any(e.kind == EventKind.FRONT_RESTART for e in events)
                if restarted and await asyncio.to_thread(self.front_serving, fault):
                    front_at = self.clock.now()
                else:
                    pending.append(FRONT)
            if not pending:
                last = max((e.ts for e in events), default=t_from)
                health = await asyncio.to_thread(self.health_now)
                if health is not None and health.ok and health.ts > max(last, t_from):
                    self.say(f"fleet healthy again (+{health.ts - t_fault:.2f}s)")
                    return front_at, health.ts
            await self.clock.pause(POLL_S)
        return front_at, None

    def front_serving(self, fault: Fault) -> bool:
        status = self.front.status()
        old = fault.pid if isinstance(fault, KillFront) else None
        return bool(status.running and status.pid != old and not status.not_listening)

    def announce(
        self, events: Sequence[Event], t_fault: float, seen: set[tuple[str | None, str]]
    ) -> None:
        """Say each backend's first death, front change and restart once, as they come."""
        for e in events:
            kind = "unhealthy" if is_unhealthy(e) else e.kind.value
            if kind not in ANNOUNCED:
                continue
            key = (e.backend, kind)
            if key in seen:
                continue
            seen.add(key)
            self.say(f"+{e.ts - t_fault:6.2f}s {kind:13} {e.backend or 'front'}")

"""The supervisor loop: observe, plan (pure), act, record. One asyncio loop, one `now` per tick.

Deaths arrive as events (pidfd, docker events) and wake the loop at once; probes run every
`health.interval`. On start the daemon adopts what runs and never restarts a healthy backend
because it restarted itself. Blocking work (a restart, a front reload) runs in a worker thread
so probes keep their rhythm.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from conduitctl.desired import fleet_specs
from conduitctl.errors import ConduitctlError
from conduitctl.events import Event, EventKind
from conduitctl.fleet import BackendSpec
from conduitctl.front.base import Front
from conduitctl.intent import drained, held
from conduitctl.observe.model import (
    FrontObservation,
    HostObservation,
    Tick,
)
from conduitctl.observe.owner import PortCheck, find_stolen
from conduitctl.runtime.base import (
    ExitWatcher,
    LaunchSpec,
    Runtime,
    RuntimeEvent,
    State,
    key_problem,
)
from conduitctl.runtime.pidfd import PidWatcher
from conduitctl.settings import MAX_CLIENTS_ANY_PROFILE, MAX_CLIENTS_CEILING, Settings
from conduitctl.statedir import StateDir, write_atomic
from conduitctl.supervise.degrade import Change, Member, Move, ceiling_for, plan_degradation
from conduitctl.supervise.hangwatch import GREET_EVERY_S, GREETING_INTERVAL_S, greeter_for, watch
from conduitctl.supervise.health import Health, dead, observe_probe
from conduitctl.supervise.plan import Action, BackendView, FrontView, Kind, plan_tick
from conduitctl.supervise.probes import ProbeOutcome, probe_all
from conduitctl.supervise.restarts import (
    RestartPolicy,
    RestartState,
    declare_loop,
    record_restart,
    record_stable,
)
from conduitctl.supervise.slots import PORT_SWEEP_TICKS, Slot, port_suspects
from conduitctl.workloads import PROFILES

log = logging.getLogger(__name__)

FRONT_WATCH = "front"  # the front master's pidfd, in its own watcher
DEATH_DETAIL_DELAY_S = 0.3  # the shim / dockerd record the exit code within this
STOP_TIMEOUT_S = 3.0  # a hung backend gets this long to exit on SIGTERM before SIGKILL


Sink = Callable[[Event], None]
# (profile, backends, timeout) -> each backend's probe: probe_all over the network by default
Prober = Callable[[str, list[BackendSpec], float], Awaitable[dict[str, ProbeOutcome]]]


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        front: Front,
        *,
        state_dir: Path,
        clock: Callable[[], float] = time.time,
        sinks: list[Sink] | None = None,
        tick_sinks: list[Callable[[Tick], None]] | None = None,
        host_observer: Callable[[], HostObservation] | None = None,
        queue_reader: Callable[[set[int]], Mapping[int, Any]] | None = None,
        fleet_capacity: int | None = None,
        prober: Prober = probe_all,
        port_check: PortCheck = find_stolen,
        hang_watch: bool = True,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.front = front
        self.state_dir = state_dir
        self.clock = clock
        self.sinks = sinks or []
        self.tick_sinks = tick_sinks or []
        self.host_observer = host_observer
        # ports -> {port: (queued, backlog)} for those with a listening socket (netlink)
        self.queue_reader = queue_reader
        self.front_queues: Mapping[int, Any] = {}
        # The planner's limit for the whole host: survivors are raised to a share of it.
        self.fleet_capacity = fleet_capacity
        self.prober = prober
        self.port_check = port_check
        self.hang_watch = hang_watch  # sub-second greetings, for profiles that greet
        h = settings.health
        self.policy = RestartPolicy(
            backoff=h.restart_backoff,
            backoff_max=h.restart_backoff_max,
            loop_restarts=h.crash_loop_restarts,
            loop_window=h.crash_loop_window,
            stable_after=h.min_healthy,
            loop_backoff_max=h.crash_loop_backoff_max,
        )
        self.slots: dict[str, Slot] = {s.name: Slot(spec=s) for s in fleet_specs(settings)}
        self.down: set[str] = set()
        self.front_reloads = 0
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.exit_watcher: ExitWatcher | None = None  # the runtime's death events
        self.front_watcher: PidWatcher | None = None
        self.ticks = 0
        self.holds: set[str] = set()
        self.drained: set[str] = set()
        self.last_tick: Tick | None = None
        self._work = asyncio.Lock()

    # --- events -------------------------------------------------------------------------

    def emit(
        self,
        kind: EventKind,
        backend: str | None,
        message: str,
        ts: float | None = None,
        **data: Any,
    ) -> None:
        ts = self.clock() if ts is None else ts
        event = Event(ts=ts, kind=kind, backend=backend, message=message, data=data)
        log.info(message, extra={"event": kind.value, "backend": backend or "-"})
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:  # a broken sink must never stop the supervisor
                log.exception("event sink failed")

    # --- state across the daemon's own restarts --------------------------------------------

    def _state_path(self) -> Path:
        return StateDir(self.state_dir).daemon_state

    def load_state(self) -> None:
        try:
            data = json.loads(self._state_path().read_text())
        except (OSError, ValueError):
            return
        self.down = {n for n in data.get("down", []) if n in self.slots}
        for name, saved in data.get("backends", {}).items():
            slot = self.slots.get(name)
            if slot is not None:
                slot.restart = RestartState.from_dict(saved.get("restart", {}))
                slot.restarts = int(saved.get("restarts", 0))
                slot.oom_kills = int(saved.get("oom_kills", 0))
                override = saved.get("max_override")
                slot.max_override = int(override) if override is not None else None

    def save_state(self) -> None:
        data = {
            "down": sorted(self.down),
            "backends": {
                name: {
                    "restart": slot.restart.to_dict(),
                    "restarts": slot.restarts,
                    "oom_kills": slot.oom_kills,
                    "max_override": slot.max_override,
                }
                for name, slot in self.slots.items()
            },
        }
        write_atomic(self._state_path(), json.dumps(data), secret=False)

    # --- observe ------------------------------------------------------------------------

    def adopt(self, names: set[str] | None = None, *, operator: bool = True) -> None:
        """Take over whatever runs: running backends keep running, untouched.

        A new process is judged by its own probes: unknown when an operator (up, restart) or
        the daemon's own start put it there; when it replaced one this daemon saw die (docker's
        restart policy), it must earn its way back into the front (`rise` good probes)."""
        statuses = {s.name: s for s in self.runtime.backends()}
        for name, slot in self.slots.items():
            if names is not None and name not in names:
                continue
            status = statuses.get(name)
            previous_pid = slot.pid if slot.running else None
            slot.running = status is not None and status.state == State.RUNNING
            slot.pid = status.pid if status and slot.running else None
            if slot.running and slot.pid != previous_pid:
                earn = not operator and slot.health.healthy is False
                slot.health = (
                    Health(healthy=False, since=self.clock(), reason="restarted")
                    if earn
                    else Health()
                )
                slot.cpu = None
            slot.started_at = status.started_at if status else None
            if slot.running and slot.pid:
                self._watch(slot)
        if names is not None:
            return
        running = sum(s.running for s in self.slots.values())
        self.emit(
            EventKind.DAEMON_START,
            None,
            f"supervisor started: adopted {running} running of {len(self.slots)} backends",
            running=running,
        )

    def _watch(self, slot: Slot) -> None:
        slot.oom_baseline = self.runtime.oom_count(slot.name)
        if self.exit_watcher is not None and slot.pid:
            self.exit_watcher.watch(slot.name, slot.pid)

    def on_runtime_event(self, name: str, kind: RuntimeEvent, detail: dict[str, Any]) -> None:
        slot = self.slots.get(name)
        if slot is None:
            return
        if kind == RuntimeEvent.OOM:
            slot.oom_kills += 1
            self.emit(EventKind.OOM, name, f"{name} was killed by the OOM killer")
        elif kind == RuntimeEvent.DIED and slot.running:
            self._mark_dead(slot, detail)
        elif kind == RuntimeEvent.STARTED and not slot.running and slot.name not in self.holds:
            self.adopt({name}, operator=False)  # docker's restart policy brought it back

    def _mark_dead(self, slot: Slot, detail: dict[str, Any]) -> None:
        """Out of service at once; the death is recorded a moment later, once the runtime has
        written down how it ended (exit code, OOM), stamped with the time it was seen."""
        now = self.clock()
        slot.running = False
        slot.pid = None
        slot.health = dead(slot.health, now, "died")
        count = self.runtime.oom_count(slot.name)  # read now: a restart moves the baseline
        if count is not None and slot.oom_baseline is not None and count > slot.oom_baseline:
            detail = {**detail, "oom": True}
            slot.oom_kills += count - slot.oom_baseline
            slot.oom_baseline = count
            self.emit(EventKind.OOM, slot.name, f"{slot.name} was killed by the OOM killer",
                      ts=now)  # fmt: skip
        self.wake.set()  # act now, not at the next probe
        with contextlib.suppress(RuntimeError):  # no loop: record it right away
            asyncio.get_running_loop().call_later(
                DEATH_DETAIL_DELAY_S, self._record_death, slot.name, now, detail
            )
            return
        self._record_death(slot.name, now, detail)

    def _record_death(self, name: str, seen: float, detail: dict[str, Any]) -> None:
        code = detail.get("exit_code")
        status = None
        with contextlib.suppress(Exception):
            status = self.runtime.status(name)  # type: ignore[attr-defined]
            code = status.exit_code if code is None else code
        oom = bool(detail.get("oom") or (status and status.oom_killed))
        reason = "OOM-killed" if oom else f"exit code {code}" if code is not None else "exited"
        slot = self.slots.get(name)
        if slot is not None and slot.health.healthy is False:
            slot.health = replace(slot.health, reason=reason)
        self.emit(EventKind.DEATH, name, f"{name} died ({reason})", ts=seen, exit_code=code,
                  oom=oom)  # fmt: skip

    async def probe(self) -> dict[str, ProbeOutcome]:
        silent = {s.name: ProbeOutcome(False, s.silent) for s in self.slots.values()
                  if s.running and s.silent}  # fmt: skip
        targets = [s.backend for s in self.slots.values() if s.running and not s.silent]
        for slot in self.slots.values():
            slot.silent = None
        if not targets:
            return silent
        found = await self.prober(
            self.settings.workload.profile, targets, self.settings.health.timeout
        )
        return {**found, **silent}  # a silent one is not waited for: out at once

    def serving(self) -> list[BackendSpec]:
        """What the hang watch greets: running, in the front, not known bad."""
        out = self.front_down()
        return [s.backend for s in self.slots.values()
                if s.running and s.health.healthy is not False and s.name not in out]  # fmt: skip

    def serving_clients(self) -> bool:
        """Whether any station in service had clients (connected or connecting) at the last
        tick: the hang watch looks less often while none has."""
        return any(s.load > 0 for s in self.slots.values() if s.running)

    def on_silent(self, name: str, why: str) -> None:
        slot = self.slots.get(name)
        if slot is not None and slot.running:
            slot.silent = why
            self.wake.set()

    def port_suspects(self) -> set[str]:
        """Whose ports to look at this tick. A running, healthy station holds its listeners,
        and nobody can bind a port that is held: it is looked at only every
        PORT_SWEEP_TICKS ticks. The others (dead, restarting, failing, already stolen) every
        tick: that is when another process can take their ports."""
        # An operator command working on a backend (undrain starting it, say) is left alone:
        # its new process is not this supervisor's to judge until the hold ends.
        busy = held(self.state_dir) | self.drained  # holds now; drained as last read
        return port_suspects(self.slots, sweep=self.ticks % PORT_SWEEP_TICKS == 0, busy=busy)

    async def check_ports(self, names: set[str]) -> dict[str, str]:
        """Of `names`, the backends whose ports another process holds. A finding is read
        again after the backend is re-read from the runtime: docker's restart policy may have
        started a new process of ours that this supervisor has not adopted yet."""

        def targets(names: set[str]) -> list[tuple[BackendSpec, int | None]]:
            return [(s.backend, s.pid if s.running else None) for s in self.slots.values()
                    if s.name in names]  # fmt: skip

        if not names:
            return {}
        try:
            found = await asyncio.to_thread(self.port_check, self.settings, targets(names))
            if found:
                self.adopt(set(found), operator=False)
                found = await asyncio.to_thread(self.port_check, self.settings, targets(set(found)))
        except Exception:  # the check is a guard: its failure must not stop the probes
            log.exception("port ownership check failed")
            return {}
        return found

    def note_stolen(self, stolen: dict[str, str], looked_at: set[str]) -> None:
        for name, slot in self.slots.items():
            if name not in looked_at:
                continue  # not looked at this tick: what was found stays
            finding = stolen.get(name)
            if finding and finding != slot.stolen:
                self.emit(EventKind.HEALTH, name, f"{name}: {finding}", healthy=False,
                          reason=finding, port_stolen=True)  # fmt: skip
            slot.stolen = finding
            if finding and not slot.running:
                slot.health = replace(slot.health, healthy=False, reason=finding)

    def refresh_liveness(self) -> None:
        """Between events, a cheap check that each 'running' backend is still there."""
        for slot in self.slots.values():
            if slot.running and slot.pid:
                cpu, rss = self.runtime.usage(slot.pid)
                if cpu is None and rss is None:
                    self._mark_dead(slot, {})
                    continue
                mono = time.monotonic()
                if slot.cpu is not None and cpu is not None and mono > slot.cpu[0]:
                    slot.cpu_percent = max(cpu - slot.cpu[1], 0) / (mono - slot.cpu[0]) * 100
                    slot.cpu_pid = slot.pid
                slot.cpu = (mono, cpu) if cpu is not None else slot.cpu
                slot.rss = rss

    def adopt_restarted(self, holds: set[str]) -> None:
        """Level-triggered: a backend this supervisor holds for dead (crash-looping, say)
        that runs again, started by someone else (`restart` quicker than a tick saw its hold,
        `docker start` by hand), is adopted. Costs one runtime listing, only while some
        backend is down."""
        down = {n for n, s in self.slots.items() if not s.running and n not in holds}
        if not down:
            return
        statuses = {s.name: s for s in self.runtime.backends() if s.name in down}
        back = {n for n, s in statuses.items() if s.state == State.RUNNING and s.pid}
        if back:
            self.adopt(back)

    def front_view(self) -> FrontView:
        """Alive by its pid every tick; listening by its listen sockets in the kernel's table
        (never by connecting: that would be a client session and an access-log line)."""
        if not self.settings.front.enabled:
            return FrontView(kind="none", running=False, listening=False)
        pid = self.front.pid()
        running = pid is not None
        if pid is not None and self.front_watcher is not None:
            self.front_watcher.watch(FRONT_WATCH, pid)  # its death wakes the loop at once
        listening = running
        self.front_queues = {}
        if running and self.queue_reader is not None:
            ports = self.front.listen_ports()
            self.front_queues = self.queue_reader(ports)
            listening = ports <= set(self.front_queues)
        return FrontView(kind=self.settings.front.kind, running=running, listening=listening)

    # --- act ----------------------------------------------------------------------------

    async def execute(self, actions: list[Action]) -> None:
        now = self.clock()
        front_changes = [a for a in actions if a.kind in (Kind.FRONT_OUT, Kind.FRONT_IN)]
        for action in front_changes:
            assert action.name is not None
            if action.kind == Kind.FRONT_OUT:
                self.down.add(action.name)
            else:
                self.down.discard(action.name)
        if front_changes:
            how = await asyncio.to_thread(self.front.set_down, self.front_down())
            self.front_reloads += how == "reloaded"
            for action in front_changes:
                kind = EventKind.FRONT_OUT if action.kind == Kind.FRONT_OUT else EventKind.FRONT_IN
                where = "out of" if action.kind == Kind.FRONT_OUT else "back into"
                self.emit(kind, action.name, f"{action.name} {where} the front ({action.reason})",
                          via=how)  # fmt: skip
        for action in actions:
            if action.kind == Kind.RESTART and action.name is not None:
                await self.restart(self.slots[action.name], action.reason, now)
            elif action.kind == Kind.CRASH_LOOP and action.name is not None:
                self.declare_crash_loop(self.slots[action.name], action.reason)
            elif action.kind == Kind.FRONT_RESTART:
                await self.restart_front(action.reason)
        if actions:
            self.save_state()

    async def restart(self, slot: Slot, reason: str, now: float) -> None:
        attempt = slot.restart.attempts + 1
        message = f"restarting {slot.name} ({reason}), attempt {attempt}"
        self.emit(EventKind.RESTART, slot.name, message, attempt=attempt)
        if self.exit_watcher is not None:
            self.exit_watcher.forget(slot.name)
        try:
            status = await asyncio.to_thread(self._restart_blocking, slot.effective_spec)
        except Exception as exc:
            log.warning("restart failed", extra={"backend": slot.name, "error": str(exc)})
            status = None
        slot.restart = record_restart(self.policy, slot.restart, now)
        slot.restarts += 1
        slot.health = Health(healthy=False, since=now, reason="restarted")
        if status is not None and status.state == State.RUNNING:
            slot.running, slot.pid, slot.started_at = True, status.pid, self.clock()
            slot.cpu = None
            self._watch(slot)

    def declare_crash_loop(self, slot: Slot, reason: str) -> None:
        slot.restart = declare_loop(slot.restart)
        self.emit(
            EventKind.CRASH_LOOP,
            slot.name,
            f"{slot.name} is crash-looping ({reason} after {len(slot.restart.recent)} restarts "
            f"in {self.policy.loop_window:g}s); restarts go on, at most "
            f"{self.policy.loop_backoff_max:g}s apart, until it stays healthy "
            f"{self.policy.stable_after:g}s",
            restarts=len(slot.restart.recent),
            window_s=self.policy.loop_window,
        )

    def degradation(self, now: float) -> Change | None:
        profile_ceiling = (
            MAX_CLIENTS_CEILING
            if self.settings.workload.profile == "psiphon-conduit"
            else MAX_CLIENTS_ANY_PROFILE
        )
        members = [
            Member(
                name=slot.name,
                healthy=slot.running and bool(slot.health.healthy) and slot.name not in self.down,
                down_since=slot.down_since,
                configured=slot.backend.max_clients,
                current=slot.max_override or slot.backend.max_clients,
                load=slot.load,
            )
            for slot in self.slots.values()
        ]
        ceiling = ceiling_for(profile_ceiling, self.fleet_capacity, members)
        return plan_degradation(members, now, self.settings.health.degrade_after, ceiling)

    async def change_max_clients(self, change: Change) -> None:
        """Out of the front, restarted with the new max clients; back in after `rise`."""
        slot = self.slots[change.name]
        previous = slot.max_override or slot.backend.max_clients
        raised = change.max_clients != slot.backend.max_clients
        slot.max_override = change.max_clients if raised else None
        kind = EventKind.DEGRADE if change.move == Move.RAISE else EventKind.RESTORE
        self.emit(
            kind,
            slot.name,
            f"{slot.name}: max clients {previous} -> {change.max_clients} ({change.reason})",
            previous=previous,
            to=change.max_clients,
        )
        self.down.add(slot.name)
        await asyncio.to_thread(self.front.set_down, self.front_down())
        if self.exit_watcher is not None:
            self.exit_watcher.forget(slot.name)
        status = await asyncio.to_thread(self._restart_blocking, slot.effective_spec)
        now = self.clock()
        slot.health = Health(healthy=False, since=now, reason="max clients changed")
        if status is not None and status.state == State.RUNNING:
            slot.running, slot.pid, slot.started_at = True, status.pid, now
            slot.cpu = None
            self._watch(slot)
        self.save_state()

    def _restart_blocking(self, spec: LaunchSpec) -> Any:
        # What `up` refuses in its plan (a user that cannot reach its program), a restart
        # says in the log each time, rather than start what cannot run.
        problem = self.runtime.launch_problems([spec]).get(spec.name)
        if problem:
            raise ConduitctlError(f"{spec.name}: {problem}")
        key = self.runtime.key_store(self.settings).read(spec.name)
        broken = None if key is None else key_problem(key)
        if broken:  # Conduit would start as a new station: never restart it on that
            raise ConduitctlError(f"{spec.name}: its key file does not parse ({broken}); not "
                                  "restarted: restore it (`conduitctl keys restore`)")  # fmt: skip
        self.runtime.stop(spec.name, timeout=STOP_TIMEOUT_S)
        return self.runtime.start(spec)

    async def restart_front(self, reason: str) -> None:
        self.emit(EventKind.FRONT_DOWN, None, f"front {self.settings.front.kind} {reason}")

        def blocking() -> str:
            if self.front.pid() is not None:  # alive but deaf: replace it
                self.front.stop(timeout=2)
            # A dead master's workers are retired once the new one listens (no refusals).
            return self.front.apply(self.front_down())

        try:
            result = await asyncio.to_thread(blocking)
            self.emit(EventKind.FRONT_RESTART, None, f"front restarted ({result})")
        except Exception as exc:
            log.error(
                "front restart failed", extra={"front": self.settings.front.kind, "error": str(exc)}
            )

    # --- the loop -----------------------------------------------------------------------

    async def tick(self) -> Tick:
        async with self._work:
            now = self.clock()
            silent = {n for n, s in self.slots.items() if s.silent}
            outcomes = await self.probe()
            suspects = self.port_suspects()
            stolen = await self.check_ports(suspects)
            self.note_stolen(stolen, suspects)
            h = self.settings.health
            for name, outcome in outcomes.items():
                slot = self.slots[name]
                if not slot.running:
                    continue  # died while the probe ran
                if name in stolen:  # whoever answered, it was not our station: never healthy
                    outcome = ProbeOutcome(False, stolen[name])  # its /metrics are not ours
                at_once = name in stolen or name in silent  # silent: already missed twice
                before = slot.health.healthy
                slot.health = observe_probe(slot.health, outcome.ok, rise=h.rise,
                                            fall=1 if at_once else h.fall,
                                            now=now, reason=outcome.reason)  # fmt: skip
                slot.values = outcome.values or slot.values
                if before is not None and slot.health.healthy != before:
                    state = "healthy" if slot.health.healthy else f"unhealthy ({outcome.reason})"
                    self.emit(EventKind.HEALTH, name, f"{name} is {state}",
                              healthy=slot.health.healthy, reason=outcome.reason)  # fmt: skip
                if slot.health.healthy:
                    slot.restart = record_stable(self.policy, slot.restart, slot.health.since, now)
            self.refresh_liveness()
            self.drained = drained(self.state_dir)  # the operator's: out, not restarted
            holds = held(self.state_dir, now) | self.drained
            released = self.holds - holds
            self.holds = holds
            if released:  # an operator command finished with them: re-read their state
                self.adopt(released & set(self.slots))
            self.adopt_restarted(holds)
            views = [
                BackendView(
                    name=slot.name,
                    running=slot.running,
                    health=slot.health,
                    restart=slot.restart,
                    in_front=slot.name not in self.down,
                    started_at=slot.started_at,
                    held=slot.name in holds,
                )
                for slot in self.slots.values()
            ]
            for slot in self.slots.values():  # every tick, whatever it does next
                if slot.health.healthy and slot.running:
                    slot.down_since = None
                elif slot.down_since is None:
                    slot.down_since = slot.health.since
            front = self.front_view()
            actions = plan_tick(views, front, now, self.policy, h.restart_after)
            if actions:
                await self.execute(actions)
            elif not holds and all(not s.running or s.health.healthy is not None
                                   for s in self.slots.values()):  # fmt: skip
                change = self.degradation(now)
                if change is not None:
                    await self.change_max_clients(change)
            tick = self.observation(now, front)
            self.ticks += 1
            self.last_tick = tick
            for sink in self.tick_sinks:
                try:
                    sink(tick)
                except Exception:
                    log.exception("tick sink failed")
            return tick

    def observation(self, now: float, front: FrontView) -> Tick:
        backends = tuple(
            slot.observation(in_front=slot.name not in self.down) for slot in self.slots.values()
        )
        host = self.host_observer() if self.host_observer else HostObservation(0, 0, 0.0)
        queues = {
            label: self.front_queues[port]
            for label, port in self.listener_ports().items()
            if port in self.front_queues
        }
        return Tick(
            ts=now,
            backends=backends,
            host=host,
            front=FrontObservation(
                kind=front.kind,
                running=front.running,
                listening=front.listening,
                reloads=self.front_reloads,
                accept_queue={label: int(q[0]) for label, q in queues.items()},
                accept_backlog={
                    label: int(q[1]) for label, q in queues.items() if q[1] is not None
                },
            ),
        )

    def front_down(self) -> frozenset[str]:
        """Out of the front: what the supervisor took out, and what the operator drained."""
        return frozenset(self.down | self.drained)

    def listener_ports(self) -> dict[str, int]:
        """TCP listener label ("tcp:443") -> port, as the metrics and alerts name them."""
        return {
            str(lst): lst.port for lst in self.settings.front.listeners if lst.proto.value == "tcp"
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.load_state()
        self.exit_watcher = self.runtime.watch_exits(loop, self.on_runtime_event)
        self.front_watcher = PidWatcher(loop, lambda _name, _detail: self.wake.set())
        self.adopt()  # watches each running process as it adopts it
        if self.exit_watcher is not None:
            self.exit_watcher.start()
        interval = self.settings.health.interval
        profile = PROFILES[self.settings.workload.profile]
        hang_watch = None
        if profile.greeting and self.hang_watch:
            greet = greeter_for(profile)
            every_station = self.settings.health.hang_check == "greetings"
            looks = watch(
                self.serving,
                self.on_silent,
                greet,
                self.stopping,
                interval=GREET_EVERY_S if every_station else GREETING_INTERVAL_S,
                queued=None if every_station else self.queue_reader,
                serving_clients=self.serving_clients,
            )
            hang_watch = asyncio.ensure_future(looks)
        try:
            while not self.stopping.is_set():
                started = loop.time()
                try:
                    await self.tick()
                except Exception:
                    log.exception("tick failed")  # one bad tick never stops the loop
                self.wake.clear()
                if any(s.silent for s in self.slots.values()):
                    self.wake.set()  # found silent while that tick ran: act now
                remaining = interval - (loop.time() - started)
                waiters = [asyncio.ensure_future(self.wake.wait()),
                           asyncio.ensure_future(self.stopping.wait())]  # fmt: skip
                await asyncio.wait(waiters, timeout=max(remaining, 0),
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                for waiter in waiters:
                    waiter.cancel()
        finally:
            if hang_watch is not None:
                hang_watch.cancel()
            if self.exit_watcher is not None:
                self.exit_watcher.close()
            if self.front_watcher is not None:
                self.front_watcher.close()
            self.save_state()
            self.emit(EventKind.DAEMON_STOP, None, "supervisor stopped; the fleet keeps running")

    def request_stop(self) -> None:
        self.stopping.set()

    def reconfigure(self, settings: Settings, front: Front) -> None:
        """New settings (SIGHUP after up or scale): kept backends keep their slot (health,
        restart history); new ones are adopted as they run; removed ones are forgotten."""
        old = self.slots
        self.settings = settings
        self.front = front
        self.slots = {
            spec.name: replace(old[spec.name], spec=spec) if spec.name in old else Slot(spec=spec)
            for spec in fleet_specs(settings)
        }
        for name in set(old) - set(self.slots):
            if self.exit_watcher is not None:
                self.exit_watcher.forget(name)
        self.down &= set(self.slots)
        self.adopt(set(self.slots))  # level-triggered: re-read what really runs
        self.save_state()
        self.wake.set()

"""`conduitctl daemon`: wire the supervisor to its edges (runtime, front, history, alerts,
exporter, host observers) and run it until SIGTERM. SIGHUP re-reads conduit.toml."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from conduitctl import alerts
from conduitctl import daemon_link as control
from conduitctl.app.planning import plan_input
from conduitctl.capacity import make_plan
from conduitctl.errors import BadInput
from conduitctl.events import Event, EventKind
from conduitctl.front import front_for
from conduitctl.hostinfo import render_env
from conduitctl.logs import add_secrets
from conduitctl.metrics import Exporter, MetricsServer
from conduitctl.notify import Dispatcher, notifiers_from_urls
from conduitctl.observe.host import HostObserver
from conduitctl.observe.model import Tick
from conduitctl.runtime import runtime_for
from conduitctl.settings import Settings, load_settings
from conduitctl.statedir import StateDir, write_atomic
from conduitctl.store import Store
from conduitctl.supervise.daemon import Supervisor
from conduitctl.supervise.files import (
    alerts_path,
    history_path,
    live_history_wanted,
    load_alert_state,
)
from conduitctl.supervise.resume import Resumer
from conduitctl.supervise.status_server import StatusServer, read_settings

log = logging.getLogger(__name__)

MAINTAIN_EVERY_S = 60.0
STORE_FLUSH_S = 10.0  # samples reach history.db in batches: a tenth of the disk writes


class Outputs:
    """Where each tick and event goes: history, alerts and notifications, the exporter."""

    def __init__(self, settings: Settings, state_dir: Path, loop: asyncio.AbstractEventLoop):
        self.settings = settings
        self.state_dir = state_dir
        self.loop = loop
        self.store = Store(history_path(state_dir), flush_every=STORE_FLUSH_S)
        self.alert_state = load_alert_state(state_dir)
        self.origin = f"{settings.cluster.name}@{socket.gethostname()}"
        self.dispatcher = Dispatcher(
            notifiers_from_urls(settings.alerts.notifiers), on_result=self._on_result
        )
        self.exporter = self.make_exporter(settings)
        self.server: MetricsServer | None = None
        self.last_maintain = 0.0
        self.was_steady = False
        self.closed = False

    @staticmethod
    def make_exporter(settings: Settings) -> Exporter:
        listeners = [str(x) for x in settings.front.listeners if x.proto.value == "tcp"]
        return Exporter(
            settings.backend_names(), [r.value for r in alerts.RuleName], listeners=listeners
        )

    def reconfigure(self, settings: Settings) -> None:
        """New settings (SIGHUP): the notifiers are the new ones; the exporter's label values
        follow the new backends and listeners."""
        changed = (settings.backend_names(), settings.front.listeners) != (
            self.settings.backend_names(),
            self.settings.front.listeners,
        )
        moved = settings.daemon.metrics_port != self.settings.daemon.metrics_port
        if settings.alerts.notifiers != self.settings.alerts.notifiers:
            # A revoked or replaced URL is never used again: its workers finish what they
            # hold (bounded), the new notifiers take everything from now on.
            self.dispatcher.close(timeout=2)
            self.dispatcher = Dispatcher(
                notifiers_from_urls(settings.alerts.notifiers), on_result=self._on_result
            )
        self.settings = settings
        if changed or moved:
            if self.server is not None:
                self.server.close()
            self.exporter = self.make_exporter(settings)
            self.serve()

    def serve(self) -> None:
        try:
            self.server = self.exporter.serve("127.0.0.1", port=self.settings.daemon.metrics_port)
        except Exception as exc:  # metrics are worth a warning, not the supervisor
            log.warning("metrics exporter not started", extra={"error": str(exc)})

    def on_event(self, event: Event) -> None:
        self.store.record(event)

    def on_tick(self, tick: Tick) -> None:
        self.store.record_tick(tick)
        # Batched while all is well; written at once around anything worth watching, and
        # while a drill reads the history live.
        steady = tick.steady
        if not (steady and self.was_steady) or live_history_wanted(self.state_dir, tick.ts):
            self.store.flush()
        self.was_steady = steady
        state, transitions = alerts.step(self.alert_state, tick, self.settings)
        for transition in transitions:
            self.store.record(transition.event())
        for notification in alerts.plan_notifications(
            state, tick.ts, self.settings.alerts.repeat_interval, origin=self.origin
        ):
            self.dispatcher.submit(notification)
            state = alerts.mark_sent(state, notification, tick.ts)
        if state != self.alert_state or transitions:
            self._save_alerts(state)
        self.alert_state = state
        firing: dict[str, int] = {}
        for active in alerts.active_alerts(state):
            if active.state == "firing":
                firing[active.rule] = firing.get(active.rule, 0) + 1
        self.exporter.update(tick, firing)
        if tick.ts - self.last_maintain >= MAINTAIN_EVERY_S:
            self.store.maintain(tick.ts)
            self.last_maintain = tick.ts

    def _save_alerts(self, state: alerts.AlertState) -> None:
        write_atomic(alerts_path(self.state_dir), json.dumps(state.to_dict()), secret=False)

    def _on_result(self, notification: object, result: object, attempts: int) -> None:
        """From a dispatcher thread: a failed notification becomes an event, on the loop."""
        if getattr(result, "ok", True):
            return
        event = Event(
            ts=time.time(),
            kind=EventKind.NOTIFY_FAILED,
            message=f"notification failed after {attempts} attempts: "
            f"{getattr(result, 'error', '')}",
            data={"target": getattr(result, "target", ""), "attempts": attempts},
        )
        self.loop.call_soon_threadsafe(self._record_late, event)

    def _record_late(self, event: Event) -> None:
        """A notification's outcome can come back after the daemon began to stop."""
        if not self.closed:
            self.store.record(event)

    def close(self) -> None:
        self.dispatcher.close(timeout=5)
        if self.server is not None:
            self.server.close()
        self.closed = True
        self.store.close()


def install_signal_handlers(supervisor: Supervisor, on_reload: Callable[[], None]) -> None:
    """Handlers only enqueue; the loop does the work."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, supervisor.request_stop)
    loop.add_signal_handler(signal.SIGHUP, on_reload)


def fleet_capacity(settings: Settings) -> int:
    """The planner's bottleneck for this host: degraded survivors share at most this."""
    plan = make_plan(plan_input(settings)[0])
    return plan.limits[plan.bottleneck].clients


def _rollout_stuck(settings: Settings, rollout: str, resumes: int) -> None:
    from conduitctl.events import EventKind
    from conduitctl.ops.announce import announce

    announce(settings, EventKind.OPERATION_FAILED, None,
             f"rollout {rollout}: its driver died after each of {resumes} resumes; not resumed "
             "again: `conduitctl rollout --resume` (see rollout.out) or `rollout --abort`",
             operation="rollout", resumes=resumes)  # fmt: skip


async def _serve(settings: Settings, config_path: Path) -> None:
    # The file as it is now, checked to be the one `settings` came from: `status` is only
    # answered here for the config file it was read from (status_server).
    reread, read = read_settings(config_path, load_settings)
    if reread != settings or (os.geteuid() != 0 and settings.cluster.state_dir is None):
        read = None  # a non-root default state dir is the cwd's: not the command's, maybe
    env = render_env(settings, config_path)
    loop = asyncio.get_running_loop()
    outputs = Outputs(settings, settings.state_dir, loop)
    host = HostObserver(settings.host.nic, settings.host.nic_mbps)
    resumer = Resumer(
        config_path,
        settings.state_dir,
        env.log_dir,
        on_give_up=lambda state, n: _rollout_stuck(settings, state.id, n),
    )
    supervisor = Supervisor(
        settings,
        runtime_for(settings),
        front_for(settings, env),
        state_dir=settings.state_dir,
        sinks=[outputs.on_event],
        tick_sinks=[outputs.on_tick, resumer],
        host_observer=host.observe,
        queue_reader=host.accept_queues,
        fleet_capacity=fleet_capacity(settings),
    )

    status = StatusServer(
        StateDir(settings.state_dir).status_socket, config_path, lambda: supervisor.last_tick
    )
    status.serve_settings(settings, read)

    def reload() -> None:
        try:
            fresh, read = read_settings(config_path, load_settings)
        except Exception as exc:  # a bad edit must not take the supervisor down
            log.error("reload refused, keeping the running settings", extra={"error": str(exc)})
            return
        supervisor.reconfigure(fresh, front_for(fresh, render_env(fresh, config_path)))
        outputs.reconfigure(fresh)
        if os.geteuid() != 0 and fresh.cluster.state_dir is None:
            read = None
        status.serve_settings(fresh, read)
        add_secrets(fresh.alerts.notifiers)  # a new URL is hidden, and a revoked one still
        log.info("settings reloaded", extra={"config": str(config_path)})

    install_signal_handlers(supervisor, reload)
    outputs.serve()
    try:
        await status.start()
    except OSError as exc:  # `status` reads the fleet itself; worth a warning only
        log.warning("status socket not opened", extra={"error": str(exc)})
    try:
        await supervisor.run()
    finally:
        status.close()
        outputs.close()


def run(settings: Settings, config_path: Path) -> None:
    """The supervisor in the foreground, on `settings` (read once, from `config_path`, which
    a SIGHUP reads again)."""
    from conduitctl.ops.legacy_layout import legacy_active

    state_dir = settings.state_dir
    if legacy_active(state_dir):  # it would start conduitctl's fleet beside the legacy one
        raise BadInput(
            "the fleet runs in conduit-manager's layout (rollback --legacy); "
            "`conduitctl up` brings conduitctl's fleet back and starts the supervisor"
        )
    control.claim(state_dir)
    try:
        asyncio.run(_serve(settings, config_path))
    finally:
        control.release(state_dir)

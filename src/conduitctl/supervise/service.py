"""`conduitctl daemon`: wire the supervisor to its edges (runtime, front, history, alerts,
exporter, logs) and run it until SIGTERM. SIGHUP re-reads conduit.toml."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from conduitctl.front import front_for
from conduitctl.hostinfo import render_env
from conduitctl.runtime import runtime_for
from conduitctl.settings import load_settings
from conduitctl.supervise import control
from conduitctl.supervise.daemon import Supervisor, install_signal_handlers

log = logging.getLogger(__name__)


async def _serve(config_path: Path) -> None:
    settings = load_settings(config_path)
    env = render_env(settings, config_path)
    supervisor = Supervisor(
        settings,
        runtime_for(settings),
        front_for(settings, env),
        state_dir=settings.state_dir,
    )

    def reload() -> None:
        try:
            fresh = load_settings(config_path)
        except Exception as exc:  # a bad edit must not take the supervisor down
            log.error("reload refused, keeping the running settings: %s", exc)
            return
        supervisor.reconfigure(fresh, front_for(fresh, render_env(fresh, config_path)))
        log.info("settings reloaded from %s", config_path)

    install_signal_handlers(supervisor, reload)
    await supervisor.run()


def run(config_path: Path) -> None:
    settings = load_settings(config_path)
    state_dir = settings.state_dir
    control.claim(state_dir)
    try:
        asyncio.run(_serve(config_path))
    finally:
        control.release(state_dir)

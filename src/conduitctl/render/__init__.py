"""Renderers: pure functions (settings, host facts) -> file text, one module per target.

Each target module exposes `render(settings: Settings, env: RenderEnv) -> Rendered`.
Each check (an edge: it runs the target's own tool) is
`check(rendered: Rendered, env: RenderEnv, workdir: Path) -> CheckResult`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conduitctl.errors import BadInput
from conduitctl.render.base import Rendered, RenderEnv

if TYPE_CHECKING:
    from conduitctl.settings import Settings


@dataclass(frozen=True)
class CheckResult:
    """What the target's own tool said. `skipped` names why it could not run (tool absent)."""

    tool: str
    output: str
    skipped: str | None = None


# target -> module providing render(); check module and function name.
TARGETS: dict[str, str] = {
    "nginx": "conduitctl.render.nginx",
    "haproxy": "conduitctl.render.haproxy",
    "logrotate": "conduitctl.render.logrotate",
    "docker-daemon": "conduitctl.render.docker_daemon",
    "rsyslog": "conduitctl.render.rsyslog",
    "sysctl": "conduitctl.render.sysctl",
    "systemd": "conduitctl.render.systemd",
    "tc": "conduitctl.render.tc",
}
CHECKS: dict[str, tuple[str, str]] = {
    "nginx": ("conduitctl.render.check_front", "check_nginx"),
    "haproxy": ("conduitctl.render.check_front", "check_haproxy"),
    "logrotate": ("conduitctl.render.check_host", "check_logrotate"),
    "docker-daemon": ("conduitctl.render.check_host", "check_json"),
    "rsyslog": ("conduitctl.render.check_host", "check_rsyslog"),
    "sysctl": ("conduitctl.render.check_host", "check_sysctl"),
    "systemd": ("conduitctl.render.check_host", "check_systemd"),
    "tc": ("conduitctl.render.check_host", "check_shell"),
}


def renderer(target: str) -> Callable[[Settings, RenderEnv], Rendered]:
    if target not in TARGETS:
        raise BadInput(f"unknown render target {target!r}; choose one of: {', '.join(TARGETS)}")
    return importlib.import_module(TARGETS[target]).render


def checker(target: str) -> Callable[[Rendered, RenderEnv, Path], CheckResult]:
    module, func = CHECKS[target]
    return getattr(importlib.import_module(module), func)


def render(target: str, settings: Settings, env: RenderEnv) -> Rendered:
    return renderer(target)(settings, env)


__all__ = ["CHECKS", "TARGETS", "CheckResult", "RenderEnv", "Rendered", "checker", "render"]

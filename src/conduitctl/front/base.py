"""What both fronts share: status, validate-then-install, start/reload/stop by pid file.

Nothing is written in place: the candidate config is validated by the front's own tool and
only then renamed over the live one; a rejected candidate leaves the running front untouched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import psutil

from conduitctl.errors import ConduitctlError
from conduitctl.render.base import Rendered, RenderEnv
from conduitctl.settings import Proto, Settings

if TYPE_CHECKING:
    from conduitctl.render import CheckResult


@dataclass(frozen=True)
class FrontStatus:
    kind: str
    running: bool
    pid: int | None = None
    listening: list[str] = field(default_factory=list)  # listeners that accept (TCP) / are bound
    not_listening: list[str] = field(default_factory=list)
    config: str | None = None
    reason: str | None = None  # why there is no front, or why it is down
    started_at: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "running": self.running,
            "pid": self.pid,
            "listening": self.listening,
            "not_listening": self.not_listening,
            "config": self.config,
            "reason": self.reason,
            "started_at": self.started_at,
        }


class Front(Protocol):
    kind: str

    def status(self) -> FrontStatus: ...

    def apply(self, down: frozenset[str] = frozenset()) -> str:
        """Render, validate, install and (re)load. Returns started|reloaded|unchanged."""
        ...

    def stop(self, timeout: float = 10.0) -> bool: ...


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return pid


def listener_addresses(settings: Settings) -> list[tuple[str, str, int]]:
    """(label, host, port) of every listener; a wildcard bind is probed on loopback."""
    out = []
    for listener in settings.front.listeners:
        host = listener.host or settings.front.bind
        probe = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host.strip("[]"))
        out.append((str(listener), probe, listener.port))
    return out


def probe_listeners(settings: Settings, pids: set[int]) -> tuple[list[str], list[str]]:
    """Which listeners the front really serves: TCP by a connect, UDP by its bound sockets."""
    bound_udp: set[int] = set()
    if any(lst.proto is Proto.UDP for lst in settings.front.listeners):
        for conn in psutil.net_connections(kind="udp"):
            if conn.pid in pids and conn.laddr:
                bound_udp.add(conn.laddr.port)
    listening: list[str] = []
    not_listening: list[str] = []
    for listener, (label, host, port) in zip(
        settings.front.listeners, listener_addresses(settings), strict=True
    ):
        if listener.proto is Proto.UDP:
            ok = port in bound_udp
        else:
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    ok = True
            except OSError:
                ok = False
        (listening if ok else not_listening).append(label)
    return listening, not_listening


def tree_pids(pid: int) -> set[int]:
    try:
        proc = psutil.Process(pid)
        return {pid, *(child.pid for child in proc.children(recursive=True))}
    except psutil.Error:
        return {pid}


def install(candidate: Rendered, path: Path, check: CheckFn, env: RenderEnv) -> bool:
    """Validate `candidate` and atomically put it at `path`. False when unchanged.

    Raises ValidationFailed (the live config stays) when the front's tool rejects it.
    """
    if path.exists() and path.read_text() == candidate.text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    check(candidate, env, path.parent)
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(candidate.text)
    os.replace(tmp, path)
    return True


class CheckFn(Protocol):
    def __call__(self, rendered: Rendered, env: RenderEnv, workdir: Path) -> CheckResult: ...


def wait_gone(pid: int, timeout: float) -> bool:
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def stop_by_signal(pid: int, graceful: signal.Signals, timeout: float) -> None:
    """The graceful signal, then SIGTERM, then SIGKILL to the whole tree."""
    tree = tree_pids(pid)
    os.kill(pid, graceful)
    if wait_gone(pid, timeout):
        return
    os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, 5):
        return
    for p in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    wait_gone(pid, 5)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise ConduitctlError(f"{what} within {timeout:g}s")


class NoFront:
    """front.kind = "none": nothing to run, and status says why."""

    kind = "none"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def status(self) -> FrontStatus:
        if self.settings.workload.listens:
            reason = 'front.kind = "none": clients connect to the backends\' ports directly'
        else:
            reason = (
                f"profile {self.settings.workload.profile} listens on no port: Conduit dials "
                "out to the Psiphon broker and serves clients over WebRTC, so there is "
                "nothing to balance"
            )
        return FrontStatus(kind="none", running=False, reason=reason)

    def apply(self, down: frozenset[str] = frozenset()) -> str:
        return "unchanged"

    def stop(self, timeout: float = 10.0) -> bool:
        return False


def front_for(settings: Settings, env: RenderEnv) -> Front:
    if settings.front.kind == "nginx":
        from conduitctl.front.nginx import NginxFront

        return NginxFront(settings, env)
    if settings.front.kind == "haproxy":
        from conduitctl.front.haproxy import HaproxyFront

        return HaproxyFront(settings, env)
    return NoFront(settings)

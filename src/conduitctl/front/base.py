"""What both fronts share: status, validate-then-install, start/reload/stop by pid file.

Nothing is written in place: the candidate config is validated by the front's own tool and
only then renamed over the live one; a rejected candidate leaves the running front untouched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import psutil

from conduitctl import procid
from conduitctl.errors import ConduitctlError
from conduitctl.render.base import Rendered, RenderEnv
from conduitctl.settings import Proto, Settings
from conduitctl.statedir import StateDir, write_atomic

START_TIMEOUT = 10.0
log = logging.getLogger(__name__)

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

    @property
    def configured(self) -> bool:
        """A front is configured (kind "none": there is none to be up or down)."""
        return self.kind != "none"

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
    # Whether it balances clients across the backends: False for "none" (real Conduit dials
    # out, so there is nothing to balance). Draining and graceful moves depend on it.
    balances: bool

    def status(self) -> FrontStatus: ...

    @property
    def installed_config(self) -> Path | None:
        """Its config file as installed (None: no front), for snapshots."""
        ...

    def plan(self, down: frozenset[str] = frozenset()) -> str:
        """What `apply(down)` would do, doing nothing: start|reload|unchanged. Raises
        ValidationFailed when the config it would install is rejected by the front's tool."""
        ...

    def apply(self, down: frozenset[str] = frozenset()) -> str:
        """Render, validate, install and (re)load. Returns started|reloaded|unchanged."""
        ...

    def set_down(self, down: frozenset[str]) -> str:
        """Take these backends out of service, the others in: reloaded|runtime-api|unchanged."""
        ...

    def pid(self) -> int | None:
        """The front's main process when it runs (cheap: a pid file and a /proc lookup)."""
        ...

    def listen_ports(self) -> set[int]:
        """The TCP ports it should be listening on."""
        ...

    def stop(self, timeout: float = 10.0) -> bool: ...


FRONT_EXES = frozenset({"nginx", "haproxy"})  # what a front master or worker runs
LOG_MODE = 0o640  # access and error logs: the adm group may read them, the world may not


def recorded_pid(path: Path) -> int | None:
    """The number in a pid file, alive or not."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def reap_session(
    sid: int, timeout: float | None = 3.0, exe_names: frozenset[str] = FRONT_EXES
) -> list[int]:
    """Stop what is left of a front whose master died: its workers keep the master's session
    id and would keep serving the old config (with reuseport, beside a new master). Only the
    front's own executables: a stale pid may be the session id of a stranger's processes.

    SIGQUIT: they stop accepting and finish their sessions. With `timeout`, whatever is left
    then is killed; with None they are left to finish in their own time."""
    orphans = []
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if (
                proc.pid != os.getpid()
                and os.getsid(proc.pid) == sid
                and Path(proc.exe()).name in exe_names
            ):
                proc.send_signal(signal.SIGQUIT)
                orphans.append(proc)
    if timeout is not None:
        _, alive = psutil.wait_procs(orphans, timeout=timeout)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
    return [p.pid for p in orphans]


def read_pid(
    path: Path,
    identity: Path | None = None,
    exe_names: frozenset[str] = FRONT_EXES,
    config: Path | None = None,
) -> int | None:
    """The front's live master named by its pid file, when it is the process we started
    (`identity`'s record, else an executable named one of `exe_names` running `config`):
    after a reboot the number may name a stranger, which is never signalled."""
    recorded = procid.load(identity) if identity is not None else None
    marker = str(config) if config is not None else None
    return procid.trusted(recorded_pid(path), recorded, exe_names, marker)


def listener_addresses(settings: Settings) -> list[tuple[str, str, int]]:
    """(label, host, port) of every listener; a wildcard bind is probed on loopback."""
    out = []
    for listener in settings.front.listeners:
        host = listener.host or settings.front.bind
        probe = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host.strip("[]"))
        out.append((str(listener), probe, listener.port))
    return out


def first_listener(settings: Settings, proto: Proto) -> tuple[str, int] | None:
    """(host, port) of the first front listener of `proto`, on loopback for a wildcard bind:
    where load tests and drills connect by default."""
    for listener, (_, host, port) in zip(
        settings.front.listeners, listener_addresses(settings), strict=True
    ):
        if listener.proto is proto:
            return host, port
    return None


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


def install(
    candidate: Rendered, path: Path, check: CheckFn, env: RenderEnv, *, checked: bool = False
) -> bool:
    """Validate `candidate` (unless `checked` already) and atomically put it at `path`. False
    when unchanged.

    Raises ValidationFailed (the live config stays) when the front's tool rejects it.
    """
    if path.exists() and path.read_text() == candidate.text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    if not checked:
        check(candidate, env, path.parent)
    write_atomic(path, candidate.text, secret=False)
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


class ProcessFront:
    """A front run as its own process tree, found through its pid file.

    Subclasses say how to render and check the config, start the process, and which signals
    reload it and stop it gracefully; status, validate-then-install and stop are shared.
    """

    kind: str
    balances = True
    config_name: str
    reload_signal: signal.Signals
    stop_signal: signal.Signals

    def __init__(self, settings: Settings, env: RenderEnv) -> None:
        self.settings = settings
        self.env = env
        self.dir = StateDir(env.state_dir).front
        self.conf = self.dir / self.config_name
        self.pid_file = self.pid_path()
        self.identity_file = self.dir / "identity.json"  # the master we started (procid)
        self.exe_names = frozenset({self.kind})
        self._planned: str | None = None  # the config text `plan` already had checked

    # --- what a front says about itself --------------------------------------------------

    def pid_path(self) -> Path:
        raise NotImplementedError

    def render(self, down: frozenset[str]) -> Rendered:
        raise NotImplementedError

    def check(self, rendered: Rendered, env: RenderEnv, workdir: Path) -> CheckResult:
        raise NotImplementedError

    def start_process(self) -> None:
        """Start the front; return once its pid file names a live process."""
        raise NotImplementedError

    def served_listeners(self) -> Settings:
        """The settings whose listeners this front really serves (HAProxy: TCP only)."""
        return self.settings

    def leftovers(self) -> list[Path]:
        """Files to remove after a stop, besides the pid file."""
        return []

    def log_files(self) -> list[Path]:
        """The logs it writes: created 0640 before it starts (clients' addresses are in them)."""
        return []

    # --- shared ---------------------------------------------------------------------------

    def _pid(self) -> int | None:
        return read_pid(self.pid_file, self.identity_file, self.exe_names, self.conf)

    @property
    def installed_config(self) -> Path | None:
        return self.conf

    def _make_dirs(self) -> None:
        for directory in (self.dir, self.env.log_dir, self.env.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        for path in self.log_files():  # the front opens them for appending: they stay 0640
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_MODE)
            try:
                os.fchmod(fd, LOG_MODE)
            finally:
                os.close(fd)

    def plan(self, down: frozenset[str] = frozenset()) -> str:
        rendered = self.render(down)
        changed = not (self.conf.exists() and self.conf.read_text() == rendered.text)
        if changed:
            self._make_dirs()  # the tool's check opens the pid and log paths
            self.check(rendered, self.env, self.dir)  # refused now, not half-way through
            self._planned = rendered.text
        if self._pid() is None:
            return "start"
        return "reload" if changed else "unchanged"

    def pid(self) -> int | None:
        return self._pid()

    def listen_ports(self) -> set[int]:
        served = self.served_listeners().front.listeners
        return {lst.port for lst in served if lst.proto is Proto.TCP}

    def status(self) -> FrontStatus:
        served = self.served_listeners()
        pid = self._pid()
        if pid is None:
            return FrontStatus(
                kind=self.kind,
                running=False,
                config=str(self.conf),
                reason="not running (conduitctl up starts it)",
                not_listening=[str(lst) for lst in served.front.listeners],
            )
        listening, missing = probe_listeners(served, tree_pids(pid))
        return FrontStatus(
            kind=self.kind,
            running=True,
            pid=pid,
            listening=listening,
            not_listening=missing,
            config=str(self.conf),
            reason=f"not listening on {', '.join(missing)}" if missing else None,
            started_at=os.stat(self.pid_file).st_mtime,
        )

    def apply(self, down: frozenset[str] = frozenset()) -> str:
        """Render, validate with the front's own tool, install, then start or reload."""
        rendered = self.render(down)
        self._make_dirs()
        checked = rendered.text == self._planned  # the plan's check: not run twice
        changed = install(rendered, self.conf, self.check, self.env, checked=checked)
        pid = self._pid()
        if pid is None:
            dead_master = recorded_pid(self.pid_file)
            self.start_process()
            if (started := self._pid()) is not None:
                procid.record(self.identity_file, started)
            if dead_master is not None:
                # After the new master listens (reuseport), so no connection is refused: the
                # old workers finish their sessions and take no new ones.
                self._reap(dead_master, timeout=None)
            return "started"
        if changed:
            before = _workers(pid)
            os.kill(pid, self.reload_signal)  # graceful: old workers finish their sessions
            _wait_new_workers(pid, before)
            return "reloaded"
        return "unchanged"

    def set_down(self, down: frozenset[str]) -> str:
        """Take the backends in `down` out of service and put the others back.

        The default re-renders with those servers `down` and reloads gracefully (nginx);
        fronts with a runtime API override it (HAProxy)."""
        return self.apply(down)

    def _reap(self, dead_master: int, timeout: float | None) -> None:
        reaped = reap_session(dead_master, timeout, self.exe_names)
        if reaped:
            log.warning("stopping the orphaned workers of a dead master",
                        extra={"front": self.kind, "workers": len(reaped),
                               "master_pid": dead_master})  # fmt: skip

    def stop(self, timeout: float = 10.0) -> bool:
        pid = self._pid()
        if pid is None:
            dead_master = recorded_pid(self.pid_file)
            if dead_master is not None:
                self._reap(dead_master, timeout)
            return False
        stop_by_signal(pid, self.stop_signal, timeout)
        for leftover in (self.pid_file, self.identity_file, *self.leftovers()):
            leftover.unlink(missing_ok=True)
        return True

    def wait_for_pid(self, process: subprocess.Popen[bytes] | None = None) -> bool:
        """True once the pid file names a live process (`process`, when given); False when
        `process` exits first or nothing appears in time."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                return False
            pid = self._pid()
            if pid is not None and (process is None or pid == process.pid):
                return True
            time.sleep(0.02)
        return False


class NoFront:
    """front.kind = "none": nothing to run, and status says why."""

    kind = "none"
    balances = False
    installed_config = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def plan(self, down: frozenset[str] = frozenset()) -> str:
        return "unchanged"

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

    def set_down(self, down: frozenset[str]) -> str:
        return "unchanged"

    def pid(self) -> int | None:
        return None

    def listen_ports(self) -> set[int]:
        return set()

    def stop(self, timeout: float = 10.0) -> bool:
        return False


RELOAD_WAIT_S = 3.0


def _workers(master: int) -> set[int]:
    try:
        return {w.pid for w in psutil.Process(master).children()}
    except psutil.Error:
        return set()


def _wait_new_workers(master: int, before: set[int], timeout: float = RELOAD_WAIT_S) -> None:
    """Until the master has a worker it did not have before the reload signal: from then
    on new connections meet the new config (the master retires the old workers next), so a
    caller that put a backend back in the front may count on it. Bounded: a slow reload is
    the next tick's to see, never a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if {w.pid for w in psutil.Process(master).children()} - before:
                return
        except psutil.Error:
            return  # the master is gone: whoever looks next sees it
        time.sleep(0.005)

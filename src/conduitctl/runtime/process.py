"""The process runtime: each backend a detached process in its own session.

Layout under STATE_DIR/process/NAME/: data/ (the identity key), spec.json (what it was started
with), state.json and pid (written by the shim), backend.log (+ .1 ... rotated). A backend
outlives the CLI that started it; the next command adopts it from these files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil

from conduitctl.errors import BadInput, ConduitctlError, MissingDependency
from conduitctl.runtime.base import (
    KEY_FILE,
    BackendStatus,
    LaunchSpec,
    OnRuntimeEvent,
    RuntimeEvent,
    State,
    read_key_file,
    write_key_file,
)
from conduitctl.runtime.cgroup import BackendCgroup
from conduitctl.runtime.pidfd import PidWatcher
from conduitctl.runtime.privileges import PASSED_ENV, closed_to, hand_over, run_as
from conduitctl.runtime.shim import LOG_FILE, PID_FILE, read_state, write_json
from conduitctl.settings import Settings
from conduitctl.statedir import StateDir, flock_within

SPEC_FILE = "spec.json"
MAX_KEPT_PROCESSES = 256
log = logging.getLogger(__name__)


def program_for(spec: LaunchSpec) -> list[str]:
    """The executable that runs this profile as a local process."""
    if spec.profile == "sim":
        return [sys.executable, "-m", "conduitctl.sim.main"]
    if spec.profile == "psiphon-conduit":
        binary = shutil.which("conduit")
        if binary is None:
            raise MissingDependency(
                "the process runtime needs the Conduit CLI as `conduit` on PATH; install a "
                'release from github.com/Psiphon-Inc/conduit or use cluster.runtime = "docker"'
            )
        return [binary]
    if spec.command:
        return []  # the generic profile's workload.command is the whole command line
    raise BadInput("workload.command: the generic profile on the process runtime needs a command")


def _closed_program(spec: LaunchSpec, uid: int, gid: int) -> str | None:
    """Why uid:gid cannot run this backend's program (None: it can)."""
    program = program_for(spec) or list(spec.argv(""))[:1]
    if not program:
        return None
    found = shutil.which(program[0]) or program[0]
    why = closed_to(Path(found), uid, gid, bits=1)
    if why is None and spec.profile == "sim":  # the simulator's source, read by that python
        import conduitctl.sim

        why = closed_to(Path(conduitctl.sim.__file__), uid, gid, bits=4)
    return why


LOCK_FILE = "lock"


LOCK_WAIT_S = 60.0  # a stop (up to 17 s) and a start (up to 10 s) of another command, twice


@contextlib.contextmanager
def _one_at_a_time(directory: Path) -> Iterator[None]:
    """An flock on the backend's directory for one start or stop (released on exit, even a
    crash's). A first start makes the directory, 0755 whatever the umask: the backend's
    user passes through it to its data. The lock file is never removed (remove keeps it),
    so two waiters never hold locks on two files of one name."""
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if not flock_within(fd, LOCK_WAIT_S):
            raise ConduitctlError(
                f"{directory.name}: another command has been starting or stopping it "
                f"for {LOCK_WAIT_S:.0f} s; try again when it is done"
            )
        yield
    finally:
        os.close(fd)


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from one pass over /proc. psutil's children() makes that
    pass on each call, so listing a fleet with it costs one pass per backend."""
    children: dict[int, list[int]] = {}
    for pid in psutil.pids():
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses
            ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(pid)
    return children


def descendants(pid: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, ()))
    return found


class ProcessRuntime:
    name = "process"

    def __init__(self, state_dir: Path, cluster: str) -> None:
        self.root = StateDir(state_dir).processes
        self.cluster = cluster
        self._procs: dict[int, psutil.Process] = {}  # usage()'s, by pid

    # --- reading -----------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.root / name

    def _dirs(self) -> list[str]:
        if not self.root.is_dir():
            return []
        prefix = f"{self.cluster}-"
        names = [
            d.name
            for d in self.root.iterdir()
            if d.is_dir() and d.name.startswith(prefix) and d.name[len(prefix) :].isdigit()
        ]
        return sorted(names, key=lambda n: int(n.rsplit("-", 1)[1]))

    def _names(self) -> list[str]:
        """Backends that exist (have been started and not removed)."""
        return [n for n in self._dirs() if (self._dir(n) / SPEC_FILE).exists()]

    def data_names(self) -> list[str]:
        return [n for n in self._dirs() if (self._dir(n) / "data").is_dir()]

    def _live_process(self, directory: Path) -> psutil.Process | None:
        """The backend's process if it is alive and really ours (pid files can be stale)."""
        state = read_state(directory)
        try:
            pid = int((directory / PID_FILE).read_text())
        except (OSError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            started = state.get("started_at")
            if isinstance(started, int | float) and abs(proc.create_time() - started) > 5:
                return None  # the pid was reused by something else
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            return None
        return proc

    def status(self, name: str, children: dict[int, list[int]] | None = None) -> BackendStatus:
        """`children` (children_by_parent) saves a pass over /proc when listing many."""
        directory = self._dir(name)
        index = int(name.rsplit("-", 1)[1])
        if not (directory / SPEC_FILE).exists():
            return BackendStatus(name=name, index=index, state=State.MISSING)
        state = read_state(directory)
        spec = _read_json(directory / SPEC_FILE)
        proc = self._live_process(directory)
        oom_kills = BackendCgroup(self.cluster, name).oom_kills()
        common = dict(
            name=name,
            index=index,
            restart_count=int(spec.get("restart_count", 0)),
            config_hash=spec.get("config_hash"),
            exit_code=state.get("exit_code"),
            oom_killed=proc is None
            and oom_kills is not None
            and oom_kills > int(spec.get("oom_baseline", 0)),
        )
        if proc is None:
            return BackendStatus(state=State.STOPPED, **common)  # type: ignore[arg-type]
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                tree = (
                    proc.children(recursive=True)
                    if children is None
                    else [psutil.Process(pid) for pid in descendants(proc.pid, children)]
                )
                cpu = times.user + times.system
                rss = proc.memory_info().rss
                for child in tree:
                    ct = child.cpu_times()
                    cpu += ct.user + ct.system
                    rss += child.memory_info().rss
        except psutil.Error:
            return BackendStatus(state=State.STOPPED, **common)  # type: ignore[arg-type]
        return BackendStatus(
            state=State.RUNNING,
            pid=proc.pid,
            started_at=proc.create_time(),
            cpu_seconds=cpu,
            rss_bytes=rss,
            **common,  # type: ignore[arg-type]
        )

    def oom_count(self, name: str) -> int | None:
        """OOM kills so far in the backend's memory cgroup (None: it has none)."""
        return BackendCgroup(self.cluster, name).oom_kills()

    def image_id(self, tag: str | None) -> str | None:
        return None  # processes run no image

    def retag(self, tag: str, image_id: str) -> bool:
        return False

    def oom_kills_since(self, since: float, until: float) -> set[str]:
        return set()  # counted from each backend's memory cgroup (oom_count)

    def foreign(self, names: Iterable[str]) -> dict[str, str]:
        return {}  # its backends live in this state dir: nothing else can hold their names

    def launch_problems(self, specs: list[LaunchSpec]) -> dict[str, str]:
        """A backend that would run as container.user (conduitctl runs as root) but whose
        program, or its own directory, that user cannot reach."""
        found: dict[str, str] = {}
        for spec in specs:
            user = run_as(spec.hardening.user)
            if user is None:
                continue
            why = _closed_program(spec, *user) or closed_to(self._dir(spec.name), *user, bits=1)
            if why:
                found[spec.name] = (
                    f"it would run as {user[0]}:{user[1]} (container.user), but {why}; make it "
                    'reachable, or keep root with container.user = "0:0" and '
                    "container.allow_weak_hardening = true"
                )
        return found

    def key_store(self, settings: Settings) -> ProcessKeys:
        return ProcessKeys(settings, self)

    def legacy(self, settings: Settings) -> None:
        """None: conduit-manager's layout is docker containers."""
        return None

    def watch_exits(self, loop: asyncio.AbstractEventLoop, on_event: OnRuntimeEvent) -> PidWatcher:
        """A pidfd per backend process, from `watch` on."""
        return PidWatcher(loop, lambda name, detail: on_event(name, RuntimeEvent.DIED, detail))

    def usage(self, pid: int) -> tuple[float | None, int | None]:
        """CPU seconds and RSS of one process. The supervisor asks for every backend every
        tick: its psutil.Process is kept (half the cost), dropped once the process is gone."""
        proc = self._procs.get(pid)
        try:
            if proc is None:
                if len(self._procs) >= MAX_KEPT_PROCESSES:  # pids of long-gone backends
                    self._procs.clear()
                proc = self._procs[pid] = psutil.Process(pid)
            times = proc.cpu_times()
            return times.user + times.system, proc.memory_info().rss
        except psutil.Error:
            self._procs.pop(pid, None)
            return None, None

    def backends(self) -> list[BackendStatus]:
        names = self._names()
        children = children_by_parent() if names else None
        return [self.status(name, children) for name in names]

    # --- acting ------------------------------------------------------------------------

    def start(self, spec: LaunchSpec) -> BackendStatus:
        """Start it (a config change replaces it); a live one with this config is kept.
        One start or stop of a backend at a time, across processes: the supervisor's restart
        and an operator's never race into two of it."""
        with _one_at_a_time(self._dir(spec.name)):
            return self._start(spec)

    def _start(self, spec: LaunchSpec) -> BackendStatus:
        directory = self._dir(spec.name)
        data = directory / "data"
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        previous = _read_json(directory / SPEC_FILE)
        if self._live_process(directory) is not None:
            if previous.get("config_hash") == spec.config_hash():
                return self.status(spec.name)
            self._stop(spec.name)  # the config changed: replace it, keeping its data
        user = run_as(spec.hardening.user)
        if user is not None:
            hand_over(data, *user)
        restarts = int(previous.get("restart_count", -1)) + 1 if previous else 0
        argv = program_for(spec) + spec.argv(str(data.absolute()))
        cgroup = BackendCgroup(self.cluster, spec.name)
        why_not = cgroup.create(spec.backend.memory_bytes)
        if why_not:
            log.warning("runs without a memory limit", extra={"backend": spec.name, "why": why_not})
        write_json(
            directory / SPEC_FILE,
            {
                "name": spec.name,
                "config_hash": spec.config_hash(),
                "argv": argv,
                "restart_count": restarts,
                "created_at": previous.get("created_at", time.time()),
                "cgroup": None if why_not else str(cgroup.path),
                "oom_baseline": cgroup.oom_kills() or 0,  # OOM kills before this start
            },
        )
        (directory / PID_FILE).unlink(missing_ok=True)
        h = spec.hardening
        shim = [
            sys.executable,
            "-m",
            "conduitctl.runtime.shim",
            "--dir",
            str(directory.absolute()),
            "--max-bytes",
            str(h.log_max_size),
            "--backups",
            str(h.log_max_files),
            "--nofile",
            str(h.nofile),
            *([] if why_not else ["--cgroup-procs", str(cgroup.procs)]),
            *(["--drop-caps"] if "ALL" in (c.upper() for c in h.cap_drop) else []),
            *(["--no-new-privs"] if h.no_new_privileges else []),
            *(["--user", f"{user[0]}:{user[1]}"] if user else []),
            "--",
            *argv,
        ]
        env = {**os.environ, "CONDUIT_SIM_NAME": spec.name}
        if user is not None:  # root's environment (SSH_AUTH_SOCK, SUDO_*, tokens) stays root's
            env = {k: v for k, v in env.items() if k in PASSED_ENV or k.startswith("CONDUIT_")}
            env["HOME"] = str(data.absolute())
        launched = time.time()
        subprocess.Popen(  # detached: its own session, no fds shared with this CLI
            shim,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd=str(directory),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (directory / PID_FILE).exists() and self._live_process(directory):
                return self.status(spec.name)
            finished = read_state(directory).get("finished_at")
            if isinstance(finished, float) and finished >= launched:
                break  # this launch already ended
            time.sleep(0.02)
        tail = "".join(self.logs(spec.name, tail=3)).strip().replace("\n", " | ")
        raise ConduitctlError(
            f"{spec.name}: the backend did not start ({tail or 'no output'}); "
            f"see `conduitctl logs {spec.name}`"
        )

    def stop(self, name: str, timeout: float = 10.0) -> None:
        if not self._dir(name).is_dir():
            return  # never started: nothing to stop, and no directory made for it
        with _one_at_a_time(self._dir(name)):
            self._stop(name, timeout)

    def _stop(self, name: str, timeout: float = 10.0) -> None:
        directory = self._dir(name)
        proc = self._live_process(directory)
        if proc is None:
            return
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        except psutil.NoSuchProcess:
            pass
        # The shim records the exit; give it a moment so the next status reads it.
        deadline = time.monotonic() + 2
        while (directory / PID_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    def remove(self, name: str, purge: bool = False) -> None:
        directory = self._dir(name)
        if not directory.is_dir():
            return
        with _one_at_a_time(directory):  # stopped and cleared in one hold: no start between
            self._stop(name)
            BackendCgroup(self.cluster, name).remove()
            if purge:  # `down --purge`: the supervisor is stopped first, nothing races it
                shutil.rmtree(directory, ignore_errors=True)
                return
            for entry in directory.iterdir():
                if entry.name not in ("data", LOCK_FILE):  # the identity key outlives it
                    if entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)

    def logs(self, name: str, tail: int | None = None, follow: bool = False) -> Iterator[str]:
        path = self._dir(name) / LOG_FILE
        if not path.exists():
            return
        with path.open("r", errors="replace") as handle:
            lines = deque(handle, maxlen=tail) if tail is not None else list(handle)
            yield from lines
            while follow:
                line = handle.readline()
                if line:
                    yield line
                else:
                    time.sleep(0.2)

    # --- signals (the chaos drill) ---

    def send_signal(self, name: str, sig: signal.Signals, pid: int | None = None) -> bool:
        proc = self._live_process(self._dir(name))
        if proc is None or (pid is not None and proc.pid != pid):
            return False
        try:
            proc.send_signal(sig)  # psutil refuses a pid reused since `proc` was read
        except psutil.NoSuchProcess:
            return False
        return True


class ProcessKeys:
    """Keys in STATE_DIR/process/NAME/data/."""

    in_volumes = False

    def __init__(self, settings: Settings, runtime: ProcessRuntime) -> None:
        self.runtime = runtime
        self.root = StateDir(settings.state_dir).processes
        self.owner = run_as(settings.container.user)  # the backend reads its key as this

    def path(self, backend: str) -> Path:
        return self.root / backend / "data" / KEY_FILE

    def names(self) -> list[str]:
        return list(self.runtime.data_names())

    def read(self, backend: str) -> bytes | None:
        return read_key_file(self.path(backend))

    def write(self, backend: str, data: bytes) -> None:
        path = self.path(backend)
        with _one_at_a_time(self.root / backend):  # not while it is being started
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self.owner is None:
                write_key_file(path, data)
                return
            hand_over(path.parent, *self.owner)
            write_key_file(path, data, *self.owner)

    def running(self, backend: str) -> bool:
        return self.runtime.status(backend).state in (State.RUNNING, State.RESTARTING)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

"""Start, find, reload and stop the supervisor daemon of a state dir (edge).

`up` starts it in the background (its own session, its output in the log dir); `down` stops it
first, so it does not restart the backends `down` is stopping.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from conduitctl import procid
from conduitctl.errors import ConduitctlError
from conduitctl.statedir import StateDir, write_atomic

START_TIMEOUT_S = 15.0
LOG_MODE = 0o640  # the daemon's and the rollout driver's output: the adm group may read it


def pid_file(state_dir: Path) -> Path:
    return StateDir(state_dir).daemon_pid


def daemon_pid(state_dir: Path) -> int | None:
    """The running daemon's pid: the process its identity record names, still the same one
    (start time and executable; conduitctl.procid), never whoever has the number now."""
    files = StateDir(state_dir)
    recorded = procid.load(files.daemon_identity)
    if recorded is None:
        return None
    return recorded.pid if procid.same(recorded, procid.identity_of(recorded.pid)) else None


_held_lock: int | None = None  # the daemon's lock, open for the life of the process


def claim(state_dir: Path) -> None:
    """Take the daemon lock (an flock held until this process exits: a second daemon on the
    same state dir cannot start, even in a race) and record our identity and pid file."""
    global _held_lock
    files = StateDir(state_dir)
    files.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(files.daemon_lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        other = daemon_pid(state_dir)
        raise ConduitctlError(
            f"a daemon (pid {other or '?'}) already supervises {state_dir}; stop it first "
            "(conduitctl daemon-stop) or use it"
        ) from None
    _held_lock = fd
    procid.record(files.daemon_identity, os.getpid())
    write_atomic(pid_file(state_dir), f"{os.getpid()}\n", secret=False)


def release(state_dir: Path) -> None:
    global _held_lock
    files = StateDir(state_dir)
    recorded = procid.load(files.daemon_identity)
    if recorded is not None and recorded.pid == os.getpid():
        files.daemon_identity.unlink(missing_ok=True)
        pid_file(state_dir).unlink(missing_ok=True)
    if _held_lock is not None:
        os.close(_held_lock)  # releases the flock
        _held_lock = None


def spawn_detached(argv: list[str], out: Path) -> subprocess.Popen[bytes]:
    """A process in its own session (it outlives this command and its terminal), its
    output appended to `out`."""
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_MODE)
    os.fchmod(fd, LOG_MODE)  # an older 0644 one, or a umask that would widen it
    with os.fdopen(fd, "ab") as handle:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def start_background(config_path: Path, state_dir: Path, log_dir: Path) -> int:
    """Start `conduitctl daemon` detached; returns its pid once it has claimed the state dir."""
    running = daemon_pid(state_dir)
    if running is not None:
        return running
    log_dir.mkdir(parents=True, exist_ok=True)
    out = log_dir / "daemon.out"
    argv = [sys.executable, "-m", "conduitctl", "daemon", "--config", str(config_path.absolute())]
    process = spawn_detached(argv, out)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if daemon_pid(state_dir) == process.pid:
            return process.pid
        if process.poll() is not None:
            tail = out.read_text(errors="replace").strip().splitlines()[-1:]
            raise ConduitctlError(
                f"the daemon exited at start ({tail[0] if tail else 'no output'}); see {out}"
            )
        time.sleep(0.05)
    raise ConduitctlError(f"the daemon did not start within {START_TIMEOUT_S:g}s; see {out}")


def signal_daemon(state_dir: Path, sig: signal.Signals) -> bool:
    pid = daemon_pid(state_dir)
    if pid is None:
        return False
    os.kill(pid, sig)
    return True


def stop(state_dir: Path, timeout: float = 10.0) -> bool:
    """SIGTERM and wait; SIGKILL after `timeout`. False when no daemon ran."""
    pid = daemon_pid(state_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
    except psutil.NoSuchProcess:
        pass
    pid_file(state_dir).unlink(missing_ok=True)
    return True

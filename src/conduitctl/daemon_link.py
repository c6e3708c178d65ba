"""Start, find, reload and stop the supervisor daemon of a state dir (edge).

`up` starts it in the background (its own session, its output in the log dir); `down` stops it
first, so it does not restart the backends `down` is stopping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from conduitctl.errors import ConduitctlError
from conduitctl.statedir import StateDir, write_atomic

START_TIMEOUT_S = 15.0
LOG_MODE = 0o640  # the daemon's and the rollout driver's output: the adm group may read it


def pid_file(state_dir: Path) -> Path:
    return StateDir(state_dir).daemon_pid


def daemon_pid(state_dir: Path) -> int | None:
    """The running daemon's pid, if its pid file names a live conduitctl daemon."""
    try:
        pid = int(pid_file(state_dir).read_text().split()[0])
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or "daemon" not in proc.cmdline():
            return None
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    return pid


def claim(state_dir: Path) -> None:
    """Write our pid file, refusing when another daemon supervises this state dir."""
    other = daemon_pid(state_dir)
    if other is not None and other != os.getpid():
        raise ConduitctlError(
            f"a daemon (pid {other}) already supervises {state_dir}; stop it first "
            "(conduitctl daemon-stop) or use it"
        )
    write_atomic(pid_file(state_dir), f"{os.getpid()}\n", secret=False)


def release(state_dir: Path) -> None:
    path = pid_file(state_dir)
    try:
        if int(path.read_text().split()[0]) == os.getpid():
            path.unlink()
    except (OSError, ValueError, IndexError):
        pass


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

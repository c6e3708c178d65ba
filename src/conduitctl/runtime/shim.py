"""A tiny per-backend shim for the process runtime (stdlib only), like containerd-shim.

It starts the backend in its own session, copies its output to a size-rotated log, and when
the backend exits records the exit code, so a later `conduitctl` can report it. It does not
restart anything: that is the supervisor's job.

    python -m conduitctl.runtime.shim --dir DIR --max-bytes N --backups K [--nofile N]
        [--drop-caps] [--no-new-privs] -- ARGV...
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conduitctl.statedir import write_atomic  # stdlib only, like this shim

PID_FILE = "pid"
STATE_FILE = "state.json"
LOG_FILE = "backend.log"


class RotatingLog:
    """Append-only log that rotates by size: backend.log, backend.log.1, ... .K."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self.handle = path.open("ab")
        self.size = self.handle.tell()

    def write(self, data: bytes) -> None:
        if self.size + len(data) > self.max_bytes and self.size > 0:
            self.rotate()
        self.handle.write(data)
        self.handle.flush()
        self.size += len(data)

    def rotate(self) -> None:
        self.handle.close()
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self.handle = self.path.open("ab")
        self.size = 0


def write_json(path: Path, data: dict[str, object]) -> None:
    write_atomic(path, json.dumps(data), secret=False)


def read_state(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38


def _prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {arg})")


def drop_privileges(
    *, drop_caps: bool, no_new_privs: bool, user: tuple[int, int] | None = None
) -> None:
    """In the child, just before exec: no capability can survive the exec (the bounding set
    is emptied, so even uid 0 execs with none), it becomes `user` (uid, gid; no
    supplementary groups) when given, and nothing it runs gains privileges (setuid
    binaries, file capabilities). In that order: emptying the set needs root."""
    if drop_caps and os.geteuid() == 0:
        try:
            last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
        except (OSError, ValueError):
            last = 40
        for cap in range(last + 1):
            _prctl(PR_CAPBSET_DROP, cap)
    if user is not None:
        uid, gid = user
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # all three: no way back to root
        if os.getresuid() != (uid,) * 3 or os.getresgid() != (gid,) * 3 or os.getgroups():
            raise OSError(f"still {os.getresuid()}:{os.getresgid()} after dropping to {uid}:{gid}")
    if no_new_privs:
        _prctl(PR_SET_NO_NEW_PRIVS, 1)


def parse_user(text: str) -> tuple[int, int]:
    uid, _, gid = text.partition(":")
    return int(uid), int(gid or uid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="conduitctl-shim")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--max-bytes", type=int, default=10 * 1024 * 1024)
    parser.add_argument("--backups", type=int, default=3)
    parser.add_argument("--nofile", type=int, default=0)
    parser.add_argument("--cgroup-procs", type=Path, default=None)
    parser.add_argument("--drop-caps", action="store_true")
    parser.add_argument("--no-new-privs", action="store_true")
    parser.add_argument("--user", type=parse_user, default=None, help="UID:GID to run as")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    directory: Path = args.dir
    log = RotatingLog(directory / LOG_FILE, args.max_bytes, args.backups)

    def limits() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)  # ignored dispositions survive exec: undo ours
        os.umask(0o077)  # what the backend writes (its key) is its own
        if args.cgroup_procs is not None:
            try:  # "0": the writing process itself, i.e. the backend-to-be
                with open(args.cgroup_procs, "w") as procs:
                    procs.write("0")
            except OSError:
                pass  # no limit is better than no backend
        if args.nofile:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            target = args.nofile if hard == resource.RLIM_INFINITY else min(args.nofile, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
        # last: the limits above need root
        drop_privileges(drop_caps=args.drop_caps, no_new_privs=args.no_new_privs, user=args.user)

    # The shim ignores the signals a terminal or `conduitctl stop` sends the group: the backend
    # gets them and the shim lives on to record how it ended.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=limits,
            close_fds=True,
            restore_signals=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:  # the latter: raised in preexec
        log.write(f"conduitctl-shim: cannot start {command[:1]}: {exc}\n".encode())
        state = read_state(directory)
        write_json(
            directory / STATE_FILE,
            {**state, "exit_code": 127, "finished_at": time.time(), "pid": None},
        )
        return 127
    state = read_state(directory)
    write_json(
        directory / STATE_FILE,
        {**state, "pid": child.pid, "started_at": time.time()},  # keeps the last exit
    )
    write_atomic(directory / PID_FILE, f"{child.pid}\n", secret=False)
    assert child.stdout is not None
    for chunk in iter(lambda: child.stdout.readline(), b""):  # type: ignore[union-attr]
        log.write(chunk)
    code = child.wait()
    log.write(f"conduitctl-shim: backend exited with code {code}\n".encode())
    state = read_state(directory)
    write_json(
        directory / STATE_FILE,
        {
            **state,
            "exit_code": code if code >= 0 else 128 - code,  # the shell's convention
            "signal": -code if code < 0 else None,
            "finished_at": time.time(),
        },
    )
    (directory / PID_FILE).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""HAProxy as the front: master-worker mode, config and sockets under the state dir.

Reload is the master's USR2 (new workers take the listeners; old ones finish their
sessions); stop is USR1 (soft stop) then TERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from conduitctl.errors import ConduitctlError, MissingDependency
from conduitctl.front.base import (
    FrontStatus,
    install,
    probe_listeners,
    read_pid,
    stop_by_signal,
    tree_pids,
)
from conduitctl.render import haproxy as haproxy_render
from conduitctl.render.base import RenderEnv
from conduitctl.render.check_front import HAPROXY_INSTALL, check_haproxy, find_tool
from conduitctl.settings import Proto, Settings

START_TIMEOUT = 10.0


class HaproxyFront:
    kind = "haproxy"

    def __init__(self, settings: Settings, env: RenderEnv) -> None:
        self.settings = settings
        self.env = env
        self.dir = env.state_dir / "front"
        self.conf = self.dir / "haproxy.cfg"
        self.pid_file = haproxy_render.pid_path(env)
        self.master_socket = env.run_dir / "haproxy-master.sock"
        self.log_file = env.log_dir / "haproxy.log"

    def _binary(self) -> str:
        tool = find_tool("haproxy")
        if tool is None:
            raise MissingDependency(f"haproxy not found; install it: {HAPROXY_INSTALL}")
        return tool

    def _pid(self) -> int | None:
        return read_pid(self.pid_file)

    def status(self) -> FrontStatus:
        pid = self._pid()
        tcp_only = [lst for lst in self.settings.front.listeners if lst.proto is Proto.TCP]
        if pid is None:
            return FrontStatus(
                kind=self.kind,
                running=False,
                config=str(self.conf),
                reason="not running (conduitctl up starts it)",
                not_listening=[str(lst) for lst in tcp_only],
            )
        scoped = self.settings.model_copy(
            update={"front": self.settings.front.model_copy(update={"listeners": tcp_only})}
        )
        listening, missing = probe_listeners(scoped, tree_pids(pid))
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
        """Render, validate (haproxy -c), install, then start or reload the master."""
        rendered = haproxy_render.render_config(self.settings, self.env, down=down)
        for directory in (self.dir, self.env.log_dir, self.env.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        changed = install(rendered, self.conf, check_haproxy, self.env)
        pid = self._pid()
        if pid is None:
            self._start()
            return "started"
        if changed:
            os.kill(pid, signal.SIGUSR2)  # master-worker reload
            return "reloaded"
        return "unchanged"

    def _start(self) -> None:
        """Foreground master-worker in its own session; its stdout (the log) goes to a file."""
        argv = [
            self._binary(),
            "-W",
            "-f",
            str(self.conf),
            "-p",
            str(self.pid_file),
            "-S",
            f"{self.master_socket},mode,600",
        ]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                lines = self.log_file.read_text(errors="replace").strip().splitlines()
                alert = next((ln for ln in reversed(lines) if "ALERT" in ln), "")
                raise ConduitctlError(
                    f"haproxy did not start: {alert or f'exit code {process.returncode}'}; "
                    f"see {self.log_file}"
                )
            if self._pid() == process.pid:
                return
            time.sleep(0.02)
        raise ConduitctlError(f"haproxy started but wrote no pid file {self.pid_file}")

    def stop(self, timeout: float = 10.0) -> bool:
        pid = self._pid()
        if pid is None:
            return False
        stop_by_signal(pid, signal.SIGUSR1, timeout)  # soft stop: finish sessions
        for leftover in (
            self.pid_file,
            self.master_socket,
            haproxy_render.stats_socket_path(self.env),
        ):
            leftover.unlink(missing_ok=True)
        return True

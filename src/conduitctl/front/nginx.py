"""nginx (stream) as the front: started with its own config and prefix under the state dir."""

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
from conduitctl.render import nginx as nginx_render
from conduitctl.render.base import RenderEnv
from conduitctl.render.check_front import NGINX_INSTALL, check_nginx, find_tool
from conduitctl.settings import Settings

START_TIMEOUT = 10.0


class NginxFront:
    kind = "nginx"

    def __init__(self, settings: Settings, env: RenderEnv) -> None:
        self.settings = settings
        self.env = env
        self.dir = env.state_dir / "front"
        self.conf = self.dir / "nginx.conf"
        self.prefix = self.dir / "nginx-prefix"
        self.pid_file = nginx_render.pid_path(env)

    def _binary(self) -> str:
        tool = find_tool("nginx")
        if tool is None:
            raise MissingDependency(f"nginx not found; install it: {NGINX_INSTALL}")
        return tool

    def _pid(self) -> int | None:
        return read_pid(self.pid_file)

    def status(self) -> FrontStatus:
        pid = self._pid()
        if pid is None:
            return FrontStatus(
                kind=self.kind,
                running=False,
                config=str(self.conf),
                reason="not running (conduitctl up starts it)",
                not_listening=[str(lst) for lst in self.settings.front.listeners],
            )
        listening, missing = probe_listeners(self.settings, tree_pids(pid))
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
        """Render, validate (nginx -t), install, then start or gracefully reload."""
        rendered = nginx_render.render_config(self.settings, self.env, down=down)
        for directory in (self.dir, self.prefix, self.env.log_dir, self.env.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        changed = install(rendered, self.conf, check_nginx, self.env)
        pid = self._pid()
        if pid is None:
            self._start()
            return "started"
        if changed:
            os.kill(pid, signal.SIGHUP)  # graceful: old workers finish their sessions
            return "reloaded"
        return "unchanged"

    def _start(self) -> None:
        argv = [self._binary(), "-c", str(self.conf), "-p", f"{self.prefix}/"]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, start_new_session=True, check=False
        )
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise ConduitctlError(
                f"nginx did not start: {message[-1] if message else 'no output'}; "
                f"see {self.env.log_dir / 'nginx-error.log'}"
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._pid() is not None:
                return
            time.sleep(0.02)
        raise ConduitctlError(f"nginx started but wrote no pid file {self.pid_file}")

    def stop(self, timeout: float = 10.0) -> bool:
        pid = self._pid()
        if pid is None:
            return False
        stop_by_signal(pid, signal.SIGQUIT, timeout)  # QUIT: finish sessions, then exit
        self.pid_file.unlink(missing_ok=True)
        return True

"""nginx (stream) as the front: started with its own config and prefix under the state dir.

Reload is SIGHUP (new workers; old ones finish their sessions); stop is SIGQUIT (graceful).
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from conduitctl.errors import ConduitctlError, MissingDependency
from conduitctl.front.base import ProcessFront
from conduitctl.render import CheckResult
from conduitctl.render import nginx as nginx_render
from conduitctl.render.base import Rendered, RenderEnv
from conduitctl.render.check_front import NGINX_INSTALL, check_nginx, find_tool


class NginxFront(ProcessFront):
    kind = "nginx"
    config_name = "nginx.conf"
    reload_signal = signal.SIGHUP
    stop_signal = signal.SIGQUIT

    @property
    def prefix(self) -> Path:
        return self.dir / "nginx-prefix"

    def pid_path(self) -> Path:
        return nginx_render.pid_path(self.env)

    def log_files(self) -> list[Path]:
        return [nginx_render.error_log_path(self.env), nginx_render.access_log_path(self.env)]

    def render(self, down: frozenset[str]) -> Rendered:
        return nginx_render.render_config(self.settings, self.env, down=down)

    def check(self, rendered: Rendered, env: RenderEnv, workdir: Path) -> CheckResult:
        return check_nginx(rendered, env, workdir)

    def start_process(self) -> None:
        """nginx daemonizes itself (its own session); its logs are in the log dir."""
        tool = find_tool("nginx")
        if tool is None:
            raise MissingDependency(f"nginx not found; install it: {NGINX_INSTALL}")
        self.prefix.mkdir(parents=True, exist_ok=True)
        argv = [tool, "-c", str(self.conf), "-p", f"{self.prefix}/"]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, start_new_session=True, check=False
        )
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise ConduitctlError(
                f"nginx did not start: {message[-1] if message else 'no output'}; "
                f"see {nginx_render.error_log_path(self.env)}"
            )
        if not self.wait_for_pid():
            raise ConduitctlError(f"nginx started but wrote no pid file {self.pid_file}")

"""HAProxy as the front: foreground master-worker in its own session, files under the state dir.

Reload is the master's USR2 (new workers take the listeners; old ones finish their sessions);
stop is USR1 (soft stop) then TERM.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
from pathlib import Path

from conduitctl.errors import ConduitctlError, MissingDependency
from conduitctl.front.base import ProcessFront, install
from conduitctl.render import CheckResult
from conduitctl.render import haproxy as haproxy_render
from conduitctl.render.base import Rendered, RenderEnv
from conduitctl.render.check_front import HAPROXY_INSTALL, check_haproxy, find_tool
from conduitctl.settings import Proto, Settings

log = logging.getLogger(__name__)


def runtime_command(socket_path: Path, command: str, timeout: float = 2.0) -> str:
    """One command (or several, `;`-separated) on HAProxy's admin socket; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


class HaproxyFront(ProcessFront):
    kind = "haproxy"
    config_name = "haproxy.cfg"
    reload_signal = signal.SIGUSR2
    stop_signal = signal.SIGUSR1

    @property
    def master_socket(self) -> Path:
        return self.env.run_dir / "haproxy-master.sock"

    @property
    def log_file(self) -> Path:
        return self.env.log_dir / haproxy_render.LOG_FILE

    def pid_path(self) -> Path:
        return haproxy_render.pid_path(self.env)

    def render(self, down: frozenset[str]) -> Rendered:
        return haproxy_render.render_config(self.settings, self.env, down=down)

    def check(self, rendered: Rendered, env: RenderEnv, workdir: Path) -> CheckResult:
        return check_haproxy(rendered, env, workdir)

    def served_listeners(self) -> Settings:
        """Community HAProxy balances TCP only; UDP listeners are skipped by the renderer."""
        tcp = [lst for lst in self.settings.front.listeners if lst.proto is Proto.TCP]
        front = self.settings.front.model_copy(update={"listeners": tcp})
        return self.settings.model_copy(update={"front": front})

    def set_down(self, down: frozenset[str]) -> str:
        """Through the runtime API, no reload: `maint` for `down`, `ready` for the rest. The
        config on disk is updated (validated, not reloaded) so a restart keeps the states."""
        if self._pid() is None:
            return self.apply(down)
        install(self.render(down), self.conf, self.check, self.env)
        backend = haproxy_render.backend_name(self.settings)
        commands = ";".join(
            f"set server {backend}/{name} state {'maint' if name in down else 'ready'}"
            for name in self.settings.backend_names()
        )
        try:
            answer = runtime_command(haproxy_render.stats_socket_path(self.env), commands)
        except OSError as exc:
            log.warning("haproxy runtime API failed; reloading instead", extra={"error": str(exc)})
            return self.apply(down)
        if answer.strip():
            log.warning("haproxy runtime API answered", extra={"answer": answer.strip()[:200]})
        return "runtime-api"

    def log_files(self) -> list[Path]:
        return [self.log_file]

    def leftovers(self) -> list[Path]:
        return [self.master_socket, haproxy_render.stats_socket_path(self.env)]

    def start_process(self) -> None:
        """Foreground master-worker in its own session; its stdout (the log) goes to a file."""
        tool = find_tool("haproxy")
        if tool is None:
            raise MissingDependency(f"haproxy not found; install it: {HAPROXY_INSTALL}")
        argv = [
            tool,
            "-W",
            "-f",
            str(self.conf),
            "-p",
            str(self.pid_file),
            "-S",
            f"{self.master_socket},mode,600",
        ]
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        if not self.wait_for_pid(process):
            lines = self.log_file.read_text(errors="replace").strip().splitlines()
            alert = next((ln for ln in reversed(lines) if "ALERT" in ln), "")
            raise ConduitctlError(
                f"haproxy did not start: {alert or f'exit code {process.poll()}'}; "
                f"see {self.log_file}"
            )

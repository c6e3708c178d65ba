"""Validate a rendered front config with the front's own tool: `nginx -t`, `haproxy -c` (edge).

Each check writes the text to a temp file in `workdir`, runs the tool with a timeout, removes
the file, and returns what the tool said. A rejected config raises ValidationFailed (message:
one line naming the tool and its first error; `.output`: everything it printed); a missing
tool raises MissingDependency naming the package to install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conduitctl.errors import MissingDependency, ValidationFailed
from conduitctl.render import CheckResult
from conduitctl.render.base import Rendered, RenderEnv

TIMEOUT_SECONDS = 30.0
# Debian puts both tools in /usr/sbin, which is not on a non-root PATH.
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
NGINX_INSTALL = "apt-get install nginx libnginx-mod-stream"
HAPROXY_INSTALL = "apt-get install haproxy"

_NGINX_ERROR = re.compile(r"\[(emerg|alert|crit|error)\]")
_NGINX_PREFIX = re.compile(r"^(nginx: |\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )")
_NGINX_PID = re.compile(r"^\[(\w+)\] \d+#\d+: ")
_HAPROXY_ALERT = re.compile(r"^\[ALERT\]\s+\(\d+\) : ")


def find_tool(name: str) -> str | None:
    """The tool's path: PATH first, then the sbin directories."""
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN_DIRS])
    return shutil.which(name, path=path)


def check_nginx(
    rendered: Rendered, env: RenderEnv, workdir: Path, *, binary: str | None = None
) -> CheckResult:
    """Run `nginx -t -q -c FILE -p PREFIX` on the rendered text (prefix in `workdir`).

    nginx opens the files the config names (error log, access log) while testing, so the
    log directory in `env` must exist. Raises MissingDependency when nginx or its stream
    module is absent, ValidationFailed when nginx rejects the config or does not answer.
    """
    tool = binary or find_tool("nginx")
    if tool is None or not Path(tool).exists():
        raise MissingDependency(f"nginx not found; install it: {NGINX_INSTALL}")
    module = env.nginx_stream_module
    if module and Path(module).is_absolute() and not Path(module).exists():
        raise MissingDependency(
            f"nginx stream module {module} not found; install it: {NGINX_INSTALL}"
        )
    prefix = workdir / "nginx-prefix"
    prefix.mkdir(parents=True, exist_ok=True)
    with _temp_copy(rendered, workdir) as path:
        rc, output = _run([tool, "-t", "-q", "-c", str(path), "-p", f"{prefix}/"], "nginx -t")
        output = output.replace(str(path), rendered.filename)
    if rc != 0:
        raise ValidationFailed(
            f"nginx -t rejected {rendered.filename}: {_first_nginx_error(output)}", output
        )
    return CheckResult(tool="nginx", output=output)


def check_haproxy(
    rendered: Rendered, env: RenderEnv, workdir: Path, *, binary: str | None = None
) -> CheckResult:
    """Run `haproxy -c -f FILE` on the rendered text. Binds nothing, opens no socket.

    Raises MissingDependency when haproxy is absent, ValidationFailed when it rejects the
    config or does not answer. Warnings do not fail the check; they are in the output.
    """
    tool = binary or find_tool("haproxy")
    if tool is None or not Path(tool).exists():
        raise MissingDependency(f"haproxy not found; install it: {HAPROXY_INSTALL}")
    with _temp_copy(rendered, workdir) as path:
        rc, output = _run([tool, "-c", "-f", str(path)], "haproxy -c")
        output = output.replace(str(path), rendered.filename)
    if rc != 0:
        raise ValidationFailed(
            f"haproxy -c rejected {rendered.filename}: {_first_haproxy_error(output)}", output
        )
    return CheckResult(tool="haproxy", output=output)


@contextmanager
def _temp_copy(rendered: Rendered, workdir: Path) -> Iterator[Path]:
    """The rendered text in a fresh 0600 file in `workdir`, removed on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{rendered.filename}.", suffix=".check", dir=workdir)
    path = Path(name)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(rendered.text)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _run(argv: list[str], what: str) -> tuple[int, str]:
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        text = _text(exc.stderr) + _text(exc.stdout)
        raise ValidationFailed(f"{what} did not finish in {TIMEOUT_SECONDS:g}s", text) from None
    except OSError as exc:
        raise MissingDependency(f"cannot run {argv[0]} ({exc.strerror}); reinstall it") from None
    return proc.returncode, (proc.stderr + proc.stdout).strip()


def _text(out: str | bytes | None) -> str:
    return out.decode(errors="replace") if isinstance(out, bytes) else (out or "")


def _first_nginx_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    line = next((ln for ln in lines if _NGINX_ERROR.search(ln)), lines[0] if lines else "")
    line = _NGINX_PREFIX.sub("", line)
    line = _NGINX_PID.sub(r"[\1] ", line)
    return line or "no output (exit status non-zero)"


def _first_haproxy_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    line = next((ln for ln in lines if ln.startswith("[ALERT]")), lines[0] if lines else "")
    return _HAPROXY_ALERT.sub("", line) or "no output (exit status non-zero)"


__all__ = ["TIMEOUT_SECONDS", "check_haproxy", "check_nginx", "find_tool"]

"""What every renderer shares: the host facts it may depend on, its output, the template env."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2

from conduitctl.errors import BadInput
from conduitctl.settings_types import control_character

# Where Debian's libnginx-mod-stream puts the stream module.
NGINX_STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")


@dataclass(frozen=True)
class RenderEnv:
    """Facts about the host a renderer needs; gathered by `hostinfo.render_env()` (an edge).

    Keeping them in a value keeps every renderer a pure function of (settings, env).
    """

    is_root: bool = True
    state_dir: Path = Path("/var/lib/conduitctl")
    log_dir: Path = Path("/var/log/conduitctl")  # as non-root: STATE_DIR/log
    run_dir: Path = Path("/run/conduitctl")  # pid files and sockets; as non-root: STATE_DIR/run
    # nginx on Debian builds the stream module as a loadable .so; None when built in.
    nginx_stream_module: str | None = str(NGINX_STREAM_MODULE)
    nginx_user: str = "www-data"
    haproxy_user: str = "haproxy"
    conduitctl_bin: str = "/usr/local/bin/conduitctl"
    config_path: Path = Path("/etc/conduitctl/conduit.toml")
    nic: str = "eth0"
    nic_mbps: float = 1000.0
    cpus: int = 2


@dataclass(frozen=True)
class Rendered:
    """A rendered file: its text, the file name it is usually installed as, and warnings."""

    text: str
    filename: str
    warnings: tuple[str, ...] = field(default_factory=tuple)


# Written bare in any target format; anything else is quoted (or refused) by the filters below.
_PLAIN = frozenset(string.ascii_letters + string.digits + "._/:@+,=~[]-")


def _no_control(value: object) -> object:
    """Every `{{ }}` of every template: a control character would start a new line there
    (a new directive, unit key or action), so it is refused whatever the format."""
    found = control_character(str(value))
    if found:
        raise BadInput(
            f"{str(value)[:60]!r} holds the control character {found} and cannot be written "
            "to a config file; remove it"
        )
    return value


def _refuse(value: str, what: str, fix: str) -> BadInput:
    return BadInput(f"{value[:60]!r} cannot be written to {what}: {fix}")


def nginx_word(value: object) -> str:
    """One nginx argument: bare when plain, else single-quoted (nginx unescapes \\ and \\').
    `$` is refused: nginx would read a variable there, in quotes or not."""
    text = str(value)
    if text and all(ch in _PLAIN for ch in text):
        return text
    if "$" in text:
        raise _refuse(text, "nginx.conf", "nginx reads '$' as a variable; remove it")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def haproxy_word(value: object) -> str:
    """One HAProxy argument: bare when plain, else single-quoted (no escapes, no `$VAR`)."""
    text = str(value)
    if text and all(ch in _PLAIN for ch in text):
        return text
    if "'" in text:
        raise _refuse(text, "haproxy.cfg", "HAProxy cannot quote a single quote; remove it")
    return f"'{text}'"


def rsyslog_string(value: object) -> str:
    """The inside of an rsyslog "..." string constant: backslash and quote escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"')


def logrotate_path(value: object) -> str:
    """A path in a logrotate file list: bare when plain, else double-quoted. Quotes and glob
    characters are refused: logrotate has no escape for the one and expands the other."""
    text = str(value)
    if text and all(ch in _PLAIN and ch not in "[]" for ch in text):
        return text
    if any(ch in text for ch in '"*?[]'):
        raise _refuse(text, "a logrotate file", "remove quotes and glob characters (*?[])")
    return f'"{text}"'


@cache
def templates() -> jinja2.Environment:
    """Built on first use: commands that render nothing (status) never import jinja2."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("conduitctl", "render/templates"),
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, never an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        finalize=_no_control,
    )
    env.filters.update(
        nginx_word=nginx_word,
        haproxy_word=haproxy_word,
        rsyslog_string=rsyslog_string,
        logrotate_path=logrotate_path,
    )
    return env


def host_port(host: str, port: int) -> str:
    """`HOST:PORT`, with an IPv6 host in brackets (`[::1]:443`)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def conf_duration(seconds: float) -> str:
    """A duration nginx and HAProxy both parse: `10s`, or `1500ms` for anything finer.

    Neither takes fractions (`1.5s`), so it is rounded to whole milliseconds (>= 1ms).
    """
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def render_template(name: str, **context: object) -> str:
    return templates().get_template(name).render(**context)

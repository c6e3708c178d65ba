"""What every renderer shares: the host facts it may depend on, its output, the template env."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2


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
    nginx_stream_module: str | None = "/usr/lib/nginx/modules/ngx_stream_module.so"
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


@cache
def templates() -> jinja2.Environment:
    """Built on first use: commands that render nothing (status) never import jinja2."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("conduitctl", "render/templates"),
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, never an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


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

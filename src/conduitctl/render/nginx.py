"""The nginx L4 front: conduit.toml -> a standalone nginx.conf with a `stream {}` block (pure).

The file is meant to run as `nginx -c FILE -p PREFIX`, never as Debian's /etc/nginx/nginx.conf:
every path in it is absolute and comes from the RenderEnv (pid in run_dir, logs in log_dir).

Health, passively: each upstream server carries `max_fails`/`fail_timeout`, and a refused
connection is retried on another backend (`proxy_next_upstream`). Actively: the supervisor
probes the backends itself and re-renders with the unhealthy or drained ones marked `down`
(`render_config(..., down=...)`); open-source nginx has no active health checks of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from conduitctl.fleet import BackendSpec, desired_backends
from conduitctl.render.base import (
    Rendered,
    RenderEnv,
    conf_duration,
    host_port,
    render_template,
)
from conduitctl.settings import Listener, Proto, Settings

FILENAME = "nginx.conf"
TEMPLATE = "nginx.conf.j2"
PID_FILE = "nginx.pid"
ERROR_LOG = "nginx-error.log"
ACCESS_LOG = "stream-access.log"
LOG_FORMAT_NAME = "conduit_stream"
# One line per session, with the upstream side: which backend, how long the connect took.
LOG_FORMAT = (
    "$remote_addr [$time_local] $protocol $status $bytes_sent $bytes_received "
    '$session_time "$upstream_addr" "$upstream_bytes_sent" "$upstream_bytes_received" '
    '"$upstream_connect_time"'
)
ACCESS_LOG_BUFFER = "buffer=64k flush=5s"
# Shared by the workers: one view of least_conn counts and of failed servers (max_fails).
UPSTREAM_ZONE_SIZE = "256k"  # 64 backends need 48-64k here; nginx -t says when too small
PER_IP_ZONE = "perip"
PER_IP_ZONE_SIZE = "10m"  # ~160k client addresses (64 bytes per state on 64-bit)
_LOG_LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")


@dataclass(frozen=True)
class UpstreamServer:
    name: str  # the backend name, e.g. conduit-3 (a comment in the file)
    address: str  # HOST:PORT, IPv6 bracketed
    down: bool


@dataclass(frozen=True)
class Upstream:
    name: str
    balance: str | None  # the balancing directive, None for nginx's default (round robin)
    servers: tuple[UpstreamServer, ...]


@dataclass(frozen=True)
class StreamServer:
    listener: str  # as written in conduit.toml, e.g. udp:5566
    listen: str  # HOST:PORT, IPv6 bracketed
    udp: bool
    upstream: str
    proxy_timeout: str


def pid_path(env: RenderEnv) -> Path:
    return env.run_dir / PID_FILE


def error_log_path(env: RenderEnv) -> Path:
    return env.log_dir / ERROR_LOG


def access_log_path(env: RenderEnv) -> Path:
    return env.log_dir / ACCESS_LOG


def upstream_name(settings: Settings, proto: Proto) -> str:
    return f"{settings.cluster.name}_{proto.value}"


def conf_seconds(seconds: float) -> str:
    """Whole seconds, rounded up (>= 1s): what `fail_timeout` takes (it rejects `ms`)."""
    return f"{max(1, math.ceil(seconds))}s"


def _tcp_balance(balance: str) -> str | None:
    return {
        "least_conn": "least_conn",
        "round_robin": None,
        "hash": "hash $remote_addr consistent",
    }[balance]


def render(settings: Settings, env: RenderEnv) -> Rendered:
    """The nginx.conf for `settings` on the host `env`, with every backend in service."""
    return render_config(settings, env)


def render_config(
    settings: Settings, env: RenderEnv, *, down: frozenset[str] = frozenset()
) -> Rendered:
    """The nginx.conf for `settings` on `env`; backends named in `down` are rendered `down`.

    `down` holds backend names (`conduit-3`) the supervisor took out of service (drained or
    unhealthy); names that are not in the fleet are ignored. Pure: reads nothing but its
    arguments, so the same inputs always give the same text.
    """
    front = settings.front
    backends = desired_backends(settings)
    listening = [b for b in backends if b.listen_port is not None]
    warnings: list[str] = []
    notes: list[str] = []

    protocols = [p for p in Proto if any(lst.proto is p for lst in front.listeners)]
    upstreams: list[Upstream] = []
    servers: list[StreamServer] = []
    if not front.listeners:
        warnings.append("front.listeners is empty: this nginx listens on nothing")
    elif not listening:
        profile = settings.workload.profile
        listeners = ", ".join(str(lst) for lst in front.listeners)
        warnings.append(
            f"profile {profile!r} listens on no port (Conduit dials out to its broker), so the "
            "front has no backend to pass connections to and nothing will answer on "
            f"{listeners}; no listener is rendered"
        )
        notes.append(
            f"Workload profile {profile!r} listens on no port: no upstream and no listener "
            "(front.allow_without_listeners = true)."
        )
    else:
        for proto in protocols:
            upstreams.append(
                Upstream(
                    name=upstream_name(settings, proto),
                    # A UDP "session" is a run of datagrams from one client: it must stick to
                    # one backend, so UDP always hashes on the client address.
                    balance=(
                        "hash $remote_addr consistent"
                        if proto is Proto.UDP
                        else _tcp_balance(front.balance)
                    ),
                    servers=tuple(_upstream_server(b, down) for b in listening),
                )
            )
        servers = [_stream_server(settings, lst) for lst in front.listeners]
        in_service = [b for b in listening if b.name not in down]
        if not in_service:
            warnings.append(
                f"all {len(listening)} backends are marked down: the front will refuse every "
                "connection"
            )

    worker_connections = front.worker_connections
    if worker_connections > front.nofile:
        warnings.append(
            f"front.worker_connections = {worker_connections} exceeds front.nofile = "
            f"{front.nofile}; rendered worker_connections {front.nofile}"
        )
        worker_connections = front.nofile

    if conf_seconds(front.fail_timeout) != conf_duration(front.fail_timeout):
        warnings.append(
            f"front.fail_timeout = {front.fail_timeout:g}s rendered as "
            f"{conf_seconds(front.fail_timeout)}: nginx takes whole seconds there"
        )

    per_ip = front.per_ip_limit > 0
    # limit_conn messages are only written if error_log is at least as verbose as their level.
    error_level = "warn"
    if per_ip and _LOG_LEVELS.index(front.limit_log_level) < _LOG_LEVELS.index(error_level):
        error_level = front.limit_log_level

    text = render_template(
        TEMPLATE,
        cluster=settings.cluster.name,
        profile=settings.workload.profile,
        notes=notes,
        stream_module=env.nginx_stream_module,
        user=env.nginx_user if env.is_root else None,
        nofile=front.nofile,
        pid=pid_path(env),
        error_log=error_log_path(env),
        error_level=error_level,
        worker_connections=worker_connections,
        access_log=access_log_path(env) if front.access_log else None,
        log_format_name=LOG_FORMAT_NAME,
        log_format=LOG_FORMAT,
        access_log_buffer=ACCESS_LOG_BUFFER,
        per_ip_limit=front.per_ip_limit,
        per_ip_zone=PER_IP_ZONE,
        per_ip_zone_size=PER_IP_ZONE_SIZE,
        limit_log_level=front.limit_log_level,
        upstreams=upstreams,
        upstream_zone_size=UPSTREAM_ZONE_SIZE,
        servers=servers,
        max_fails=front.max_fails,
        fail_timeout=conf_seconds(front.fail_timeout),
        connect_timeout=conf_duration(front.connect_timeout),
        # Try each backend at most once, within two connect timeouts: a refused connect on
        # loopback fails in microseconds, a black-holed one costs one connect timeout.
        next_upstream_tries=max(1, len(listening)),
        next_upstream_timeout=conf_duration(2 * front.connect_timeout),
    )
    return Rendered(text=text, filename=FILENAME, warnings=tuple(warnings))


def _upstream_server(backend: BackendSpec, down: frozenset[str]) -> UpstreamServer:
    assert backend.listen_port is not None
    return UpstreamServer(
        name=backend.name,
        address=host_port(backend.host, backend.listen_port),
        down=backend.name in down,
    )


def _stream_server(settings: Settings, listener: Listener) -> StreamServer:
    front = settings.front
    udp = listener.proto is Proto.UDP
    return StreamServer(
        listener=str(listener),
        listen=host_port(listener.host or front.bind, listener.port),
        udp=udp,
        upstream=upstream_name(settings, listener.proto),
        proxy_timeout=conf_duration(front.udp_timeout if udp else front.proxy_timeout),
    )


__all__ = [
    "FILENAME",
    "access_log_path",
    "conf_duration",
    "conf_seconds",
    "error_log_path",
    "host_port",
    "pid_path",
    "render",
    "render_config",
    "upstream_name",
]

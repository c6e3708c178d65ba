"""The HAProxy L4 front: conduit.toml -> haproxy.cfg (pure).

What HAProxy adds over nginx stream: active health checks of its own (`option tcp-check`,
reading the simulator's greeting), and a runtime API on an admin socket through which the
supervisor drains a server (`set server CLUSTER/NAME state drain|maint`) without a reload.
What it lacks: community HAProxy cannot balance generic UDP, so UDP listeners are skipped
with a warning.

The built-in Prometheus exporter (`prometheus-exporter` service) is served on loopback at
front.stats_port. Debian 12's haproxy 2.6 is built with it (USE_PROMEX=1; `haproxy -vv` lists
"Available services : prometheus-exporter").
"""

from __future__ import annotations

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
from conduitctl.workloads import PROFILES

FILENAME = "haproxy.cfg"
TEMPLATE = "haproxy.cfg.j2"
PID_FILE = "haproxy.pid"
LOG_FILE = "haproxy.log"  # written by the front (front/haproxy.py) from its log socket
STATS_SOCKET = "haproxy.sock"
STATS_HOST = "127.0.0.1"  # the exporter never leaves loopback
METRICS_PATH = "/metrics"
STATS_PATH = "/stats"
STICK_TABLE = "type ip size 100k expire 30s store conn_cur"
FD_RESERVE = 64  # HAProxy's own descriptors: pollers, stats socket, master socket pair, logs
MIN_MAXCONN = 100
# HAProxy's own checks (a connect and, for a profile that greets, the greeting) close the
# hang window in the front itself, at no cost to the supervisor: a station is checked at
# least this often, and one that has not greeted in CHECK_TIMEOUT_S is silent (on loopback
# a station greets in milliseconds). A hung one is out after about 0.8 s on average, 1 s at
# most (the next check, then fall - 1 fast ones), however long health.interval is.
CHECK_INTER_S = 0.4
CHECK_TIMEOUT_S = 0.25
FASTINTER_S = 0.1
_BALANCE = {"least_conn": "leastconn", "round_robin": "roundrobin", "hash": "source"}


@dataclass(frozen=True)
class Server:
    name: str  # the runtime API name: `set server BACKEND/NAME state drain`
    address: str
    maxconn: int | None  # None: default-server's
    disabled: bool


@dataclass(frozen=True)
class Frontend:
    name: str
    listener: str  # as written in conduit.toml
    bind: str


def pid_path(env: RenderEnv) -> Path:
    return env.run_dir / PID_FILE


def stats_socket_path(env: RenderEnv) -> Path:
    """The admin socket of the runtime API (drain, maint, ready)."""
    return env.run_dir / STATS_SOCKET


def backend_name(settings: Settings) -> str:
    """The HAProxy backend holding every server: `set server {backend_name}/conduit-3 ...`."""
    return settings.cluster.name


def max_connections(settings: Settings) -> int:
    """Global maxconn: the sessions that fit in front.nofile descriptors.

    Each session holds two (client and server); HAProxy derives its ulimit-n from maxconn
    and adds one per listener, one per health-checked server and a few of its own, so those
    are kept out of the budget. The result: HAProxy asks for about front.nofile, no more.
    """
    front = settings.front
    reserve = FD_RESERVE + len(front.listeners) + settings.cluster.containers
    return max(MIN_MAXCONN, (front.nofile - reserve) // 2)


def render(settings: Settings, env: RenderEnv) -> Rendered:
    """The haproxy.cfg for `settings` on the host `env`, with every backend in service."""
    return render_config(settings, env)


def render_config(
    settings: Settings, env: RenderEnv, *, down: frozenset[str] = frozenset()
) -> Rendered:
    """The haproxy.cfg for `settings` on `env`; backends named in `down` are `disabled`.

    `down` holds backend names (`conduit-3`) the supervisor took out of service; names not
    in the fleet are ignored. A disabled server starts in maintenance after a reload; the
    runtime API (`set server ... state ready`) brings it back. Pure.
    """
    front = settings.front
    backends = desired_backends(settings)
    listening = [b for b in backends if b.listen_port is not None]
    profile = PROFILES[settings.workload.profile]
    warnings: list[str] = []
    notes: list[str] = []

    tcp = [lst for lst in front.listeners if lst.proto is Proto.TCP]
    udp = [lst for lst in front.listeners if lst.proto is Proto.UDP]
    if udp:
        names = ", ".join(str(lst) for lst in udp)
        warnings.append(f'haproxy cannot balance UDP ({names}); use front.kind = "nginx" for UDP')
        notes.append(
            f"Skipped {names}: community HAProxy cannot balance generic UDP; "
            'use front.kind = "nginx" for UDP.'
        )
    if not front.listeners:
        warnings.append("front.listeners is empty: this haproxy listens on nothing")

    frontends: list[Frontend] = []
    servers: list[Server] = []
    if front.listeners and not listening:
        listeners = ", ".join(str(lst) for lst in front.listeners)
        warnings.append(
            f"profile {profile.name!r} listens on no port (Conduit dials out to its broker), "
            "so the front has no backend to pass connections to and nothing will answer on "
            f"{listeners}; no listener is rendered"
        )
        notes.append(
            f"Workload profile {profile.name!r} listens on no port: no frontend and no server "
            "(front.allow_without_listeners = true)."
        )
    elif listening:
        frontends = [_frontend(settings, lst) for lst in tcp]
        servers = [_server(settings, b, down) for b in listening]
        if tcp and all(s.disabled for s in servers):
            warnings.append(
                f"all {len(servers)} backends are marked down: the front will refuse every "
                "connection"
            )

    greeting = profile.greeting_prefix
    text = render_template(
        TEMPLATE,
        cluster=settings.cluster.name,
        profile=profile.name,
        notes=notes,
        user=env.haproxy_user if env.is_root else None,
        maxconn=max_connections(settings),
        pidfile=pid_path(env),
        stats_socket=stats_socket_path(env),
        access_log=front.access_log,
        connect_timeout=conf_duration(front.connect_timeout),
        proxy_timeout=conf_duration(front.proxy_timeout),
        check_timeout=conf_duration(min(settings.health.timeout, CHECK_TIMEOUT_S)),
        frontends=frontends,
        per_ip_limit=front.per_ip_limit,
        stick_table=STICK_TABLE,
        per_ip_table=f"{settings.cluster.name}_perip",
        backend=backend_name(settings),
        balance=_BALANCE[front.balance],
        hash_consistent=front.balance == "hash",
        # Anchored at the first byte; without the trailing space, which the parser would split on.
        expect_regex=f"^{greeting.strip()}" if greeting else None,
        inter=conf_duration(min(settings.health.interval, CHECK_INTER_S)),
        # After a first failed check the next ones come this fast: a hung server is out
        # after inter + (fall - 1) x fastinter, not fall x inter.
        fastinter=conf_duration(min(FASTINTER_S, settings.health.interval)),
        fall=settings.health.fall,
        rise=settings.health.rise,
        server_maxconn=settings.workload.max_clients,
        servers=servers,
        stats_bind=host_port(STATS_HOST, front.stats_port),
        metrics_path=METRICS_PATH,
        stats_path=STATS_PATH,
    )
    return Rendered(text=text, filename=FILENAME, warnings=tuple(warnings))


def _frontend(settings: Settings, listener: Listener) -> Frontend:
    return Frontend(
        name=f"{settings.cluster.name}_{listener.proto.value}_{listener.port}",
        listener=str(listener),
        bind=host_port(listener.host or settings.front.bind, listener.port),
    )


def _server(settings: Settings, backend: BackendSpec, down: frozenset[str]) -> Server:
    assert backend.listen_port is not None
    maxconn = backend.max_clients
    return Server(
        name=backend.name,
        address=host_port(backend.host, backend.listen_port),
        maxconn=None if maxconn == settings.workload.max_clients else maxconn,
        disabled=backend.name in down,
    )


__all__ = [
    "FILENAME",
    "backend_name",
    "max_connections",
    "pid_path",
    "render",
    "render_config",
    "stats_socket_path",
]

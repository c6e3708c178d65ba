"""sysctl.d drop-in: the production review's network tuning for a small proxy VPS (pure).

Every key is preceded by a one-line `# why` comment. Limits that scale with the fleet (open
files, accept queues, conntrack) are sized from the planned clients and the nofile limits in
conduit.toml; the rest are fixed values sane for a 2-core / 4 GB host.
"""

from __future__ import annotations

from dataclasses import dataclass

from conduitctl import __version__
from conduitctl.fleet import desired_backends
from conduitctl.render.base import Rendered, RenderEnv, render_template
from conduitctl.render.systemd import DAEMON_NOFILE
from conduitctl.settings import Settings
from conduitctl.workloads import PROFILES

FILENAME = "90-conduitctl.conf"
SYSTEM_FILES = 65_536  # open files for everything that is not the fleet (sshd, journald, daemon)
KERNEL_NR_OPEN = 1_048_576  # the kernel's default fs.nr_open
LOCAL_PORT_LOW = 10_240
LOCAL_PORT_HIGH = 65_535
SOCKET_BUFFER_MAX = 8 * 1024**2  # quic-go (WebRTC/QUIC stacks) asks for ~7 MiB UDP buffers


@dataclass(frozen=True)
class SysctlEntry:
    """One `key = value` line; `optional` lines get the "-" prefix: a failure to set is skipped."""

    key: str
    value: str
    why: str
    optional: bool = False


@dataclass(frozen=True)
class Plan:
    """The numbers the fleet-sized keys derive from."""

    clients: int  # sum of max clients over backends
    files: int  # open files the fleet may hold: backends' nofile + front's + system


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 1).bit_length()


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def plan(settings: Settings) -> Plan:
    clients = sum(b.max_clients for b in desired_backends(settings))
    files = settings.cluster.containers * settings.container.nofile + SYSTEM_FILES
    if settings.front.enabled:
        files += settings.front.nofile
    return Plan(clients=clients, files=files)


def reserved_ports(settings: Settings) -> str:
    """Ports the fleet listens on inside the ephemeral range, as `a-b,c` for the kernel."""
    n = settings.cluster.containers
    ranges = [(settings.workload.metrics_port_base, n)]
    if PROFILES[settings.workload.profile].listens:
        ranges.append((settings.workload.listen_port_base, n))
    if settings.front.kind == "haproxy":
        ranges.append((settings.front.stats_port, 1))
    ranges += [(listener.port, 1) for listener in settings.front.listeners]
    ports = sorted(
        {p for lo, count in ranges for p in range(lo, lo + count) if p >= LOCAL_PORT_LOW}
    )
    spans: list[list[int]] = []
    for p in ports:
        if spans and spans[-1][1] == p - 1:
            spans[-1][1] = p
        else:
            spans.append([p, p])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)


def entries(settings: Settings) -> list[SysctlEntry]:
    """The keys in file order. Pure: the same settings always give the same lines."""
    p = plan(settings)
    file_max = max(KERNEL_NR_OPEN, _round_up(p.files + p.files // 2, 65_536))
    nr_open = max(KERNEL_NR_OPEN, DAEMON_NOFILE, settings.container.nofile, settings.front.nofile)
    backlog = min(max(_next_pow2(p.clients), 4096), 65_535)
    conntrack = max(131_072, _next_pow2(p.clients * 4))
    e = SysctlEntry
    out = [
        e(
            "net.core.somaxconn",
            str(backlog),
            f"accept queue ceiling: all {p.clients} planned clients may reconnect at once "
            "after a restart",
        ),
        e(
            "net.ipv4.tcp_max_syn_backlog",
            str(backlog),
            "half-open connections queued per listener during that same reconnect burst",
        ),
        e(
            "net.core.netdev_max_backlog",
            "8192",
            "per-CPU queue of received packets: absorb line-rate bursts on 2 cores without drops",
        ),
        e(
            "fs.file-max",
            str(file_max),
            f"system-wide open files: the fleet may hold {p.files} (every backend and the "
            "front at their nofile limit, plus the system), with 50 % headroom",
        ),
        e(
            "fs.nr_open",
            str(nr_open),
            f"per-process ceiling for nofile limits: >= LimitNOFILE={DAEMON_NOFILE} of the "
            "conduitctl unit and every nofile in conduit.toml",
        ),
        e(
            "net.ipv4.ip_local_port_range",
            f"{LOCAL_PORT_LOW} {LOCAL_PORT_HIGH}",
            "ephemeral ports for outgoing connections: the front dials a backend for every client",
        ),
    ]
    reserved = reserved_ports(settings)
    if reserved:
        out.append(
            e(
                "net.ipv4.ip_local_reserved_ports",
                reserved,
                "never hand out the fleet's own listening ports as ephemeral ones, or a "
                "restarting backend could not bind its port",
            )
        )
    out += [
        e(
            "net.ipv4.tcp_fin_timeout",
            "15",
            "free orphaned FIN-WAIT-2 sockets after 15 s instead of 60 s: clients vanish often",
        ),
        e(
            "net.ipv4.tcp_tw_reuse",
            "1",
            "reuse TIME-WAIT ports for new outgoing connections (safe with TCP timestamps)",
        ),
        e(
            "net.core.rmem_max",
            str(SOCKET_BUFFER_MAX),
            "largest receive buffer a socket may ask for: WebRTC/QUIC stacks want ~7 MiB for UDP",
        ),
        e(
            "net.core.wmem_max",
            str(SOCKET_BUFFER_MAX),
            "largest send buffer a socket may ask for, the same 8 MiB",
        ),
        e(
            "net.ipv4.tcp_rmem",
            f"4096 87380 {SOCKET_BUFFER_MAX}",
            "TCP receive autotuning: small start for thousands of idle clients, 8 MiB for fast "
            "ones; tcp_mem still caps the total",
        ),
        e(
            "net.ipv4.tcp_wmem",
            f"4096 16384 {SOCKET_BUFFER_MAX}",
            "TCP send autotuning, the same shape: memory follows the clients that move data",
        ),
        e(
            "net.ipv4.tcp_keepalive_time",
            "300",
            "probe an idle keepalive connection after 5 min, not 2 h: dead clients hold slots",
        ),
        e(
            "net.ipv4.tcp_keepalive_intvl",
            "30",
            "then probe every 30 s",
        ),
        e(
            "net.ipv4.tcp_keepalive_probes",
            "5",
            "and drop the connection after 5 unanswered probes (7.5 min in all)",
        ),
        e(
            "net.netfilter.nf_conntrack_max",
            str(conntrack),
            f"tracked flows: ~4 per client (client-front, front-backend, UDP, TIME-WAIT) for "
            f"{p.clients} clients, ~300 B each; only set if nf_conntrack is loaded (docker "
            "loads it)",
            optional=True,
        ),
        e(
            "net.ipv4.tcp_slow_start_after_idle",
            "0",
            "keep the congestion window of a long-lived connection across idle gaps",
        ),
        e(
            "vm.swappiness",
            "10",
            "keep the fleet in RAM: on a 4 GB host swap only under real memory pressure",
        ),
        e(
            "net.core.default_qdisc",
            "fq",
            "fair queueing with pacing per flow, the qdisc BBR was designed with",
        ),
        e(
            "net.ipv4.tcp_congestion_control",
            "bbr",
            "BBR keeps throughput up and queues short on lossy client paths; needs the tcp_bbr "
            "module (modprobe tcp_bbr; list it in /etc/modules-load.d)",
            optional=True,
        ),
    ]
    return out


def render(settings: Settings, env: RenderEnv) -> Rendered:
    p = plan(settings)
    text = render_template(
        "sysctl.conf.j2",
        version=__version__,
        cpus=env.cpus,
        clients=p.clients,
        planned_files=p.files,
        entries=entries(settings),
    )
    return Rendered(text=text, filename=FILENAME)

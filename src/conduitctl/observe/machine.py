"""The machine facts preflight judges (an edge): reads the host, changes nothing.

Memory, disk, the docker daemon (through `runtime/docker_facts.py`), the front's binary,
which ports are taken and by whom, kernel limits, cgroups, clock sync. The result is a
`PreflightFacts` value; the rules in `preflight_rules.py` never read the machine themselves.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import psutil

from conduitctl.hostinfo import (
    DEFAULT_NIC_MBPS,
    NGINX_STREAM_MODULE,
    host_facts,
    read_int,
    render_env,
)
from conduitctl.observe.cgroups import CGROUP_ROOT, cgroup_version
from conduitctl.preflight_facts import (
    ClockFact,
    FrontToolFact,
    Holder,
    PortFact,
    PreflightFacts,
)
from conduitctl.preflight_rules import MIB, nofile_grant
from conduitctl.render.check_front import find_tool
from conduitctl.runtime import docker_facts
from conduitctl.settings import Settings

CAP_SYS_RESOURCE = 24
TOOL_TIMEOUT = 5.0


def _run(argv: list[str], timeout: float = TOOL_TIMEOUT) -> tuple[int, str, str] | None:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.returncode, r.stdout, r.stderr


def _disk(state_dir: Path) -> tuple[Path, int | None]:
    path = state_dir.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return state_dir.absolute(), shutil.disk_usage(path).free
    except OSError:
        return state_dir.absolute(), None


def _front_tool_fact(kind: Literal["nginx", "haproxy"]) -> FrontToolFact:
    path = find_tool(kind)
    if path is None:
        return FrontToolFact(kind=kind, path=None)
    result = _run([path, "-V"] if kind == "nginx" else [path, "-v"])
    output = None
    if result is not None:
        output = result[2] if kind == "nginx" else result[1]
    return FrontToolFact(
        kind=kind,
        path=path,
        version_output=output,
        stream_so_exists=NGINX_STREAM_MODULE.exists(),
    )


def probe_bind(proto: Literal["tcp", "udp"], host: str, port: int) -> str | None:
    """Try to bind (as the front would: SO_REUSEADDR for TCP); None when free, else the error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as sock:
        if proto == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
            if proto == "tcp":
                sock.listen(1)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def port_holders(proto: Literal["tcp", "udp"], port: int) -> tuple[Holder, ...]:
    """Processes with a socket bound to this local port (listening, for TCP)."""
    try:
        conns = psutil.net_connections(kind=proto)
    except (psutil.Error, OSError):
        return ()
    holders = []
    for c in conns:
        if not c.laddr or c.laddr.port != port:
            continue
        if proto == "tcp" and c.status != psutil.CONN_LISTEN:
            continue
        name = None
        if c.pid is not None:
            with contextlib.suppress(psutil.Error):
                name = psutil.Process(c.pid).name()
        holders.append(Holder(pid=c.pid, name=name))
    return tuple(dict.fromkeys(holders))


def _port_fact(label: str, proto: Literal["tcp", "udp"], host: str, port: int) -> PortFact:
    error = probe_bind(proto, host, port)
    holders = port_holders(proto, port) if error else ()
    return PortFact(label=label, proto=proto, host=host, port=port, error=error, holders=holders)


def _listen_facts(settings: Settings) -> tuple[PortFact, ...]:
    out = []
    for listener in settings.front.listeners:
        host = listener.host or settings.front.bind
        proto: Literal["tcp", "udp"] = "tcp" if listener.proto.value == "tcp" else "udp"
        out.append(_port_fact(str(listener), proto, host, listener.port))
    return tuple(out)


def _backend_facts(settings: Settings) -> tuple[PortFact, ...]:
    host = settings.workload.bind_host
    n = settings.cluster.containers
    out = []
    base = settings.workload.metrics_port_base
    for port in range(base, base + n):
        out.append(_port_fact(f"metrics tcp:{host}:{port}", "tcp", host, port))
    if settings.workload.listens:
        base = settings.workload.listen_port_base
        for port in range(base, base + n):
            for proto in ("tcp", "udp"):
                out.append(_port_fact(f"listen {proto}:{host}:{port}", proto, host, port))
    return tuple(out)


def _with_children(pid: int, label: str, into: dict[int, str]) -> None:
    try:
        proc = psutil.Process(pid)
        into[pid] = label
        for child in proc.children(recursive=True):
            into[child.pid] = label
    except psutil.Error:
        return


def own_processes(settings: Settings, config_path: Path) -> dict[int, str]:
    """pid -> what it is, for this cluster's front, process backends and docker backends."""
    from conduitctl.front.base import read_pid
    from conduitctl.render import haproxy as haproxy_render
    from conduitctl.render import nginx as nginx_render

    own: dict[int, str] = {}
    if settings.front.enabled:
        env = render_env(settings, config_path)
        pid_file = (
            nginx_render.pid_path(env)
            if settings.front.kind == "nginx"
            else haproxy_render.pid_path(env)
        )
        pid = read_pid(pid_file)
        if pid is not None:
            _with_children(pid, f"conduitctl's {settings.front.kind}", own)
    state = str(settings.state_dir.absolute())
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "conduitctl.runtime.shim" in cmdline and any(state in arg for arg in cmdline):
            _with_children(proc.pid, f"{settings.cluster.name} backend", own)
    if settings.cluster.runtime == "docker":
        own.update(_docker_backend_pids(settings))
    return own


def _docker_backend_pids(settings: Settings) -> dict[int, str]:
    own: dict[int, str] = {}
    name = settings.cluster.name
    for pid, container in docker_facts.cluster_container_pids(name).items():
        _with_children(pid, f"{name} backend {container}", own)
    return own


def _ephemeral() -> tuple[int, int] | None:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(lo), int(hi)
    except (OSError, ValueError):
        return None


def _can_raise_nofile() -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _memory_cgroup(root: Path = CGROUP_ROOT) -> tuple[int, Path, bool]:
    version = cgroup_version(root)
    base = root / "memory" if version == 1 else root
    target = base / "conduitctl"
    path = target if target.exists() else base
    writable = os.access(path, os.W_OK)
    if writable and version == 2:
        control = root / "cgroup.subtree_control"
        writable = os.access(control, os.W_OK)
    return version, path, writable


def clock_fact(
    run: Callable[[list[str]], tuple[int, str, str] | None] = _run,
    which: Callable[[str], str | None] = shutil.which,
    timesync: Path = Path("/run/systemd/timesync/synchronized"),
) -> ClockFact:
    """timedatectl, else systemd-timesyncd's flag file, else chronyc; None when none answers."""
    tried = []
    if which("timedatectl"):
        result = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
        if result is not None and result[0] == 0 and result[1].strip() in ("yes", "no"):
            answer = result[1].strip()
            return ClockFact("timedatectl", answer == "yes", f"NTPSynchronized={answer}")
        tried.append("timedatectl does not answer")
    if timesync.exists():
        return ClockFact("systemd-timesyncd", True, str(timesync))
    if timesync.parent.exists():
        return ClockFact("systemd-timesyncd", False, f"no {timesync}")
    if which("chronyc"):
        result = run(["chronyc", "tracking"])
        if result is not None and result[0] == 0:
            for line in result[1].splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "Leap status":
                    return ClockFact("chronyc", value.strip() == "Normal", value.strip())
        tried.append("chronyc does not answer")
    else:
        tried.append("no chronyc")
    return ClockFact(None, None, "; ".join(tried))


def nofile_limit(runtime: str) -> int:
    """The most open files a backend of `runtime` can be granted here (preflight's rule),
    read without the rest of the facts: what `init` writes as container.nofile at most."""
    dockerd_hard = docker_facts.dockerd_nofile() if runtime == "docker" else None
    grant, _granter, _hint = nofile_grant(
        runtime,
        dockerd_hard=dockerd_hard,
        can_raise=_can_raise_nofile(),
        nr_open=read_int("/proc/sys/fs/nr_open"),
        own_hard=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
    )
    return grant


def gather_facts(settings: Settings, config_path: Path) -> PreflightFacts:
    """Read everything the rules need from this host. Changes nothing."""
    host = host_facts(settings.host.nic)
    memory = psutil.virtual_memory()
    disk_path, disk_free = _disk(settings.state_dir)
    version, cgroup_path, writable = _memory_cgroup()
    kind = settings.front.kind
    docker = None
    if settings.cluster.runtime == "docker":
        docker = docker_facts.daemon_fact(settings.workload.effective_image)
    reserved = ""
    with contextlib.suppress(OSError):
        reserved = Path("/proc/sys/net/ipv4/ip_local_reserved_ports").read_text().strip()
    return PreflightFacts(
        cpus=host.cpus,
        memory_total_mb=memory.total / MIB,
        memory_available_mb=memory.available / MIB,
        nic_mbps=settings.host.nic_mbps or host.nic_mbps or DEFAULT_NIC_MBPS,
        disk_path=disk_path,
        disk_free_bytes=disk_free,
        file_max=host.file_max,
        nr_open=read_int("/proc/sys/fs/nr_open"),
        somaxconn=read_int("/proc/sys/net/core/somaxconn"),
        nofile_hard=host.nofile_hard,
        can_raise_nofile=_can_raise_nofile(),
        ephemeral=_ephemeral(),
        reserved_ports=reserved,
        docker=docker,
        front_tool=_front_tool_fact(kind) if kind != "none" else None,
        listen_ports=_listen_facts(settings),
        backend_ports=_backend_facts(settings),
        own_pids=own_processes(settings, config_path),
        cgroup_version=version,
        memory_cgroup=cgroup_path,
        memory_cgroup_writable=writable,
        clock=clock_fact(),
    )

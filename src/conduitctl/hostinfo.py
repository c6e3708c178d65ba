"""Facts read from this host (an edge): cores, memory, NIC, limits, tool locations.

Everything here reads the machine; the planner and renderers take the results as values.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

from conduitctl.render.base import NGINX_STREAM_MODULE, RenderEnv
from conduitctl.settings import Settings
from conduitctl.statedir import StateDir

DEFAULT_NIC_MBPS = 1000.0


@dataclass(frozen=True)
class HostFacts:
    cpus: int
    memory_gb: float
    nic: str | None
    nic_mbps: float | None  # None: the kernel does not know (virtio, veth)
    file_max: int | None
    nofile_hard: int
    is_root: bool


def default_route_interface(route_table: str = "/proc/net/route") -> str | None:
    """The interface of the IPv4 default route, from the kernel's routing table."""
    try:
        lines = Path(route_table).read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            return fields[0]
    return None


def nic_speed_mbps(nic: str) -> float | None:
    try:
        speed = int(Path(f"/sys/class/net/{nic}/speed").read_text().strip())
    except (OSError, ValueError):
        return None
    return float(speed) if speed > 0 else None


def read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def host_facts(nic: str | None = None) -> HostFacts:
    nic = nic or default_route_interface()
    return HostFacts(
        cpus=os.cpu_count() or 1,
        memory_gb=round(psutil.virtual_memory().total / 1024**3, 2),
        nic=nic,
        nic_mbps=nic_speed_mbps(nic) if nic else None,
        file_max=read_int("/proc/sys/fs/file-max"),
        nofile_hard=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        is_root=os.geteuid() == 0,
    )


def nginx_stream_module() -> str | None:
    """The stream module's .so when nginx loads it dynamically (Debian), else None."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    try:
        out = subprocess.run(
            [nginx, "-V"], capture_output=True, text=True, timeout=10, check=False
        ).stderr
    except OSError:
        return str(NGINX_STREAM_MODULE) if NGINX_STREAM_MODULE.exists() else None
    if "--with-stream=dynamic" in out or (
        "--with-stream" not in out and NGINX_STREAM_MODULE.exists()
    ):
        return str(NGINX_STREAM_MODULE)
    return None


def conduitctl_bin() -> str:
    return shutil.which("conduitctl") or str(Path(sys.executable).with_name("conduitctl"))


def render_env(settings: Settings, config_path: Path) -> RenderEnv:
    facts = host_facts(settings.host.nic)
    state = settings.state_dir.absolute()
    # The system paths only for the system install; a cluster with its own state dir keeps
    # its pid files, sockets and logs there, so two clusters never share a pid file.
    system = facts.is_root and settings.cluster.state_dir is None
    return RenderEnv(
        is_root=facts.is_root,
        state_dir=state,
        log_dir=Path("/var/log/conduitctl") if system else StateDir(state).log_dir(),
        run_dir=Path("/run/conduitctl") if system else StateDir(state).run_dir(),
        nginx_stream_module=nginx_stream_module(),
        conduitctl_bin=conduitctl_bin(),
        config_path=config_path.absolute(),
        nic=facts.nic or "eth0",
        nic_mbps=settings.host.nic_mbps or facts.nic_mbps or DEFAULT_NIC_MBPS,
        cpus=facts.cpus,
    )

"""What preflight knows about the host: plain values the rules judge (core, no I/O).

`observe/machine.py` (an edge) reads them from the machine; `preflight_rules.py` turns them
into checks; unit tests build them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from conduitctl.render.base import NGINX_STREAM_MODULE


@dataclass(frozen=True)
class Holder:
    """A process holding a port (pid None: the kernel would not say, e.g. not root)."""

    pid: int | None
    name: str | None


@dataclass(frozen=True)
class PortFact:
    label: str  # e.g. "tcp:127.0.0.1:443" or "backend listen tcp:127.0.0.1:28001"
    proto: Literal["tcp", "udp"]
    host: str
    port: int
    error: str | None = None  # None: the bind succeeded, the port is free
    holders: tuple[Holder, ...] = ()


@dataclass(frozen=True)
class DockerFact:
    reachable: bool
    version: str | None = None
    error: str | None = None
    image: str | None = None
    image_present: bool | None = None  # None: not asked (no daemon, no image)
    nofile_hard: int | None = None  # dockerd's own hard RLIMIT_NOFILE, when readable


@dataclass(frozen=True)
class FrontToolFact:
    kind: Literal["nginx", "haproxy"]
    path: str | None  # None: not installed
    version_output: str | None = None  # `nginx -V` (stderr) / `haproxy -v`
    stream_so: str = str(NGINX_STREAM_MODULE)
    stream_so_exists: bool = False


@dataclass(frozen=True)
class ClockFact:
    source: str | None  # timedatectl | systemd-timesyncd | chronyc | None: no tool answered
    synced: bool | None  # None: cannot tell
    detail: str = ""


@dataclass(frozen=True)
class PreflightFacts:
    cpus: int
    memory_total_mb: float
    memory_available_mb: float
    nic_mbps: float
    disk_path: Path
    disk_free_bytes: int | None
    file_max: int | None
    nr_open: int | None
    somaxconn: int | None
    nofile_hard: int  # this process's hard RLIMIT_NOFILE
    can_raise_nofile: bool  # CAP_SYS_RESOURCE: may raise a hard limit up to fs.nr_open
    ephemeral: tuple[int, int] | None
    reserved_ports: str = ""
    docker: DockerFact | None = None  # None: cluster.runtime is not docker
    front_tool: FrontToolFact | None = None  # None: front.kind = none
    listen_ports: tuple[PortFact, ...] = ()
    backend_ports: tuple[PortFact, ...] = ()
    own_pids: dict[int, str] = field(default_factory=dict)  # pid -> "conduitctl's nginx"
    cgroup_version: int = 2
    memory_cgroup: Path | None = None
    memory_cgroup_writable: bool | None = None
    clock: ClockFact = ClockFact(None, None)

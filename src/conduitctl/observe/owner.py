"""Who holds a listening port: the kernel's listening sockets (by inode) against the open
descriptors of the process we started. Answering on a station's port proves nothing: a
process started by hand, or an outgoing connection whose source port landed there, answers
as well, and clients reach it through the front."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from conduitctl.fleet import BackendSpec
from conduitctl.observe.host import PROC, ListenSocket, listen_sockets
from conduitctl.settings import Settings


@dataclass(frozen=True)
class Stolen:
    """A port of ours that another process listens on."""

    port: int
    holder_pid: int | None  # None: the holder's descriptors could not be read
    holder_name: str

    def __str__(self) -> str:
        who = "another process"
        if self.holder_pid:
            who = f"pid {self.holder_pid} ({self.holder_name})"
        return f"port {self.port} is held by {who}, not by the station's process"


def _wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def listeners_on(sockets: Iterable[ListenSocket], host: str, port: int) -> set[int]:
    """Inodes of the TCP listeners that take connections for host:port (that address or a
    wildcard one)."""
    return {
        s.inode
        for s in sockets
        if s.local_port == port and s.inode and (s.local_host == host or _wildcard(s.local_host))
    }


def _socket_inode(link: str) -> int | None:
    if link.startswith("socket:[") and link.endswith("]"):
        return int(link[8:-1])
    return None


def held_by(pid: int, inodes: set[int], proc: Path = PROC) -> set[int] | None:
    """Those of `inodes` that `pid` has open; None when its descriptors cannot be read (not
    ours to read: nothing can be said). Listening sockets are opened first, so the lowest
    descriptors are read first and the walk stops once every inode is found: the cost does
    not grow with the station's client connections."""
    found: set[int] = set()
    directory = proc / str(pid) / "fd"
    try:
        fds = sorted(os.listdir(directory), key=lambda n: int(n) if n.isdigit() else 0)
    except PermissionError:
        return None
    except OSError:
        return found  # gone
    for fd in fds:
        try:
            inode = _socket_inode(os.readlink(directory / fd))
        except OSError:
            continue
        if inode in inodes:
            found.add(inode)
            if found == inodes:
                break
    return found


def _family(pid: int) -> list[int]:
    """`pid` and its descendants (a backend may fork its listener off)."""
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


def _not_held(family: Sequence[int], inodes: set[int]) -> set[int] | None:
    """Those of `inodes` no process of `family` holds; None when one's descriptors cannot
    be read (then nothing can be said: never accuse our own)."""
    foreign = set(inodes)
    for member in family:
        if not foreign:
            break
        held = held_by(member, foreign)
        if held is None:
            return None
        foreign -= held
    return foreign


def holder(inodes: set[int], proc: Path = PROC) -> tuple[int, str] | None:
    """The process that has one of `inodes` open, by a walk over every process: costly, so
    only to name a thief already found."""
    for pid in psutil.pids():
        if held_by(pid, inodes, proc):
            try:
                return pid, psutil.Process(pid).name()
            except psutil.Error:
                return pid, "?"
    return None


def stolen_ports(
    host: str,
    ports: Sequence[int],
    pid: int | None,
    sockets: Sequence[ListenSocket] | None = None,
) -> list[Stolen]:
    """The ports among `ports` on which some listener is not held by `pid` (or its
    children); `pid` None: the station runs no process, so any listener is another's. A port
    nobody listens on is not stolen (the probes find it closed)."""
    sockets = listen_sockets() if sockets is None else sockets
    out: list[Stolen] = []
    wanted = {port: listeners_on(sockets, host, port) for port in ports}
    every = set().union(*wanted.values()) if wanted else set()
    # The station itself nearly always holds its listeners: its children are looked for
    # (a scan of every process) only when it does not.
    held = held_by(pid, every) if pid is not None and every else set()
    family: list[int] | None = None
    for port, inodes in wanted.items():
        if not inodes:
            continue
        if held is not None and inodes <= held:
            continue
        if family is None:
            family = _family(pid) if pid is not None else []
        foreign = _not_held(family, inodes)
        if foreign:
            found = holder(foreign)
            out.append(Stolen(port, found[0] if found else None, found[1] if found else "unknown"))
    return out


# (settings, [(backend, its process id or None)]) -> backend name -> the finding, in words
PortCheck = Callable[[Settings, Sequence[tuple[BackendSpec, int | None]]], dict[str, str]]


def tcp_ports(backend: BackendSpec) -> list[int]:
    ports = [backend.metrics_port]
    if backend.listen_port is not None:
        ports.append(backend.listen_port)
    return ports


def owner_checked(settings: Settings) -> bool:
    """In docker's bridge mode the host port is docker-proxy's (or a NAT rule's), never the
    container's; docker itself refuses to publish a port another process holds."""
    return not (settings.cluster.runtime == "docker" and settings.container.network == "bridge")


def find_stolen(
    settings: Settings, targets: Sequence[tuple[BackendSpec, int | None]]
) -> dict[str, str]:
    """Backend name -> why another process holds one of its ports, for those where one does.
    One listing of the kernel's listeners for the whole fleet."""
    if not targets or not owner_checked(settings):
        return {}
    sockets = listen_sockets()
    found: dict[str, str] = {}
    for backend, pid in targets:
        stolen = stolen_ports(backend.host, tcp_ports(backend), pid, sockets)
        if stolen:
            found[backend.name] = "; ".join(str(s) for s in stolen)
    return found

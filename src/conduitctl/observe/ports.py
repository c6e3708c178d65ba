"""Ports a backend is about to bind, already taken by another process (read before a change)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable

from conduitctl.fleet import BackendSpec

RECHECK_S = 0.3  # a port freed a moment ago (a backend just stopped) is given two more looks
LOOKS = 3


def taken(host: str, port: int, kind: socket.SocketKind) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "taken"
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _needs(backend: BackendSpec) -> list[tuple[int, socket.SocketKind]]:
    needs = [(backend.metrics_port, socket.SOCK_STREAM)]
    if backend.listen_port is not None:
        needs += [
            (backend.listen_port, socket.SOCK_STREAM),
            (backend.listen_port, socket.SOCK_DGRAM),
        ]
    return needs


def ports_in_use(
    backends: Iterable[BackendSpec], freed: frozenset[int] = frozenset()
) -> dict[str, str]:
    """Backend name -> the first of its ports another process holds ("tcp 127.0.0.1:9100").
    `freed`: ports the change itself frees before it binds them (not looked at)."""
    pending = list(backends)
    busy: dict[str, str] = {}
    for look in range(LOOKS):
        busy = {}
        for backend in pending:
            for port, kind in _needs(backend):
                if port not in freed and taken(backend.host, port, kind):
                    proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
                    busy[backend.name] = f"{proto} {backend.host}:{port}"
                    break
        if not busy or look == LOOKS - 1:
            break
        pending = [b for b in pending if b.name in busy]
        time.sleep(RECHECK_S)
    return busy

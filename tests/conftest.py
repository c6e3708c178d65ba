"""Shared test fixtures. Keep this file to small, widely useful helpers."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest


def find_free_port(host: str = "127.0.0.1") -> int:
    """A loopback port that is free for both TCP and UDP right now.

    Another process may still take it before the caller binds; good enough for tests.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free TCP+UDP port found on loopback")


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Call it to get a loopback port free for TCP and UDP."""
    return find_free_port

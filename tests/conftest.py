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


def find_free_block(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive loopback ports free for TCP and UDP right now.

    Picked below the kernel's ephemeral range (32768+) so outgoing connections cannot take
    them between this check and the bind.
    """
    import random

    for _ in range(200):
        base = random.randrange(20000, 32000 - count)
        if all(_free(host, port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no block of {count} free ports found on loopback")


def _free(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


@pytest.fixture
def free_block() -> Callable[[int], int]:
    """Call it with a count to get the first of that many consecutive free loopback ports."""
    return find_free_block


@pytest.fixture(scope="session")
def sim_image() -> str:
    """conduit-sim:local, built locally once per session (no registry is reachable)."""
    docker = pytest.importorskip("docker")
    try:
        docker.from_env(timeout=30).ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no docker daemon answers ({exc}); `make test` starts one")
    from conduitctl.sim.image import build_image

    return build_image("conduit-sim:local")

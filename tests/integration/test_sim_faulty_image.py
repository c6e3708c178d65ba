"""An image that OOMs only under load: conduit-sim with CONDUIT_SIM_SESSION_MB baked in.

Run like conduitctl runs a backend (host network, hardened, memory = memswap), the same
command line as a healthy release: 2 clients fit in 96 MB, ~30 clients get it OOM-killed.
"""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sim_images import build_faulty_image, faulty_dockerfile, remove_faulty_image

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HOST = "127.0.0.1"
DATA = "/home/conduit/data"
TAG = "conduit-sim:session-mb"
SESSION_MB = 8
MEMORY = "96m"
MIB = 1024 * 1024


def test_faulty_dockerfile_quotes_values_and_rejects_bad_names() -> None:
    text = faulty_dockerfile({"B": 'say "hi"', "A": "8"}, base="img:tag")
    assert text == 'FROM img:tag\nENV A="8"\nENV B="say \\"hi\\""\n'
    with pytest.raises(ValueError, match="not an environment variable name"):
        faulty_dockerfile({"A B": "1"})


@pytest.fixture
def docker_client(sim_image: str) -> Iterator[Any]:
    import docker

    client = docker.from_env(timeout=60)
    yield client
    client.close()


def _client_session(port: int, timeout: float = 3.0) -> socket.socket:
    """A connected client that has read the greeting (so its session memory is held)."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.settimeout(timeout)
        line = b""
        while not line.endswith(b"\n"):
            chunk = sock.recv(256)
            if not chunk:
                raise ConnectionResetError(f"EOF before the greeting (got {line!r})")
            line += chunk
        assert line.startswith(b"CONDUIT-SIM "), line
    except BaseException:
        sock.close()
        raise
    return sock


def _first_session(port: int, timeout: float = 15.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _client_session(port)
        except (ConnectionRefusedError, ConnectionResetError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=3) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def _oom_event_seen(client: Any, container_id: str, since: float) -> bool:
    events = client.events(
        since=int(since) - 1,
        until=int(time.time()) + 1,
        filters={"container": container_id, "event": "oom"},
        decode=True,
    )
    try:
        return any(True for _ in events)
    finally:
        events.close()


@pytest.mark.timeout(120)
def test_session_memory_image_oom_killed_under_load_only(
    docker_client: Any, free_port: Callable[[], int]
) -> None:
    port, metrics_port = free_port(), free_port()
    sockets: list[socket.socket] = []
    container: Any = None
    started = time.time()
    try:
        build_faulty_image(TAG, {"CONDUIT_SIM_SESSION_MB": str(SESSION_MB)})
        # The fault is in the image only: this is the command line of a healthy release.
        container = docker_client.containers.run(
            TAG,
            [
                "start",
                "--listen",
                f"{HOST}:{port}",
                "--metrics-addr",
                f"{HOST}:{metrics_port}",
                "--max-common-clients",
                "100",
                "--data-dir",
                DATA,
            ],
            name=f"conduit-sim-oom-test-{uuid.uuid4().hex[:8]}",
            detach=True,
            network_mode="host",
            user="1000:1000",
            read_only=True,
            tmpfs={
                "/tmp": "rw,noexec,nosuid,size=16m",
                DATA: "rw,noexec,nosuid,size=1m,uid=1000,gid=1000,mode=0700",
            },
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            mem_limit=MEMORY,
            memswap_limit=MEMORY,  # no swap: the memory has to fit or the process dies
        )

        # Light load: 2 clients hold 16 MB and the backend stays up.
        sockets.append(_first_session(port))
        sockets.append(_client_session(port))
        assert _metric(metrics_port, "conduit_sim_session_bytes") == 2 * SESSION_MB * MIB
        time.sleep(1.0)
        container.reload()
        assert container.status == "running", container.logs()[-2000:]
        assert container.attrs["State"]["OOMKilled"] is False
        assert b"fault injection on: --session-mb 8" in container.logs()

        # Load: ~30 clients would need 240 MB; the kernel kills the backend on the way.
        for _ in range(28):
            try:
                sockets.append(_client_session(port))
            except OSError:
                break  # killed: refused, reset or no greeting
        status = container.wait(timeout=20)
        container.reload()
        state = container.attrs["State"]
        assert state["OOMKilled"] or _oom_event_seen(docker_client, container.id, started), (
            f"exit {status['StatusCode']} after {len(sockets)} clients, state {state}"
        )
        assert status["StatusCode"] == 137  # SIGKILL
        assert 2 < len(sockets) < 30
    finally:
        for sock in sockets:
            sock.close()
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True)
        remove_faulty_image(TAG)

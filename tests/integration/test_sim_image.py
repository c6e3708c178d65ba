"""The locally built conduit-sim image, run hardened like conduitctl runs backends."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HOST = "127.0.0.1"
DATA = "/home/conduit/data"


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no docker daemon answers: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def image_id(docker_client: Any, sim_image: str) -> str:
    from conduitctl.runtime.sim_image import image_exists

    built = sim_image  # build_image's id, built under the workers' lock (conftest.py)
    assert built.startswith("sha256:")
    assert image_exists("conduit-sim:local")
    assert not image_exists("conduit-sim:does-not-exist")
    return built


def _wait_greeting(port: int, timeout: float = 15.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=2) as sock:
                sock.settimeout(3)
                line = b""
                while not line.endswith(b"\n"):
                    chunk = sock.recv(256)
                    if not chunk:
                        break
                    line += chunk
                sock.sendall(b"echo me")
                assert sock.recv(64) == b"echo me"
                return line
        except (ConnectionRefusedError, ConnectionResetError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=3) as resp:
        text = resp.read().decode()
    return {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.mark.timeout(900)  # the first build debootstraps Debian
def test_image_runs_hardened_and_keeps_its_key_in_the_volume(
    docker_client: Any, image_id: str, free_port: Callable[[], int]
) -> None:
    suffix = uuid.uuid4().hex[:8]
    volume = docker_client.volumes.create(f"conduit-sim-test-{suffix}")
    containers: list[Any] = []

    def run(name: str, port: int, metrics_port: int) -> Any:
        container = docker_client.containers.run(
            image_id,
            [
                "start",
                "--max-common-clients",
                "10",
                "--bandwidth",
                "10",
                "--metrics-addr",
                f"{HOST}:{metrics_port}",
                "--listen",
                f"{HOST}:{port}",
                "--name",
                name,
            ],
            name=f"conduit-sim-test-{name}-{suffix}",
            detach=True,
            network_mode="host",
            read_only=True,
            tmpfs={"/tmp": "rw,size=16m"},
            user="1000:1000",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            volumes={volume.name: {"bind": DATA, "mode": "rw"}},
        )
        containers.append(container)
        return container

    def read_key() -> tuple[str, bytes]:
        out = docker_client.containers.run(
            image_id,
            ["-c", f"stat -c '%a %u:%g' {DATA}/conduit_key.json && cat {DATA}/conduit_key.json"],
            entrypoint="/bin/sh",
            network_mode="host",
            user="1000:1000",
            volumes={volume.name: {"bind": DATA, "mode": "ro"}},
            remove=True,
        )
        mode, _, key = bytes(out).partition(b"\n")
        return mode.decode(), key

    try:
        port, metrics_port = free_port(), free_port()
        first = run("one", port, metrics_port)
        greeting = _wait_greeting(port)
        assert greeting.startswith(b"CONDUIT-SIM one ")
        metrics = _metrics(metrics_port)
        assert metrics["conduit_is_live"] == 1
        assert metrics["conduit_max_common_clients"] == 10
        assert metrics["conduit_bandwidth_limit_bytes_per_second"] == 1_250_000
        first.stop(timeout=10)
        assert first.wait(timeout=15)["StatusCode"] == 0
        assert b"Stopped." in first.logs()
        mode, key = read_key()
        assert mode == "600 1000:1000"
        assert json.loads(key)["privateKeyBase64"]

        port2, metrics_port2 = free_port(), free_port()
        second = run("two", port2, metrics_port2)
        again = _wait_greeting(port2)
        # Same identity: the id in the greeting derives from the key in the volume.
        assert again.split()[2] == greeting.split()[2]
        assert b"Loaded existing key" not in second.logs()  # only printed with -v
        second.stop(timeout=10)
        assert second.wait(timeout=15)["StatusCode"] == 0
        assert read_key() == (mode, key)
    finally:
        for container in containers:
            container.remove(force=True)
        volume.remove(force=True)

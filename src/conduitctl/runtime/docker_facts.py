"""What preflight asks the docker daemon (an edge): does it answer, its version, the image,
dockerd's open-files limit, and the pids of this cluster's containers. Changes nothing.

The SDK is imported on use: without it, or without a daemon, dockerd simply "does not answer".
"""

from __future__ import annotations

import contextlib
import resource

import psutil

from conduitctl import labels
from conduitctl.preflight_facts import DockerFact

DAEMON_TIMEOUT_S = 10
LIST_TIMEOUT_S = 5


def daemon_fact(image: str | None, timeout: int = DAEMON_TIMEOUT_S) -> DockerFact:
    """Ping dockerd, read its version, and whether `image` is present locally (never pulls)."""
    try:
        import docker
        import docker.errors

        client = docker.from_env(timeout=timeout)
        client.ping()
        version = str(client.version().get("Version") or "unknown")
    except Exception as exc:  # no SDK, no socket, no answer: all mean "not running" here
        return DockerFact(reachable=False, error=f"{type(exc).__name__}: {exc}"[:200], image=image)
    present: bool | None = None
    error = None
    if image:
        try:
            client.images.get(image)
            present = True
        except docker.errors.ImageNotFound:
            present = False
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
    return DockerFact(
        reachable=True,
        version=version,
        error=error,
        image=image,
        image_present=present,
        nofile_hard=dockerd_nofile(),
    )


def dockerd_nofile() -> int | None:
    """dockerd's own hard RLIMIT_NOFILE: the most it can grant a container. None: unreadable."""
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "dockerd":
            with contextlib.suppress(psutil.Error, AttributeError, OSError):
                hard = proc.rlimit(psutil.RLIMIT_NOFILE)[1]
                return None if hard == resource.RLIM_INFINITY else int(hard)
    return None


def cluster_container_pids(cluster: str, timeout: int = LIST_TIMEOUT_S) -> dict[int, str]:
    """Main pid -> container name for this cluster's running containers.

    Empty (or what was read so far) when dockerd does not answer: the docker check says so.
    """
    pids: dict[int, str] = {}
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        filters = {
            "label": [f"{labels.LABEL_OWNER}={labels.OWNER}", f"{labels.LABEL_CLUSTER}={cluster}"]
        }
        for container in client.containers.list(filters=filters):
            pid = int(container.attrs.get("State", {}).get("Pid") or 0)
            if pid:
                pids[pid] = container.name
    except Exception:
        return pids
    return pids

"""conduit-manager's stations on dockerd, for `conduitctl migrate` (ops/migrate.py).

What it reads: every container's name, state, image, arguments, restart policy and the
volume at the workload's data dir. What it does, one container at a time: stop, rename,
set the restart policy, start, remove. It never removes a volume.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from conduitctl import labels
from conduitctl.errors import BadInput, ConduitctlError
from conduitctl.migrate_plan import FoundContainer
from conduitctl.runtime.docker_keys import DockerKeys
from conduitctl.settings import Settings
from conduitctl.workloads import PROFILES


def found_container(attrs: dict[str, Any], data_dir: str) -> FoundContainer:
    """One container's inspect document, as the migration plan reads it (pure)."""
    marks = (attrs.get("Config") or {}).get("Labels") or {}
    volume = next(
        (m.get("Name") for m in attrs.get("Mounts") or []
         if m.get("Type") == "volume" and m.get("Destination") == data_dir),
        None,
    )  # fmt: skip
    policy = (attrs.get("HostConfig") or {}).get("RestartPolicy") or {}
    return FoundContainer(
        name=str(attrs.get("Name", "")).lstrip("/"),
        running=bool((attrs.get("State") or {}).get("Running")),
        image=str((attrs.get("Config") or {}).get("Image", "")),
        data_volume=volume,
        args=tuple(str(a) for a in attrs.get("Args") or ()),
        ours=labels.LABEL_OWNER in marks or labels.LABEL_LEGACY in marks,
        restart_policy=str(policy.get("Name") or "no"),
        restart_retries=int(policy.get("MaximumRetryCount") or 0),
    )


class _Client:
    """A bare DockerHandle: the legacy side is docker whichever runtime this fleet uses."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def data_names(self) -> list[str]:
        return []


@contextlib.contextmanager
def _docker(what: str) -> Iterator[None]:
    """A docker error (dockerd gone, a container removed under us) as one ConduitctlError
    that names the step: the hand-over undoes what it did, and the CLI says it in one line."""
    import docker.errors
    import requests.exceptions

    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise ConduitctlError(f"docker: {what}: {exc}") from None


class DockerManagerHost:
    """The stations conduit-manager left on this dockerd, and the moves a hand-over makes.
    Keys are read from the legacy volumes only; conduitctl's own side is its runtime's
    KeyStore (a volume or a data dir). Every docker error is a ConduitctlError."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        import docker

        if client is None:
            try:
                client = docker.from_env(timeout=60)
            except docker.errors.DockerException as exc:
                raise BadInput(
                    f"migrate reads conduit-manager's docker containers, and dockerd is not "
                    f"reachable ({exc}); start docker (systemctl start docker) and run it again"
                ) from None
        self.client = client
        # conduit-manager ran the conduit image: its data dir, whatever this fleet runs
        legacy = settings.model_copy(
            update={"workload": settings.workload.model_copy(update={"profile": "psiphon-conduit"})}
        )
        self.keys = DockerKeys(legacy, _Client(self.client))

    def inventory(self) -> list[FoundContainer]:
        # The legacy image's data dir is conduit's, whichever profile this fleet runs.
        data_dir = PROFILES["psiphon-conduit"].data_dir
        with _docker("list the containers"):
            found = self.client.containers.list(all=True, ignore_removed=True)
            return [found_container(c.attrs, data_dir) for c in found]

    def read_key(self, volume: str, *, via: str) -> bytes | None:
        with _docker(f"read the key in volume {volume}"):
            return self.keys.read_volume(volume, via=via)

    def stop(self, name: str, timeout: float = 30.0) -> None:
        with _docker(f"stop {name}"):
            container = self.client.containers.get(name)
            container.reload()
            if container.status in ("running", "restarting"):
                container.stop(timeout=int(timeout))

    def set_restart(self, name: str, policy: str, retries: int = 0) -> None:
        wanted: dict[str, Any] = {"Name": policy}
        if policy == "on-failure":
            wanted["MaximumRetryCount"] = retries
        with _docker(f"set the restart policy of {name}"):
            self.client.containers.get(name).update(restart_policy=wanted)

    def rename(self, name: str, new_name: str) -> None:
        with _docker(f"rename {name} to {new_name}"):
            self.client.containers.get(name).rename(new_name)

    def start(self, name: str) -> None:
        with _docker(f"start {name}"):
            self.client.containers.get(name).start()

    def remove(self, name: str) -> None:
        """Remove the stopped container; its volumes stay (v=False)."""
        with _docker(f"remove {name}"):
            self.client.containers.get(name).remove(v=False)

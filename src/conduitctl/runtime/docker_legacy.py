"""conduit-manager's layout on dockerd, for `rollback --legacy` (ops/legacy_layout.py).

One container per station named `conduit`, `conduit-2`, ... on a volume `conduit-data`,
`conduit-data-2`, ... at the workload's data dir; host networking, restart unless-stopped. The
containers carry LABEL_LEGACY, never the owner label: the runtime must never list, adopt or
remove them as its own. No volume is ever removed here.
"""

from __future__ import annotations

import contextlib
from typing import Any

from conduitctl import labels
from conduitctl.labels import LegacySlot
from conduitctl.runtime.base import LaunchSpec
from conduitctl.runtime.docker_keys import DockerHandle, DockerKeys
from conduitctl.settings import Settings
from conduitctl.units import format_size
from conduitctl.workloads import PROFILES


def legacy_container_kwargs(spec: LaunchSpec, slot: LegacySlot, cluster: str) -> dict[str, Any]:
    """docker create arguments of conduit-manager's container for this backend (pure).

    Same image and command line as our backend; host networking, the legacy volume at the
    data dir, restart unless-stopped, our user, memory/CPU limits and log rotation. Not our
    owner label: the runtime must never list, adopt or remove it as one of its own.
    """
    from docker.types import LogConfig

    h = spec.hardening
    b = spec.backend
    data_dir = PROFILES[spec.profile].data_dir
    return {
        "name": slot.container,
        "image": spec.image,
        "command": spec.argv(data_dir),
        "labels": {labels.LABEL_LEGACY: cluster},
        "user": h.user,
        "network_mode": "host",
        "volumes": {slot.volume: {"bind": data_dir, "mode": "rw"}},
        "restart_policy": {"Name": "unless-stopped"},
        "mem_limit": b.memory_bytes,
        "nano_cpus": int(b.cpus * 1e9),
        "log_config": LogConfig(
            type="json-file",
            config={"max-size": format_size(h.log_max_size), "max-file": str(h.log_max_files)},
        ),
    }


class DockerLegacy:
    """The LegacyLayout of the docker runtime (runtime/base.py)."""

    def __init__(self, settings: Settings, runtime: DockerHandle) -> None:
        self.runtime = runtime
        self.cluster = settings.cluster.name
        self.keys = DockerKeys(settings, runtime)

    @property
    def client(self) -> Any:
        return self.runtime.client

    def labels(self, container: str) -> dict[str, str] | None:
        import docker.errors

        try:
            return dict(self.client.containers.get(container).labels or {})
        except docker.errors.NotFound:
            return None

    def containers(self) -> list[str]:
        found = self.client.containers.list(
            all=True, filters={"label": f"{labels.LABEL_LEGACY}={self.cluster}"}
        )
        return [c.name for c in found]

    def has_image(self, image: str) -> bool:
        import docker.errors

        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
        return True

    def read_key(self, volume: str, *, via: str) -> bytes | None:
        return self.keys.read_volume(volume, via=via)

    def write_key(
        self, volume: str, data: bytes, *, via: str, create_labels: dict[str, str]
    ) -> None:
        self.keys.write_volume(volume, data, via=via, create_labels=create_labels)

    def create(
        self, spec: LaunchSpec, slot: LegacySlot, cluster: str, volume_labels: dict[str, str]
    ) -> str | None:
        import docker.errors

        try:
            self.client.volumes.get(slot.volume)
        except docker.errors.NotFound:
            self.client.volumes.create(name=slot.volume, labels=volume_labels)
        try:
            self.client.containers.create(**legacy_container_kwargs(spec, slot, cluster))
        except docker.errors.APIError as exc:
            return str(exc.explanation or exc).strip().splitlines()[-1]
        return None

    def start(self, container: str) -> None:
        self.client.containers.get(container).start()

    def stop(self, container: str, timeout: float = 10.0) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            found = self.client.containers.get(container)
            if found.status in ("running", "restarting"):
                found.stop(timeout=int(max(timeout, 1)))

    def remove(self, container: str, timeout: float = 10.0) -> None:
        import docker.errors

        self.stop(container, timeout)
        with contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(container).remove(v=False, force=True)

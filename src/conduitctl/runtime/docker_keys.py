"""The docker runtime's key store: conduit_key.json in each backend's named volume.

Read and written through the volume's Mountpoint on the host (no container is run); when that
path is not reachable (a remote or rootless dockerd), through the existing container's archive
API.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path
from typing import Any, Protocol

from conduitctl import labels
from conduitctl.errors import ConduitctlError
from conduitctl.runtime.base import KEY_FILE, read_key_file, write_key_file
from conduitctl.settings import Settings
from conduitctl.workloads import PROFILES


class DockerHandle(Protocol):
    """What the key store and conduit-manager's layout need of the docker runtime (a
    Protocol, so neither imports the runtime that makes them)."""

    @property
    def client(self) -> Any: ...

    def data_names(self) -> list[str]: ...


def parse_user(user: str) -> tuple[int, int]:
    """container.user ("1000" or "1000:1000") as (uid, gid)."""
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


class DockerKeys:
    """Keys in the named volumes, through the volume's Mountpoint (no container is run).

    Falls back to the existing container's archive API when the Mountpoint is not reachable
    from here (a remote or rootless dockerd).
    """

    in_volumes = True

    def __init__(self, settings: Settings, runtime: DockerHandle) -> None:
        self.runtime = runtime
        self.cluster = settings.cluster.name
        self.data_dir = PROFILES[settings.workload.profile].data_dir
        self.uid, self.gid = parse_user(settings.container.user)

    @property
    def client(self) -> Any:
        return self.runtime.client

    def names(self) -> list[str]:
        return list(self.runtime.data_names())

    def volume_of(self, backend: str) -> str:
        """The named volume that holds `backend`'s data ({cluster}-data-{i})."""
        return labels.volume_name(self.cluster, int(backend.rsplit("-", 1)[1]))

    def owned_labels(self, backend: str) -> dict[str, str]:
        # the same labels the runtime gives its volumes
        return {
            labels.LABEL_OWNER: labels.OWNER,
            labels.LABEL_CLUSTER: self.cluster,
            labels.LABEL_INDEX: backend.rsplit("-", 1)[1],
        }

    def _volume(self, name: str, create_labels: dict[str, str] | None = None) -> Any | None:
        """The volume called `name`; created with `create_labels` when missing and given."""
        import docker.errors

        try:
            return self.client.volumes.get(name)
        except docker.errors.NotFound:
            if create_labels is None:
                return None
        return self.client.volumes.create(name=name, labels=create_labels)

    def _mountpoint(self, volume: Any) -> Path | None:
        mount = volume.attrs.get("Mountpoint")
        path = Path(mount) if mount else None
        return path if path is not None and path.is_dir() else None

    def _container(self, name: str) -> Any | None:
        import docker.errors

        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None

    def read(self, backend: str) -> bytes | None:
        return self.read_volume(self.volume_of(backend), via=backend)

    def read_volume(self, volume_name: str, *, via: str) -> bytes | None:
        """The key in the named volume, or None when the volume or its key does not exist.

        `via` names a container that mounts the volume at the workload's data dir: the key is
        read through its archive API when the volume's Mountpoint is not reachable from here.

        Raises:
            ConduitctlError: the key cannot be read (permissions, or neither path works).
        """
        volume = self._volume(volume_name)
        if volume is None:
            return None
        mount = self._mountpoint(volume)
        if mount is not None:
            return read_key_file(mount / KEY_FILE)
        return self._read_archive(via)

    def _read_archive(self, via: str) -> bytes | None:
        import docker.errors

        container = self._container(via)
        if container is None:
            raise ConduitctlError(
                f"{via}: the volume's Mountpoint is not reachable from here and there is "
                "no container to read it through; run conduitctl as root on the docker host"
            )
        try:
            chunks, _ = container.get_archive(f"{self.data_dir}/{KEY_FILE}")
        except docker.errors.NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = tar.extractfile(KEY_FILE)
            return member.read() if member is not None else None

    def write(self, backend: str, data: bytes) -> None:
        self.write_volume(
            self.volume_of(backend), data, via=backend, create_labels=self.owned_labels(backend)
        )

    def write_volume(
        self, volume_name: str, data: bytes, *, via: str, create_labels: dict[str, str]
    ) -> None:
        """Write the key (0600, owned by container.user) into the named volume, atomically.

        The volume is created with `create_labels` when it does not exist. `via` names a
        container that mounts it at the data dir, used when the Mountpoint is not reachable.

        Raises:
            ConduitctlError: neither the Mountpoint nor the container `via` is usable.
        """
        volume = self._volume(volume_name, create_labels)
        mount = self._mountpoint(volume)
        if mount is None:
            self._write_archive(via, data)
            return
        # A volume made here (not by a container's first mount) is root's: give it to the
        # workload's user so it can write beside the key, as docker's copy-up would have.
        if mount.stat().st_uid == 0 and self.uid != 0:
            os.chown(mount, self.uid, self.gid)
        write_key_file(mount / KEY_FILE, data, self.uid, self.gid)

    def _write_archive(self, via: str, data: bytes) -> None:
        container = self._container(via)
        if container is None:
            raise ConduitctlError(
                f"{via}: the volume's Mountpoint is not reachable from here and there is "
                "no container to write it through; run conduitctl as root on the docker host"
            )
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(KEY_FILE)
            info.size, info.mode, info.uid, info.gid = len(data), 0o600, self.uid, self.gid
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        container.put_archive(self.data_dir, buffer.getvalue())

    def running(self, backend: str) -> bool:
        container = self._container(backend)
        return container is not None and container.status in ("running", "restarting")

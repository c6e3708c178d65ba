"""conduit-manager's stations on dockerd, for `conduitctl migrate` (ops/migrate.py).

What it reads: every container's name, state, image, arguments, restart policy and the
volume at the workload's data dir. What it does, one container at a time: stop, rename,
set the restart policy, start, remove. It never removes a volume.
"""

from __future__ import annotations

from typing import Any

from conduitctl import labels
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
    return FoundContainer(
        name=str(attrs.get("Name", "")).lstrip("/"),
        running=bool((attrs.get("State") or {}).get("Running")),
        image=str((attrs.get("Config") or {}).get("Image", "")),
        data_volume=volume,
        args=tuple(str(a) for a in attrs.get("Args") or ()),
        ours=labels.LABEL_OWNER in marks or labels.LABEL_LEGACY in marks,
        restart_policy=str(((attrs.get("HostConfig") or {}).get("RestartPolicy") or {}).get(
            "Name") or "no"),
    )  # fmt: skip


class _Client:
    """A bare DockerHandle: the legacy side is docker whichever runtime this fleet uses."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def data_names(self) -> list[str]:
        return []


class DockerManagerHost:
    """The stations conduit-manager left on this dockerd, and the moves a hand-over makes.
    Keys are read from the legacy volumes only; conduitctl's own side is its runtime's
    KeyStore (a volume or a data dir)."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        import docker

        self.client = client or docker.from_env(timeout=60)
        # conduit-manager ran the conduit image: its data dir, whatever this fleet runs
        legacy = settings.model_copy(
            update={"workload": settings.workload.model_copy(update={"profile": "psiphon-conduit"})}
        )
        self.keys = DockerKeys(legacy, _Client(self.client))

    def inventory(self) -> list[FoundContainer]:
        # The legacy image's data dir is conduit's, whichever profile this fleet runs.
        data_dir = PROFILES["psiphon-conduit"].data_dir
        return [found_container(c.attrs, data_dir)
                for c in self.client.containers.list(all=True, ignore_removed=True)]  # fmt: skip

    def read_key(self, volume: str, *, via: str) -> bytes | None:
        return self.keys.read_volume(volume, via=via)

    def stop(self, name: str, timeout: float = 30.0) -> None:
        container = self.client.containers.get(name)
        container.reload()
        if container.status in ("running", "restarting"):
            container.stop(timeout=int(timeout))

    def set_restart(self, name: str, policy: str) -> None:
        self.client.containers.get(name).update(restart_policy={"Name": policy})

    def rename(self, name: str, new_name: str) -> None:
        self.client.containers.get(name).rename(new_name)

    def start(self, name: str) -> None:
        self.client.containers.get(name).start()

    def remove(self, name: str) -> None:
        """Remove the stopped container; its volumes stay (v=False)."""
        self.client.containers.get(name).remove(v=False)

"""The runtime interface: how backends are started, stopped, listed and read.

Two implementations: docker (one hardened container per backend) and process (a detached
process per backend, for hosts without Docker and for the demo).
"""

from __future__ import annotations

import hashlib
import json
import signal
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Protocol

from conduitctl.fleet import BackendSpec, desired_backends
from conduitctl.settings import Container, Settings
from conduitctl.workloads import PROFILES
from conduitctl.workloads.base import LaunchArgs


class State(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"  # exited or never started; present but not running
    RESTARTING = "restarting"
    MISSING = "missing"  # desired but not there at all


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a runtime needs to start one backend; its hash detects drift."""

    backend: BackendSpec
    cluster: str
    profile: str
    image: str | None
    dialect: str
    command: tuple[str, ...] | None  # workload.command: replaces the profile's arguments
    hardening: Container
    extra_args: tuple[str, ...] = ()  # workload.extra_args: appended to them

    @property
    def name(self) -> str:
        return self.backend.name

    def argv(self, data_dir: str) -> list[str]:
        """The workload's arguments (without the program) for a data dir on this runtime."""
        if self.command is not None:
            return list(self.command) + list(self.extra_args)
        b = self.backend
        return [*self._profile_argv(b, data_dir), *self.extra_args]

    def _profile_argv(self, b: BackendSpec, data_dir: str) -> list[str]:
        return PROFILES[self.profile].command(
            LaunchArgs(
                max_clients=b.max_clients,
                bandwidth_mbps=b.bandwidth_mbps,
                metrics_addr=b.metrics_addr,
                data_dir=data_dir,
                listen_addr=b.listen_addr,
                name=b.name,
                dialect=self.dialect,
            )
        )

    def config_hash(self) -> str:
        """Changes whenever anything that needs a recreate changes."""
        blob = json.dumps(
            {
                "backend": asdict(self.backend),
                "image": self.image,
                "args": self.argv("DATA"),
                "hardening": self.hardening.model_dump(mode="json"),
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class BackendStatus:
    """What a runtime reports for one backend it owns."""

    name: str
    index: int
    state: State
    pid: int | None = None
    container_id: str | None = None
    started_at: float | None = None  # unix seconds
    restart_count: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    cpu_seconds: float | None = None  # cumulative; rates come from two samples
    rss_bytes: int | None = None
    config_hash: str | None = None
    image_id: str | None = None  # the image it runs (docker)
    # Its image tag now names another image (pulled, rebuilt, or re-tagged by rollback).
    image_changed: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


class Runtime(Protocol):
    """One implementation per file: runtime/docker.py, runtime/process.py."""

    name: str

    def backends(self) -> list[BackendStatus]:
        """Every backend of this cluster the runtime holds, running or not."""
        ...

    def start(self, spec: LaunchSpec) -> BackendStatus:
        """Create (if needed) and start the backend. Keeps its data (identity key)."""
        ...

    def stop(self, name: str, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`. A stopped backend is kept, with its data."""
        ...

    def remove(self, name: str, purge: bool = False) -> None:
        """Remove the backend; `purge` also deletes its data (its identity key)."""
        ...

    def logs(self, name: str, tail: int | None = None, follow: bool = False) -> Iterator[str]:
        """Log lines, the last `tail` of them; `follow` keeps yielding new ones."""
        ...

    def data_names(self) -> list[str]:
        """Backends whose data (identity key) this runtime keeps, running or not."""
        ...

    def oom_count(self, name: str) -> int | None:
        """OOM kills counted by the kernel for this backend so far, where the runtime can read
        them cheaply (process: its memory cgroup); None where OOMs arrive as events."""
        ...

    def foreign(self, names: Iterable[str]) -> dict[str, str]:
        """What is in the way of a change, found before it starts: `names` held by something
        this cluster does not own, and conduit-manager's stations (a fleet started beside them
        would be new stations, with new keys). Name -> why, in one line with the fix."""
        ...

    def image_id(self, tag: str | None) -> str | None:
        """The image a tag names now (None: no such image, or a runtime without images)."""
        ...

    def retag(self, tag: str, image_id: str) -> bool:
        """Point `tag` back at `image_id` when that image is still here and the tag moved.
        True when it moved the tag."""
        ...

    def oom_kills_since(self, since: float, until: float) -> set[str]:
        """Backends the runtime saw OOM-killed in [since, until] from its own events (docker's
        restart policy may start them again before a sample sees them down); empty where OOMs
        are counted instead (`oom_count`)."""
        ...

    def usage(self, pid: int) -> tuple[float | None, int | None]:
        """(cpu seconds, resident bytes) of a running backend, read cheaply (every tick)."""
        ...

    # --- signals (the chaos drill) ---

    def send_signal(self, name: str, sig: signal.Signals, pid: int | None = None) -> bool:
        """Send `sig` to the backend's main process (docker: the container's). With `pid`,
        only while that very process still runs as the backend (not replaced since).

        True when sent; False when the backend runs no process, or another one than `pid`."""
        ...


def launch_specs(settings: Settings) -> list[LaunchSpec]:
    """The launch spec of each desired backend (pure)."""
    w = settings.workload
    return [
        LaunchSpec(
            backend=backend,
            cluster=settings.cluster.name,
            profile=w.profile,
            image=w.effective_image,
            dialect=w.flag_dialect,
            command=tuple(w.command) if w.command else None,
            extra_args=tuple(w.extra_args),
            hardening=settings.container,
        )
        for backend in desired_backends(settings)
    ]

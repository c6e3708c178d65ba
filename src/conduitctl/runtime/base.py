"""The runtime interface: how backends are started, stopped, listed and read.

Two implementations: docker (one hardened container per backend) and process (a detached
process per backend, for hosts without Docker and for the demo).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import hashlib
import json
import os
import signal
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from conduitctl.conduit_cli import set_argv
from conduitctl.errors import ConduitctlError
from conduitctl.fleet import BackendSpec, desired_backends
from conduitctl.labels import LegacySlot
from conduitctl.settings import Container, Settings
from conduitctl.statedir import write_atomic
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
    set_args: tuple[str, ...] = ()  # workload.set as the CLI's --set KEY=VALUE

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
                set_args=self.set_args,
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


# --- identity keys --------------------------------------------------------------------------

KEY_FILE = "conduit_key.json"  # a station's identity, in its data dir


MAX_KEY_BYTES = 64 * 1024  # a Conduit key file is a few hundred bytes


def read_key_file(path: Path) -> bytes | None:
    """The key file's bytes, or None when there is none.

    Read as root from a directory the backend's user owns: never through a link, never a
    FIFO or a device, never a file linked elsewhere too (a hard link to /etc/shadow), and
    never more than MAX_KEY_BYTES.

    Raises:
        ConduitctlError: it exists but is not a plain key file, or cannot be read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        why = "a link" if exc.errno == errno.ELOOP else exc.strerror
        raise ConduitctlError(f"cannot read {path}: {why}; check what it is") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size > MAX_KEY_BYTES:
            raise ConduitctlError(
                f"{path} is not a plain key file (a special file, linked elsewhere too, or "
                f"over {MAX_KEY_BYTES // 1024} KiB); move it aside and check who put it there"
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise ConduitctlError(
            f"cannot read {path}: {exc.strerror}; check its permissions"
        ) from None
    finally:
        os.close(fd)


def key_problem(data: bytes) -> str | None:
    """Why these bytes are not a station key Conduit would load ({mnemonic,
    privateKeyBase64}, CONDUIT.md); None when they are. Conduit replaces a key it cannot
    parse with a new identity: such a file must be restored, never started on."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "not JSON"
    private = doc.get("privateKeyBase64") if isinstance(doc, dict) else None
    if not isinstance(private, str) or not private:
        return "no privateKeyBase64"
    padded = private.rstrip("=") + "=" * (-len(private.rstrip("=")) % 4)  # raw or padded
    alphabet = b"-_" if "-" in private or "_" in private else None  # URL-safe, or standard
    try:
        if not base64.b64decode(padded, altchars=alphabet, validate=True):
            return "an empty privateKeyBase64"
    except (binascii.Error, ValueError):
        return "privateKeyBase64 is not base64"
    return None


def write_key_file(path: Path, data: bytes, uid: int | None = None, gid: int | None = None) -> None:
    """A 0600 key file at `path`, atomically, owned by uid:gid when given."""
    owner = None if uid is None else (uid, gid if gid is not None else -1)
    write_atomic(path, data, secret=True, owner=owner)


class KeyStore(Protocol):
    """Where a runtime keeps each backend's key (its data dir or volume)."""

    # Keys live in docker volumes named {cluster}-data-{i}, which another tool's container
    # (conduit-manager's) may already have mounted; else in data dirs of conduitctl's own.
    in_volumes: bool

    def read(self, backend: str) -> bytes | None:
        """The backend's key bytes, or None when it has none yet."""
        ...

    def write(self, backend: str, data: bytes) -> None:
        """Write the key (0600, owned by the workload's user), atomically where possible."""
        ...

    def running(self, backend: str) -> bool: ...

    def names(self) -> list[str]:
        """Backends that have data (a data dir or volume), with or without a key."""
        ...


# --- deaths as they happen -------------------------------------------------------------------


class RuntimeEvent(StrEnum):
    DIED = "die"
    OOM = "oom"  # the kernel's OOM killer hit it (it dies too: DIED follows)
    STARTED = "start"  # started by the runtime itself (docker's restart policy)


# (backend, what happened, detail: exit_code, or pid and reason), called on the loop's thread
OnRuntimeEvent = Callable[[str, RuntimeEvent, dict[str, Any]], None]


class ExitWatcher(Protocol):
    """Delivers a runtime's events for this cluster's backends as they happen."""

    def start(self) -> None:
        """Begin delivering the events that are not per process (the supervisor calls it
        once it adopted what runs)."""
        ...

    def watch(self, name: str, pid: int) -> None:
        """Follow this backend's process, where deaths are seen per process."""
        ...

    def forget(self, name: str) -> None: ...

    def close(self) -> None: ...


# --- conduit-manager's layout (`rollback --legacy`) -----------------------------------------


class LegacyLayout(Protocol):
    """conduit-manager's containers and volumes, by name, on the runtime that can run them.

    Never removes a volume. `via` names a container that mounts the volume at the workload's
    data dir: its key is read or written through it when the volume is not reachable here.
    """

    def labels(self, container: str) -> dict[str, str] | None:
        """The labels of the container called `container`, or None when there is none."""
        ...

    def containers(self) -> list[str]:
        """The legacy containers this cluster's switch made (found by their label)."""
        ...

    def has_image(self, image: str) -> bool: ...

    def read_key(self, volume: str, *, via: str) -> bytes | None:
        """The key in the named volume; None when the volume or its key does not exist."""
        ...

    def write_key(
        self, volume: str, data: bytes, *, via: str, create_labels: dict[str, str]
    ) -> None:
        """Write the key into the volume (made with `create_labels` when missing)."""
        ...

    def create(
        self, spec: LaunchSpec, slot: LegacySlot, cluster: str, volume_labels: dict[str, str]
    ) -> str | None:
        """Create (not start) the legacy container of `spec` on `slot`, and its volume (with
        `volume_labels`) when missing. None, or the runtime's refusal in one line."""
        ...

    def start(self, container: str) -> None: ...

    def stop(self, container: str, timeout: float = 10.0) -> None:
        """Stop it when it runs (no container: nothing to do)."""
        ...

    def remove(self, container: str, timeout: float = 10.0) -> None:
        """Stop and remove the container, never its volume (no container: nothing to do)."""
        ...


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

    def launch_problems(self, specs: list[LaunchSpec]) -> dict[str, str]:
        """Why a backend could not be started as these specs say, found before a change
        starts (the process runtime: its user cannot reach the program or its data). Name
        -> why, in one line with the fix."""
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

    def key_store(self, settings: Settings) -> KeyStore:
        """Where this runtime keeps the backends' identity keys."""
        ...

    def legacy(self, settings: Settings) -> LegacyLayout | None:
        """conduit-manager's layout on this runtime; None where it cannot run it."""
        ...

    def watch_exits(
        self, loop: asyncio.AbstractEventLoop, on_event: OnRuntimeEvent
    ) -> ExitWatcher | None:
        """A watcher that calls `on_event` as backends die (not yet started); None where
        the runtime says nothing until asked."""
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
            set_args=tuple(set_argv(w.set)),
            hardening=settings.container,
        )
        for backend in desired_backends(settings)
    ]

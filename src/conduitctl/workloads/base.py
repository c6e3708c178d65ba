"""The profile type shared by every workload."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class HealthSource(StrEnum):
    """Where a backend's health is read from."""

    METRICS = "metrics"  # HTTP /metrics: conduit_is_live, connected/connecting clients
    TCP = "tcp"  # TCP connect (and greeting, when the profile sends one)


@dataclass(frozen=True)
class LaunchArgs:
    """What one backend is started with; the runtime turns it into a container or a process."""

    max_clients: int
    bandwidth_mbps: float
    metrics_addr: str
    data_dir: str
    listen_addr: str | None
    name: str
    dialect: str
    set_args: tuple[str, ...] = ()  # CLI 2.0: --set KEY=VALUE pairs (workload.set), checked


@dataclass(frozen=True)
class Profile:
    """A workload: does it accept client connections, where does health come from, how to start it.

    `listens` is False for real Conduit: it dials out to the Psiphon broker and serves
    clients over WebRTC on ephemeral ports, so a front has nothing to balance.
    """

    name: str
    listens: bool
    health: HealthSource
    default_image: str | None
    data_dir: str  # inside the container
    command: Callable[[LaunchArgs], list[str]]
    # The first bytes of the one-line greeting sent on connect (probes and checks expect them).
    greeting_prefix: str | None = None
    # What a full station answers instead: alive and serving its clients, so healthy.
    busy_prefix: str | None = None
    # It is the Conduit CLI (`--version`, the v1/v2 flags): an image's CLI is checked first.
    conduit_cli: bool = False

    @property
    def greeting(self) -> bool:
        return self.greeting_prefix is not None


def conduit_v2_args(args: LaunchArgs) -> list[str]:
    """Conduit CLI >= 2.0 flags."""
    return [
        "start",
        "--max-common-clients",
        str(args.max_clients),
        "--bandwidth",
        f"{args.bandwidth_mbps:g}",
        "--metrics-addr",
        args.metrics_addr,
        "--data-dir",
        args.data_dir,
        *args.set_args,
    ]


def conduit_v1_args(args: LaunchArgs) -> list[str]:
    """Conduit CLI < 2.0 (and the ssmirr image): --max-clients and a stats file."""
    return [
        "start",
        "--max-clients",
        str(args.max_clients),
        "--bandwidth",
        f"{args.bandwidth_mbps:g}",
        "--data-dir",
        args.data_dir,
        "--stats-file",
        f"{args.data_dir}/stats.json",
    ]


def conduit_args(args: LaunchArgs) -> list[str]:
    return conduit_v1_args(args) if args.dialect == "v1" else conduit_v2_args(args)

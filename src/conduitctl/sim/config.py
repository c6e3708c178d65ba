"""The simulator's settings: one frozen value built once from the command line (stdlib only)."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

# Conduit's own defaults (cli/internal/config: DefaultMaxClients, DefaultBandwidthMbps).
DEFAULT_MAX_CLIENTS = 50
DEFAULT_BANDWIDTH_MBPS = 40.0
DEFAULT_STATS_INTERVAL = 10.0
DEFAULT_UDP_IDLE_TIMEOUT = 30.0
KEY_FILE_NAME = "conduit_key.json"
NAME_ENV = "CONDUIT_SIM_NAME"


class SimError(Exception):
    """A runtime error the simulator reports as one line on stderr and exit code 1."""


class SimUsageError(Exception):
    """A bad setting outside the command line (an environment variable): one line, exit 2."""


@dataclass(frozen=True)
class Address:
    """A host and port to bind; ``host`` is a literal IP (``0.0.0.0`` for Go's ``:PORT``)."""

    host: str
    port: int

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse ``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (all interfaces, as Go's net.Listen).

    ``localhost`` is accepted and means 127.0.0.1. Raises ValueError with a readable reason.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "":
        host = "0.0.0.0"
    elif host == "localhost":
        host = "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} in {text!r} is not an IP address") from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} in {text!r} is not 1-65535")
    return Address(host, int(port_text))


def bandwidth_bytes_per_second(mbps: float) -> int:
    """Conduit's conversion of ``--bandwidth`` (Mbps) to bytes/s; 0 means unlimited (-1 or 0)."""
    if mbps <= 0:
        return 0
    return int(mbps * 1000 * 1000 / 8)


def per_client_rate(
    bandwidth_bps: int, max_clients: int, client_rate_kbps: float | None
) -> float | None:
    """Each client's echo cap in bytes/s, or None for unlimited.

    ``--client-rate-kbps`` wins; otherwise the total bandwidth is shared evenly by the
    ``max_clients`` slots, so a full station never exceeds ``--bandwidth``.
    """
    if client_rate_kbps is not None:
        return client_rate_kbps * 1000 / 8
    if bandwidth_bps <= 0 or max_clients <= 0:
        return None
    return bandwidth_bps / max_clients


def default_name() -> str:
    return os.environ.get(NAME_ENV) or socket.gethostname() or "conduit-sim"


def clean_name(name: str) -> str:
    """The backend name as one token, because the greeting line is space separated."""
    return "-".join(name.split()) or "conduit-sim"


@dataclass(frozen=True)
class SimConfig:
    """Everything ``conduit-sim start`` was asked to do; built once, passed down."""

    data_dir: Path
    max_clients: int = DEFAULT_MAX_CLIENTS
    max_personal_clients: int = 0
    bandwidth_mbps: float = DEFAULT_BANDWIDTH_MBPS
    metrics_addr: Address | None = None
    stats_file: Path | None = None
    stats_interval: float = DEFAULT_STATS_INTERVAL
    verbosity: int = 0
    listen: tuple[Address, ...] = ()
    name: str = "conduit-sim"
    client_rate_kbps: float | None = None
    udp_idle_timeout: float = DEFAULT_UDP_IDLE_TIMEOUT
    crash_after: float | None = None
    hang_after: float | None = None
    leak_mb_per_s: float = 0.0
    session_mb: float = 0.0
    burn_cpu: float = 0.0
    cli_version: str = "2.0.0"
    compartment_id: str | None = None
    # Reduced hours (--set InproxyReduced*): (start, end) minutes after midnight UTC
    reduced_window: tuple[int, int] | None = None
    reduced_max_clients: int | None = None

    @property
    def bandwidth_bps(self) -> int:
        return bandwidth_bytes_per_second(self.bandwidth_mbps)

    @property
    def client_rate_bps(self) -> float | None:
        return per_client_rate(self.bandwidth_bps, self.max_clients, self.client_rate_kbps)

    @property
    def key_path(self) -> Path:
        return self.data_dir / KEY_FILE_NAME

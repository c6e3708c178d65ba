"""What a load run is asked to do: the target, the clients, the rate, the timeouts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from conduitctl.errors import BadInput
from conduitctl.front.base import first_listener
from conduitctl.settings import Proto, Settings

DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_ECHO_TIMEOUT_S = 5.0
DEFAULT_GREETING_PREFIX = "CONDUIT-SIM"
# Default ramp: clients / RAMP_CONNECTS_PER_S seconds, but never more than a quarter of the run.
RAMP_CONNECTS_PER_S = 2000
GRACE_EXTRA_S = 5.0  # hard stop = duration + connect timeout + this


def parse_target(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port). Raises BadInput naming the fix."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise BadInput(f"--target {text!r} is not HOST:PORT; give e.g. 127.0.0.1:443")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or "[" in host or "]" in host:
        raise BadInput(f"--target {text!r}: write an IPv6 address as [ADDR]:PORT")
    if not host or any(ch.isspace() for ch in host):
        raise BadInput(f"--target {text!r}: the host is empty or contains spaces")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise BadInput(f"--target {text!r}: port {port_text!r} is not 1-65535")
    return host, int(port_text)


@dataclass(frozen=True)
class LoadSpec:
    """What to run. Validated on construction (raises BadInput naming the field and the fix).

    ``rate_kbps`` is kilobits per second per client (0 = connect and hold only; over UDP a
    small keepalive datagram still goes every ``UDP_KEEPALIVE_S``). ``ramp_s`` spreads the
    connection starts (None = ``default_ramp``). ``duration_s`` includes the ramp: every
    session is closed at ``duration_s`` after the start.
    """

    host: str
    port: int
    clients: int
    duration_s: float
    rate_kbps: float = 0.0
    udp: bool = False
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    ramp_s: float | None = None
    greeting_prefix: str = DEFAULT_GREETING_PREFIX
    echo_timeout_s: float = DEFAULT_ECHO_TIMEOUT_S

    def __post_init__(self) -> None:
        def positive(name: str, value: float) -> None:
            if not (math.isfinite(value) and value > 0):
                raise BadInput(f"loadtest {name} must be a number > 0 (got {value})")

        if not self.host or any(ch.isspace() for ch in self.host):
            raise BadInput(f"loadtest --target host {self.host!r} is empty or has spaces")
        if not 1 <= self.port <= 65535:
            raise BadInput(f"loadtest --target port {self.port} is not 1-65535")
        if self.clients < 1:
            raise BadInput(f"loadtest --clients must be 1 or more (got {self.clients})")
        positive("--duration", self.duration_s)
        positive("connect_timeout_s", self.connect_timeout_s)
        positive("echo_timeout_s", self.echo_timeout_s)
        if not (math.isfinite(self.rate_kbps) and self.rate_kbps >= 0):
            raise BadInput(f"loadtest --rate must be >= 0 kbps (got {self.rate_kbps})")
        if self.ramp_s is not None and not 0 <= self.ramp_s <= self.duration_s:
            raise BadInput(
                f"loadtest ramp_s must be between 0 and --duration ({self.duration_s:g}); "
                f"got {self.ramp_s}"
            )
        if not self.greeting_prefix or any(ch.isspace() for ch in self.greeting_prefix):
            raise BadInput(f"loadtest greeting_prefix {self.greeting_prefix!r} must be one word")

    @classmethod
    def from_target(cls, target: str, **fields: Any) -> LoadSpec:
        """Build a spec from a ``HOST:PORT`` string (BadInput when it is malformed)."""
        host, port = parse_target(target)
        return cls(host=host, port=port, **fields)

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def effective_ramp_s(self) -> float:
        return self.ramp_s if self.ramp_s is not None else default_ramp(self)

    @property
    def grace_s(self) -> float:
        """How long after ``duration_s`` the run is stopped no matter what."""
        return self.connect_timeout_s + GRACE_EXTRA_S


def default_ramp(spec: LoadSpec) -> float:
    """min(duration / 4, clients / RAMP_CONNECTS_PER_S) seconds."""
    return min(spec.duration_s / 4, spec.clients / RAMP_CONNECTS_PER_S)


def front_target(settings: Settings, proto: Proto = Proto.TCP, *, fix: str) -> tuple[str, int]:
    """Where a load test or a drill connects by default: the first front listener of `proto`,
    on loopback when it binds all. Raises BadInput, ending in `fix`, when there is none."""
    target = first_listener(settings, proto) if settings.front.enabled else None
    if target is None:
        raise BadInput(
            f"no {proto.value} front listener to load (front.kind = {settings.front.kind!r}); "
            + fix
        )
    return target

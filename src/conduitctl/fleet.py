"""The desired fleet: settings -> one BackendSpec per backend (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from conduitctl.errors import BadInput
from conduitctl.settings import Settings
from conduitctl.workloads import PROFILES


@dataclass(frozen=True)
class BackendSpec:
    """One backend as the settings want it. Ports bind `host` (loopback by default)."""

    index: int  # 1-based
    name: str  # {cluster}-{index}
    host: str
    listen_port: int | None  # None: the profile listens on nothing (real Conduit)
    metrics_port: int
    max_clients: int
    bandwidth_mbps: float
    cpus: float
    memory_bytes: int

    @property
    def metrics_addr(self) -> str:
        return f"{self.host}:{self.metrics_port}"

    @property
    def listen_addr(self) -> str | None:
        return None if self.listen_port is None else f"{self.host}:{self.listen_port}"


def desired_backends(settings: Settings) -> tuple[BackendSpec, ...]:
    w = settings.workload
    listens = PROFILES[w.profile].listens
    specs = []
    for i in range(1, settings.cluster.containers + 1):
        o = w.overrides.get(i)
        specs.append(
            BackendSpec(
                index=i,
                name=f"{settings.cluster.name}-{i}",
                host=w.bind_host,
                listen_port=w.listen_port_base + i - 1 if listens else None,
                metrics_port=w.metrics_port_base + i - 1,
                max_clients=(o and o.max_clients) or w.max_clients,
                bandwidth_mbps=(
                    o.bandwidth_mbps if o and o.bandwidth_mbps is not None else w.bandwidth_mbps
                ),
                cpus=(o and o.cpus) or settings.container.cpus,
                memory_bytes=(o and o.memory) or settings.container.memory,
            )
        )
    return tuple(specs)


def backend_order(name: str) -> tuple[int, str]:
    """cluster-2 before cluster-10."""
    return len(name), name


def require_backend(name: str, known: Iterable[str]) -> str:
    """`name` when it is one of `known`; else BadInput naming the choices (the one check)."""
    choices = sorted(set(known), key=backend_order)
    if name not in choices:
        raise BadInput(f"no backend named {name}; choose one of: {', '.join(choices)}")
    return name

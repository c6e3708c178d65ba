"""The capacity planner (pure): how many clients this host can serve, and what limits it.

Limits side by side, each in concurrent clients:
- cpu:     Psiphon's guidance, 150-350 concurrent users per 1 CPU (+ 2 GB RAM);
- memory:  the same guidance per 2 GB of RAM, after a reserve for the OS, front and daemon;
- network: sustained fraction x NIC Mbps / (Mbps per client x active ratio). A relay's
           bytes cross the NIC in both directions (in from one side, out to the other), so a
           full-duplex NIC doubles nothing; a half-duplex one halves it. The review doubled it
           (1,066 for its host, not 533); the plan shows that figure beside, with the reason.
           Mbps per client is a demand estimate, not a station's `--bandwidth` cap;
- fds:     file descriptors: each container's nofile, and the host's fs.file-max.
The plan uses a stated point inside Psiphon's range; the bottleneck is the smallest limit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from conduitctl.settings import MAX_CLIENTS_CEILING

GUIDANCE_LOW = 150  # users per (1 CPU + 2 GB RAM), Psiphon's lower bound
GUIDANCE_HIGH = 350  # ... and upper bound
GUIDANCE_PLAN = 250  # the point the plan uses: the middle of the range
GB_PER_UNIT = 2.0
MEMORY_RESERVE_GB = 0.5  # OS, front, conduitctl daemon
TARGET_PER_CONTAINER = 250  # clients per container when the count is not given
FDS_PER_CLIENT_BACKEND = 2  # the client's socket + the relay's upstream socket
FDS_PER_CLIENT_FRONT = 2  # client side + upstream side in the front
FD_RESERVE_PER_CONTAINER = 64  # logs, metrics listener, data files
MB_PER_CLIENT = GB_PER_UNIT * 1024 / GUIDANCE_PLAN  # expected RAM per client at the plan point
MB_PER_CONTAINER_BASE = 40  # an idle Conduit process


@dataclass(frozen=True)
class PlanInput:
    cpus: float
    memory_gb: float
    nic_mbps: float
    mbps_per_client: float = 3.0
    active_ratio: float = 0.5
    sustained_fraction: float = 0.8
    duplex: bool = True
    front: bool = False  # a front doubles the fds per client
    nofile: int = 65536  # per container
    file_max: int | None = None  # host fs.file-max; None: unknown
    containers: int | None = None  # requested
    max_clients: int | None = None  # requested, per container

    def __post_init__(self) -> None:
        for name in ("cpus", "memory_gb", "nic_mbps", "mbps_per_client", "active_ratio"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.active_ratio > 1:
            raise ValueError("active_ratio must be at most 1")


@dataclass(frozen=True)
class Limit:
    """One limit in concurrent clients: `clients` is what the plan uses, low-high the range."""

    clients: int
    low: int
    high: int
    basis: str
    note: str | None = None  # a figure someone else gives for it, and why it differs


@dataclass(frozen=True)
class Plan:
    containers: int
    max_clients_per_container: int
    total_clients: int
    limits: dict[str, Limit]
    bottleneck: str
    expected: dict[str, float]
    requested: bool  # containers/max clients came from the caller, not the recommendation
    warnings: list[str] = field(default_factory=list)
    inputs: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def cpu_limit(cpus: float) -> Limit:
    return Limit(
        clients=math.floor(cpus * GUIDANCE_PLAN),
        low=math.floor(cpus * GUIDANCE_LOW),
        high=math.floor(cpus * GUIDANCE_HIGH),
        basis=f"{cpus:g} CPU x {GUIDANCE_LOW}-{GUIDANCE_HIGH} users/CPU, planned at "
        f"{GUIDANCE_PLAN}",
    )


def memory_limit(memory_gb: float) -> Limit:
    usable = max(memory_gb - MEMORY_RESERVE_GB, 0.0)
    units = usable / GB_PER_UNIT
    return Limit(
        clients=math.floor(units * GUIDANCE_PLAN),
        low=math.floor(units * GUIDANCE_LOW),
        high=math.floor(units * GUIDANCE_HIGH),
        basis=f"({memory_gb:g} GB - {MEMORY_RESERVE_GB:g} GB reserve) / {GB_PER_UNIT:g} GB x "
        f"{GUIDANCE_LOW}-{GUIDANCE_HIGH} users, planned at {GUIDANCE_PLAN}",
    )


def usable_mbps(p: PlanInput) -> float:
    """What the NIC carries for the relay, each way: a half-duplex link shares one."""
    return p.sustained_fraction * p.nic_mbps * (1 if p.duplex else 0.5)


def network_limit(p: PlanInput) -> Limit:
    per_client = p.mbps_per_client * p.active_ratio
    clients = math.floor(usable_mbps(p) / per_client)
    doubled = math.floor(2 * usable_mbps(p) / per_client)
    return Limit(
        clients=clients,
        low=clients,
        high=clients,
        basis=f"{p.sustained_fraction:g} x {p.nic_mbps:g} Mbps"
        f"{'' if p.duplex else ' / 2 (half duplex)'} / ({p.mbps_per_client:g} Mbps demand "
        f"per client x {p.active_ratio:g} active)",
        note=f"the review's method gives {doubled:,}: it counts a full-duplex NIC twice, but "
        "a relay's bytes cross the NIC in both directions, so duplex doubles nothing",
    )


def fd_limit(p: PlanInput, containers: int) -> Limit:
    per_container = (p.nofile - FD_RESERVE_PER_CONTAINER) // FDS_PER_CLIENT_BACKEND
    by_nofile = containers * per_container
    per_client_host = FDS_PER_CLIENT_BACKEND + (FDS_PER_CLIENT_FRONT if p.front else 0)
    by_host = p.file_max // per_client_host if p.file_max else by_nofile
    clients = min(by_nofile, by_host)
    basis = f"{containers} x nofile {p.nofile} / {FDS_PER_CLIENT_BACKEND} fds per client"
    if p.file_max:
        basis += f"; fs.file-max {p.file_max} / {per_client_host}"
    return Limit(clients=clients, low=clients, high=clients, basis=basis)


def make_plan(p: PlanInput) -> Plan:
    """The recommendation (or the check of a requested size) for this host."""
    limits = {
        "cpu": cpu_limit(p.cpus),
        "memory": memory_limit(p.memory_gb),
        "network": network_limit(p),
    }
    capacity = max(min(limit.clients for limit in limits.values()), 1)
    containers, per_container = _size(p, capacity)
    limits["fds"] = fd_limit(p, containers)
    bottleneck = min(limits, key=lambda name: limits[name].clients)
    capacity = max(limits[bottleneck].clients, 1)
    requested = p.containers is not None or p.max_clients is not None
    if not requested:
        containers, per_container = _size(p, capacity)
    total = containers * per_container

    warnings = _warnings(p, limits, total, containers, per_container, requested)
    expected = {
        "cpu_cores": round(total / GUIDANCE_PLAN, 2),
        "cpu_percent_of_host": round(100 * total / GUIDANCE_PLAN / p.cpus, 1),
        "ram_mb": round(total * MB_PER_CLIENT + containers * MB_PER_CONTAINER_BASE),
        "network_mbps": round(total * p.mbps_per_client * p.active_ratio, 1),
        "network_usable_mbps": round(usable_mbps(p), 1),
    }
    return Plan(
        containers=containers,
        max_clients_per_container=per_container,
        total_clients=total,
        limits=limits,
        bottleneck=bottleneck,
        expected=expected,
        requested=requested,
        warnings=warnings,
        inputs=asdict(p),
    )


def _size(p: PlanInput, capacity: int) -> tuple[int, int]:
    """Container count and clients per container: the caller's, else the recommendation."""
    if p.containers is not None and p.max_clients is not None:
        return p.containers, p.max_clients
    if p.containers is not None:
        return p.containers, max(1, min(capacity // p.containers, MAX_CLIENTS_CEILING))
    if p.max_clients is not None:
        return max(1, math.ceil(capacity / p.max_clients)), p.max_clients
    containers = max(1, math.ceil(capacity / TARGET_PER_CONTAINER))
    return containers, max(1, min(capacity // containers, MAX_CLIENTS_CEILING))


def _warnings(
    p: PlanInput,
    limits: dict[str, Limit],
    total: int,
    containers: int,
    per_container: int,
    requested: bool,
) -> list[str]:
    warnings = []
    exceeded = [
        f"{name} ({limit.clients:,}{'' if limit.high == limit.clients else f'; range {limit.low:,}-{limit.high:,}'})"  # noqa: E501
        for name, limit in limits.items()
        if total > limit.clients
    ]
    if exceeded:
        beyond = [name for name, limit in limits.items() if total > limit.high]
        bottleneck = min(limits.values(), key=lambda limit: limit.clients)
        note = f" ({total / max(bottleneck.clients, 1):.1f}x the smallest)"
        if beyond:
            note += f"; beyond even the optimistic end for {', '.join(beyond)}"
        warnings.append(
            f"over-provisioned: {containers} x {per_container} = {total:,} clients exceeds the "
            f"{', '.join(exceeded)} limit{'s' if len(exceeded) > 1 else ''}{note}"
        )
    if per_container > MAX_CLIENTS_CEILING:
        warnings.append(
            f"{per_container} clients per container exceeds Conduit's ceiling of "
            f"{MAX_CLIENTS_CEILING}; use more containers"
        )
    if containers > 1:
        warnings.append(
            f"{containers} stations on one host share its public IP: more capacity, no IP "
            "diversity (Psiphon's guide: spread stations across data centres)"
        )
    if requested and containers > p.cpus * 4:
        warnings.append(
            f"{containers} containers on {p.cpus:g} CPU: more than 4 per CPU adds overhead "
            "without adding capacity"
        )
    return warnings

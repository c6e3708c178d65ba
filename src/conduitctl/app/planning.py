"""The planner's input for this host and these settings: one builder for `plan`, `init` and the
daemon's degradation ceiling (which used to build it a second way)."""

from __future__ import annotations

from conduitctl.capacity import PlanInput
from conduitctl.errors import BadInput
from conduitctl.hostinfo import DEFAULT_NIC_MBPS, host_facts
from conduitctl.observe.machine import nofile_limit
from conduitctl.settings import Settings

NOFILE_FLOOR = 1024  # container.nofile's lowest allowed value


def plan_input(
    settings: Settings | None,
    *,
    cpus: float | None = None,
    memory_gb: float | None = None,
    nic_mbps: float | None = None,
    bandwidth_mbps: float = 3.0,
    active_ratio: float = 0.5,
    containers: int | None = None,
    max_clients: int | None = None,
) -> tuple[PlanInput, list[str]]:
    """The planner input (flags first, then the settings, then this host's facts) and notes
    on what had to be assumed. Raises BadInput on a value the planner refuses."""
    facts = host_facts(settings.host.nic if settings else None)
    notes = []
    nic = nic_mbps or (settings.host.nic_mbps if settings else None) or facts.nic_mbps
    if nic is None:
        nic = DEFAULT_NIC_MBPS
        notes.append(
            f"the kernel does not report the speed of {facts.nic or 'the NIC'}; "
            f"assumed {nic:g} Mbps (pass --nic-mbps)"
        )
    try:
        built = PlanInput(
            cpus=cpus or facts.cpus,
            memory_gb=memory_gb or facts.memory_gb,
            nic_mbps=nic,
            mbps_per_client=bandwidth_mbps,
            active_ratio=active_ratio,
            sustained_fraction=settings.host.sustained_fraction if settings else 0.8,
            duplex=settings.host.duplex if settings else True,
            front=bool(settings and settings.front.enabled),
            nofile=settings.container.nofile if settings else 65536,
            file_max=facts.file_max,
            containers=containers,
            max_clients=max_clients,
        )
    except ValueError as exc:
        raise BadInput(f"plan: {exc}; see conduitctl plan --help") from None
    return built, notes


def container_nofile_for(runtime: str, wanted: int) -> int:
    """`wanted` open files a backend, lowered to what this host can grant `runtime`'s
    backends (preflight's own rule), and never under the setting's floor: what init writes."""
    return max(min(wanted, nofile_limit(runtime)), NOFILE_FLOOR)

"""Workload profiles: what a backend listens on, how its health is read, how it is started.

One profile per module; `PROFILES` maps the conduit.toml name to it.
"""

from __future__ import annotations

from conduitctl.workloads.base import HealthSource, Profile
from conduitctl.workloads.generic import GENERIC
from conduitctl.workloads.psiphon_conduit import PSIPHON_CONDUIT
from conduitctl.workloads.sim import SIM

PROFILES: dict[str, Profile] = {p.name: p for p in (PSIPHON_CONDUIT, SIM, GENERIC)}

__all__ = ["PROFILES", "HealthSource", "Profile"]

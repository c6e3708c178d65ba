"""Real Psiphon Conduit: an in-proxy that dials out; its only listener is /metrics."""

from __future__ import annotations

from conduitctl.workloads.base import HealthSource, Profile, conduit_args

PSIPHON_CONDUIT = Profile(
    name="psiphon-conduit",
    listens=False,
    health=HealthSource.METRICS,
    default_image="ghcr.io/psiphon-inc/conduit/cli:latest",
    data_dir="/home/conduit/data",
    command=conduit_args,
    conduit_cli=True,
)

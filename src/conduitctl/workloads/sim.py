"""conduit-sim: Conduit's command line plus a TCP/UDP listener that greets and echoes."""

from __future__ import annotations

from conduitctl.workloads.base import HealthSource, LaunchArgs, Profile, conduit_args


def sim_args(args: LaunchArgs) -> list[str]:
    extra = ["--name", args.name]
    if args.listen_addr:
        extra += ["--listen", args.listen_addr]
    return conduit_args(args) + extra


SIM = Profile(
    name="sim",
    listens=True,
    health=HealthSource.METRICS,
    default_image="conduit-sim:local",
    data_dir="/home/conduit/data",
    command=sim_args,
    greeting_prefix="CONDUIT-SIM ",  # sim/server.py's greeting
    busy_prefix="BUSY ",  # ... and its answer when full
    conduit_cli=True,
)

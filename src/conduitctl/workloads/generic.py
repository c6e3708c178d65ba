"""Any identical listening proxy: health is a TCP connect; the image and command are the user's."""

from __future__ import annotations

from conduitctl.workloads.base import HealthSource, LaunchArgs, Profile


def generic_args(args: LaunchArgs) -> list[str]:
    return []  # the image's own entrypoint; workload.command overrides it


GENERIC = Profile(
    name="generic",
    listens=True,
    health=HealthSource.TCP,
    default_image=None,
    data_dir="/data",
    command=generic_args,
)

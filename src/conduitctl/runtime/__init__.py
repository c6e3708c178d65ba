"""Runtimes by name: docker (containers) and process (detached local processes)."""

from __future__ import annotations

from conduitctl.runtime.base import BackendStatus, LaunchSpec, Runtime, State, launch_specs
from conduitctl.settings import Settings


def runtime_for(settings: Settings) -> Runtime:
    if settings.cluster.runtime == "docker":
        from conduitctl.runtime.docker import DockerRuntime
        from conduitctl.statedir import StateDir

        cache = StateDir(settings.state_dir).cli_versions
        return DockerRuntime(settings.cluster.name, pull=settings.workload.pull, cli_cache=cache)
    from conduitctl.runtime.process import ProcessRuntime

    return ProcessRuntime(settings.state_dir, settings.cluster.name)


__all__ = ["BackendStatus", "LaunchSpec", "Runtime", "State", "launch_specs", "runtime_for"]

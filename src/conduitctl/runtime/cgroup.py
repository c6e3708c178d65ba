"""A memory cgroup per backend for the process runtime (v1 and v2): the backend's memory limit
is enforced by the kernel, and an OOM kill is counted where the supervisor can read it.

Best effort: where cgroups cannot be written (no root, a read-only hierarchy) the backend runs
without a limit and `create` says why.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from conduitctl.observe.cgroups import CGROUP_ROOT, cgroup_version

GROUP = "conduitctl"


class BackendCgroup:
    def __init__(self, cluster: str, name: str, root: Path = CGROUP_ROOT) -> None:
        self.root = root
        self.version = cgroup_version(root)
        base = root / "memory" if self.version == 1 else root
        self.parent = base / GROUP / cluster
        self.path = self.parent / name

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def create(self, memory_bytes: int) -> str | None:
        """Make the group with this memory limit; None when done, else why not."""
        try:
            if self.version == 2:
                self._enable_memory_controller()
            self.path.mkdir(parents=True, exist_ok=True)
            limit = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
            (self.path / limit).write_text(str(memory_bytes))
            if self.version == 2:
                with contextlib.suppress(OSError):  # no swap: an OOM is an OOM
                    (self.path / "memory.swap.max").write_text("0")
        except OSError as exc:
            return f"{self.path}: {exc.strerror or exc}"
        return None

    def _enable_memory_controller(self) -> None:
        """cgroup v2 hands a controller down only when each parent enables it for children."""
        directory = self.root
        for part in (GROUP, self.parent.name):
            control = directory / "cgroup.subtree_control"
            if "memory" not in control.read_text():
                control.write_text("+memory")
            directory = directory / part
            directory.mkdir(exist_ok=True)
        control = directory / "cgroup.subtree_control"
        if "memory" not in control.read_text():
            control.write_text("+memory")

    def oom_kills(self) -> int | None:
        """How many times the kernel's OOM killer struck inside this group."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            return None
        return None

    def remove(self) -> None:
        """Remove the group, then the cluster's and ours when nothing else is left in them."""
        for directory in (self.path, self.parent, self.parent.parent):
            try:
                directory.rmdir()  # the kernel refuses while a process or a child group is in
            except OSError:
                return

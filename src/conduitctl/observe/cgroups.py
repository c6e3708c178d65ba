"""CPU and memory of a process's cgroup, read from the cgroup files (v1 and v2).

Works for containers (the container's cgroup) and for plain processes (their own cgroup,
shared with whatever else is in it: the caller decides whether that is meaningful).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float | None
    memory_bytes: int | None  # anonymous + kernel memory: what the OOM killer counts, minus cache


def cgroup_version(root: Path = CGROUP_ROOT) -> int:
    return 2 if (root / "cgroup.controllers").exists() else 1


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """controller -> path from /proc/PID/cgroup; cgroup v2's single line is keyed ""."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller.removeprefix("name=")] = path
    return paths


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stat(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def usage_for_pid(pid: int, root: Path = CGROUP_ROOT) -> Usage:
    try:
        paths = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
    except OSError:
        return Usage(None, None)
    return usage_for_paths(paths, root)


def usage_for_paths(paths: dict[str, str], root: Path = CGROUP_ROOT) -> Usage:
    """Usage of the cgroup(s) in `paths` (from parse_proc_cgroup) under the hierarchy `root`."""
    if "" in paths and cgroup_version(root) == 2:
        base = root / paths[""].lstrip("/")
        usec = _stat(base / "cpu.stat").get("usage_usec")
        memory = _stat(base / "memory.stat")
        anon = memory.get("anon")
        return Usage(
            cpu_seconds=usec / 1e6 if usec is not None else None,
            memory_bytes=anon if anon is not None else _read_int(base / "memory.current"),
        )
    cpu_path = paths.get("cpuacct") or paths.get("cpu")
    mem_path = paths.get("memory")
    cpu_ns = (
        _read_int(root / "cpuacct" / cpu_path.lstrip("/") / "cpuacct.usage") if cpu_path else None
    )
    rss = None
    if mem_path:
        memory = _stat(root / "memory" / mem_path.lstrip("/") / "memory.stat")
        rss = memory.get("total_rss", memory.get("rss"))
    return Usage(cpu_seconds=cpu_ns / 1e9 if cpu_ns is not None else None, memory_bytes=rss)

import os
from pathlib import Path

from conduitctl.observe.cgroups import (
    cgroup_version,
    parse_proc_cgroup,
    usage_for_paths,
    usage_for_pid,
)

V1 = """12:memory:/docker/abc
4:cpu,cpuacct:/docker/abc
1:name=systemd:/docker/abc
0::/
"""


def test_parse_proc_cgroup_v1_and_v2():
    paths = parse_proc_cgroup(V1)
    assert paths["memory"] == paths["cpuacct"] == paths["cpu"] == "/docker/abc"
    assert paths["systemd"] == "/docker/abc"
    assert parse_proc_cgroup("0::/system.slice/docker-abc.scope\n") == {
        "": "/system.slice/docker-abc.scope"
    }


def test_usage_from_a_v1_hierarchy(tmp_path: Path):
    (tmp_path / "cpuacct/docker/abc").mkdir(parents=True)
    (tmp_path / "cpuacct/docker/abc/cpuacct.usage").write_text("2500000000\n")
    (tmp_path / "memory/docker/abc").mkdir(parents=True)
    (tmp_path / "memory/docker/abc/memory.stat").write_text("cache 100\nrss 5000\ntotal_rss 7000\n")
    usage = usage_for_paths(parse_proc_cgroup(V1), tmp_path)
    assert cgroup_version(tmp_path) == 1
    assert usage.cpu_seconds == 2.5
    assert usage.memory_bytes == 7000


def test_usage_from_a_v2_hierarchy(tmp_path: Path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    group = tmp_path / "system.slice/docker-abc.scope"
    group.mkdir(parents=True)
    (group / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    (group / "memory.stat").write_text("anon 4096\nfile 999999\n")
    usage = usage_for_paths({"": "/system.slice/docker-abc.scope"}, tmp_path)
    assert cgroup_version(tmp_path) == 2
    assert usage.cpu_seconds == 1.5
    assert usage.memory_bytes == 4096


def test_missing_files_give_none(tmp_path: Path):
    usage = usage_for_paths({"memory": "/gone", "cpuacct": "/gone"}, tmp_path)
    assert usage.cpu_seconds is None and usage.memory_bytes is None


def test_this_process_on_this_host():
    usage = usage_for_pid(os.getpid())
    assert usage.cpu_seconds is None or usage.cpu_seconds > 0

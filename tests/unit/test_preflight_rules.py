"""The preflight rules, as tables over facts (pure: no host is read)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conduitctl.observe.machine import clock_fact
from conduitctl.ops.preflight import backup_config, run_preflight
from conduitctl.preflight_facts import (
    ClockFact,
    DockerFact,
    FrontToolFact,
    Holder,
    PortFact,
    PreflightFacts,
)
from conduitctl.preflight_rules import (
    Check,
    PreflightReport,
    check_cgroup,
    check_clock,
    check_container_nofile,
    check_disk,
    check_docker,
    check_ephemeral,
    check_file_max,
    check_front_nofile,
    check_front_tool,
    check_memory,
    check_nr_open,
    check_port,
    check_somaxconn,
    evaluate,
    parse_port_list,
)
from conduitctl.settings import Settings, settings_from_dict

MIB = 1024**2


@pytest.mark.parametrize(
    ("expected", "total", "available", "status"),
    [
        (2048, 4096, 3000, "pass"),
        (2048, 4096, 1000, "warn"),
        (8192, 4096, 4000, "fail"),
    ],
)
def test_memory(expected: float, total: float, available: float, status: str) -> None:
    check = check_memory(expected, total, available, "basis")
    assert check.status == status
    assert (check.fix != "") == (status != "pass")


@pytest.mark.parametrize(
    ("free", "status"),
    [(5 * 1024 * MIB, "pass"), (1023 * MIB, "warn"), (199 * MIB, "fail"), (None, "warn")],
)
def test_disk(free: int | None, status: str) -> None:
    assert check_disk(Path("/var/lib/conduitctl"), free).status == status


@pytest.mark.parametrize(
    ("fact", "statuses"),
    [
        (DockerFact(reachable=False, error="ConnectionError"), ["fail"]),
        (
            DockerFact(True, "24.0.5", image="conduit-sim:local", image_present=True),
            ["pass", "pass"],
        ),
        (
            DockerFact(True, "24.0.5", image="conduit-sim:local", image_present=False),
            ["pass", "fail"],
        ),
        (DockerFact(True, "19.03.1", image="x", image_present=True), ["warn", "pass"]),
        (DockerFact(True, "24.0.5", image=None), ["pass", "fail"]),
        (
            DockerFact(True, "24.0.5", error="Timeout", image="x", image_present=None),
            ["pass", "warn"],
        ),
    ],
)
def test_docker(fact: DockerFact, statuses: list[str]) -> None:
    checks = check_docker(fact)
    assert [c.status for c in checks] == statuses


def test_docker_down_says_start_dockerd() -> None:
    (check,) = check_docker(DockerFact(reachable=False, error="refused"))
    assert "start dockerd" in check.fix


def test_missing_image_names_it_and_never_pulls() -> None:
    checks = check_docker(DockerFact(True, "24.0", image="conduit-sim:local", image_present=False))
    assert "conduit-sim:local" in checks[1].detail and "docker pull" in checks[1].fix


NGINX_V_DYNAMIC = "nginx version: nginx/1.22.1\nconfigure arguments: --with-stream=dynamic"
NGINX_V_BUILTIN = "nginx version: nginx/1.25.0\nconfigure arguments: --with-stream --with-http"
NGINX_V_NONE = "nginx version: nginx/1.25.0\nconfigure arguments: --with-http_ssl_module"


@pytest.mark.parametrize(
    ("fact", "statuses"),
    [
        (FrontToolFact("nginx", None), ["fail"]),
        (
            FrontToolFact("nginx", "/usr/sbin/nginx", NGINX_V_DYNAMIC, stream_so_exists=True),
            ["pass", "pass"],
        ),
        (
            FrontToolFact("nginx", "/usr/sbin/nginx", NGINX_V_DYNAMIC, stream_so_exists=False),
            ["pass", "fail"],
        ),
        (
            FrontToolFact("nginx", "/usr/sbin/nginx", NGINX_V_BUILTIN, stream_so_exists=False),
            ["pass", "pass"],
        ),
        (
            FrontToolFact("nginx", "/usr/sbin/nginx", NGINX_V_NONE, stream_so_exists=True),
            ["pass", "pass"],
        ),
        (
            FrontToolFact("nginx", "/usr/sbin/nginx", NGINX_V_NONE, stream_so_exists=False),
            ["pass", "fail"],
        ),
        (FrontToolFact("haproxy", "/usr/sbin/haproxy", "HAProxy version 2.6.12"), ["pass"]),
        (FrontToolFact("haproxy", None), ["fail"]),
    ],
)
def test_front_tool(fact: FrontToolFact, statuses: list[str]) -> None:
    assert [c.status for c in check_front_tool(fact)] == statuses


TAKEN = "Address already in use"


@pytest.mark.parametrize(
    ("fact", "own", "status", "says"),
    [
        (PortFact("tcp:443", "tcp", "0.0.0.0", 443), {}, "pass", "is free"),
        (
            PortFact("tcp:443", "tcp", "0.0.0.0", 443, TAKEN, (Holder(812, "caddy"),)),
            {},
            "fail",
            "443/tcp on 0.0.0.0 is taken (Address already in use) by caddy (pid 812)",
        ),
        (
            PortFact("udp:5566", "udp", "127.0.0.1", 5566, TAKEN, (Holder(None, None),)),
            {},
            "fail",
            "5566/udp",
        ),
        (
            PortFact("tcp:443", "tcp", "0.0.0.0", 443, TAKEN, (Holder(900, "nginx"),)),
            {900: "conduitctl's nginx"},
            "pass",
            "held by conduitctl's nginx, pid 900",
        ),
    ],
)
def test_port(fact: PortFact, own: dict[int, str], status: str, says: str) -> None:
    check = check_port(fact, own)
    assert check.status == status
    assert says in check.detail
    if status == "fail":
        assert str(fact.port) in check.fix


@pytest.mark.parametrize(
    ("ports", "ephemeral", "reserved", "status", "fix_has"),
    [
        ([28000, 28001], (32768, 60999), "", "pass", ""),
        (
            [40000, 40001, 40005],
            (32768, 60999),
            "",
            "warn",
            "ip_local_reserved_ports=40000-40001,40005",
        ),
        ([40000, 40001], (32768, 60999), "40000-40001", "pass", ""),
        (
            [40000, 40001],
            (32768, 60999),
            "8080,40000",
            "warn",
            "ip_local_reserved_ports=8080,40000-40001",
        ),
        ([28000], None, "", "warn", ""),
    ],
)
def test_ephemeral(
    ports: list[int], ephemeral: tuple[int, int] | None, reserved: str, status: str, fix_has: str
) -> None:
    check = check_ephemeral(ports, ephemeral, reserved)
    assert check.status == status
    assert fix_has in check.fix


def test_parse_port_list() -> None:
    assert parse_port_list("") == set()
    assert parse_port_list("8080, 28000-28002") == {8080, 28000, 28001, 28002}


@pytest.mark.parametrize(
    ("value", "status"), [(4096, "pass"), (65535, "pass"), (128, "warn"), (None, "warn")]
)
def test_somaxconn(value: int | None, status: str) -> None:
    assert check_somaxconn(value).status == status


@pytest.mark.parametrize(
    ("file_max", "needed", "status"), [(10**6, 600_000, "pass"), (100_000, 600_000, "warn")]
)
def test_file_max(file_max: int, needed: int, status: str) -> None:
    assert check_file_max(file_max, needed).status == status


@pytest.mark.parametrize(
    ("nr_open", "container", "front", "status"),
    [(1_048_576, 65536, 65536, "pass"), (32768, 65536, None, "fail"), (None, 1024, None, "warn")],
)
def test_nr_open(nr_open: int | None, container: int, front: int | None, status: str) -> None:
    assert check_nr_open(nr_open, container, front).status == status


def test_container_nofile_over_the_hard_limit_fails_naming_both() -> None:
    check = check_container_nofile(65536, "docker", 20000, "dockerd", raise_hint="raise it")
    assert check.status == "fail"
    assert "65536" in check.detail and "20000" in check.detail and "dockerd" in check.detail
    assert "container.nofile = 20000" in check.fix
    assert check_container_nofile(16384, "docker", 20000, "dockerd", raise_hint="").status == "pass"


def test_front_nofile() -> None:
    assert check_front_nofile(65536, 20000).status == "warn"
    assert check_front_nofile(16384, 20000).status == "pass"


@pytest.mark.parametrize(
    ("version", "runtime", "writable", "status"),
    [
        (2, "docker", None, "pass"),
        (1, "process", True, "pass"),
        (2, "process", False, "warn"),
        (2, "process", None, "warn"),
    ],
)
def test_cgroup(version: int, runtime: str, writable: bool | None, status: str) -> None:
    check = check_cgroup(version, runtime, Path("/sys/fs/cgroup"), writable)
    assert check.status == status
    assert f"v{version}" in check.detail


@pytest.mark.parametrize(
    ("fact", "status"),
    [
        (ClockFact("timedatectl", True), "pass"),
        (ClockFact("chronyc", False, "Not synchronised"), "warn"),
        (ClockFact(None, None, "no tool"), "warn"),
    ],
)
def test_clock(fact: ClockFact, status: str) -> None:
    assert check_clock(fact).status == status


def _runner(
    answers: dict[str, tuple[int, str, str] | None],
) -> Callable[[list[str]], tuple[int, str, str] | None]:
    return lambda argv: answers.get(argv[0])


@pytest.mark.parametrize(
    ("tools", "answers", "flag", "expected"),
    [
        ({"timedatectl"}, {"timedatectl": (0, "yes\n", "")}, False, ("timedatectl", True)),
        ({"timedatectl"}, {"timedatectl": (0, "no\n", "")}, False, ("timedatectl", False)),
        ({"timedatectl"}, {"timedatectl": (1, "", "no bus")}, True, ("systemd-timesyncd", True)),
        (
            {"chronyc"},
            {"chronyc": (0, "Reference ID : 1\nLeap status     : Normal\n", "")},
            False,
            ("chronyc", True),
        ),
        (
            {"chronyc"},
            {"chronyc": (0, "Leap status     : Not synchronised\n", "")},
            False,
            ("chronyc", False),
        ),
        ({"timedatectl"}, {"timedatectl": (1, "", "no bus")}, False, (None, None)),
        (set(), {}, False, (None, None)),
    ],
)
def test_clock_fact_sources(
    tmp_path: Path,
    tools: set[str],
    answers: dict[str, tuple[int, str, str] | None],
    flag: bool,
    expected: tuple[str | None, bool | None],
) -> None:
    timesync = tmp_path / "nope" / "synchronized"
    if flag:
        timesync.parent.mkdir()
        timesync.touch()
    fact = clock_fact(
        run=_runner(answers),
        which=lambda name: f"/usr/bin/{name}" if name in tools else None,
        timesync=timesync,
    )
    assert (fact.source, fact.synced) == expected


def _settings(tmp_path: Path, **sections: dict[str, object]) -> Settings:
    data: dict[str, dict[str, object]] = {"cluster": {"state_dir": str(tmp_path / "state")}}
    for key, value in sections.items():
        merged = dict(data.get(key, {}))
        merged.update(value)
        data[key] = merged
    return settings_from_dict(data)


def _facts(**over: object) -> PreflightFacts:
    base: dict[str, object] = dict(
        cpus=4,
        memory_total_mb=16384,
        memory_available_mb=12000,
        nic_mbps=1000,
        disk_path=Path("/var/lib/conduitctl"),
        disk_free_bytes=50 * 1024**3,
        file_max=10**7,
        nr_open=1_048_576,
        somaxconn=4096,
        nofile_hard=1_048_576,
        can_raise_nofile=False,
        ephemeral=(32768, 60999),
        docker=DockerFact(
            True,
            "24.0.7",
            image="ghcr.io/psiphon-inc/conduit/cli:latest",
            image_present=True,
            nofile_hard=1_048_576,
        ),
        cgroup_version=2,
        clock=ClockFact("timedatectl", True),
    )
    base.update(over)
    return PreflightFacts(**base)  # type: ignore[arg-type]


def test_evaluate_a_healthy_host_passes(tmp_path: Path) -> None:
    settings = _settings(tmp_path, cluster={"containers": 2})
    checks = evaluate(settings, _facts())
    assert [c for c in checks if c.status != "pass"] == []
    assert {"memory", "disk", "docker", "image", "container.nofile", "clock sync"} <= {
        c.name for c in checks
    }


def test_evaluate_default_nofile_against_a_20000_hard_limit(tmp_path: Path) -> None:
    settings = _settings(tmp_path, cluster={"containers": 2})
    docker = DockerFact(True, "20.10.24", image="x", image_present=True, nofile_hard=20000)
    checks = {c.name: c for c in evaluate(settings, _facts(docker=docker))}
    assert checks["container.nofile"].status == "fail"
    assert "65536" in checks["container.nofile"].detail


def test_evaluate_skips_docker_for_the_process_runtime(tmp_path: Path) -> None:
    settings = _settings(tmp_path, cluster={"runtime": "process", "containers": 2})
    names = {c.name for c in evaluate(settings, _facts(docker=None))}
    assert "docker" not in names and "image" not in names


def test_evaluate_memory_over_the_host_fails(tmp_path: Path) -> None:
    settings = _settings(tmp_path, cluster={"containers": 8})  # 2,000 Conduit clients
    checks = {
        c.name: c
        for c in evaluate(settings, _facts(memory_total_mb=4096, memory_available_mb=3500))
    }
    assert checks["memory"].status == "fail"


def test_report_ok_and_dict() -> None:
    report = PreflightReport((Check("a", "pass", ""), Check("b", "warn", "")))
    assert report.ok and report.to_dict()["counts"] == {"pass": 1, "warn": 1, "fail": 0}
    assert not PreflightReport((Check("a", "fail", "x", "y"),)).ok


@pytest.mark.parametrize(("notifiers", "mode"), [([], 0o644), (["tgram://TOKEN/CHAT"], 0o600)])
def test_backup_mode(tmp_path: Path, notifiers: list[str], mode: int) -> None:
    config = tmp_path / "conduit.toml"
    config.write_text("# test\n")
    settings = _settings(tmp_path, alerts={"notifiers": notifiers})
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    check, path = backup_config(settings, config, now)
    assert check.status == "pass" and path is not None
    assert path == tmp_path / "state" / "backups" / "conduit.toml.20250102T030405Z"
    assert os.stat(path).st_mode & 0o777 == mode
    _, again = backup_config(settings, config, now)
    assert again is not None and again != path and again.read_text() == "# test\n"


def test_run_preflight_with_facts_writes_only_the_backup(tmp_path: Path) -> None:
    config = tmp_path / "conduit.toml"
    config.write_text("")
    settings = _settings(tmp_path, cluster={"containers": 2})
    report = run_preflight(settings, config, facts=_facts())
    assert report.ok and report.backup_path is not None
    assert report.checks[-1].name == "settings backup"
    assert sorted(p.name for p in (tmp_path / "state").rglob("*")) == [
        "backups",
        report.backup_path.name,
    ]

"""Each preflight rule's finding and the fix it prints: kernel limits, who grants the
open-files limits, cgroups, the clock, and the checklist's order. Over hand-built facts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from preflight_helpers import NGINX, TAKEN, by_name, facts_of, settings_of, sim_behind_nginx

from conduitctl.preflight_facts import (
    ClockFact,
    DockerFact,
    FrontToolFact,
    PortFact,
    PreflightFacts,
)
from conduitctl.preflight_rules import (
    Check,
    check_cgroup,
    check_clock,
    check_container_nofile,
    check_ephemeral,
    check_file_max,
    check_front_nofile,
    check_nr_open,
    check_somaxconn,
    evaluate,
)
from conduitctl.render.sysctl import plan as sysctl_plan
from conduitctl.settings import Settings

DOCKERD_HINT = (
    "raise dockerd's limit (LimitNOFILE= in docker.service, or `ulimit -Hn` where dockerd starts)"
)
CONDUITCTL_HINT = (
    "raise the hard limit conduitctl starts with (ulimit -Hn, or LimitNOFILE= in the "
    "conduitctl systemd unit)"
)


# --- kernel limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ports", "ephemeral", "reserved", "want"),
    [
        (
            [40000, 40001, 40005],
            (32768, 60999),
            "",
            Check(
                "ephemeral range",
                "warn",
                "ports 40000-40001,40005 lie inside the ephemeral range 32768-60999: an outgoing "
                "connection may take one before a restarting backend binds it",
                "sysctl -w net.ipv4.ip_local_reserved_ports=40000-40001,40005 (persist it: "
                "conduitctl render sysctl), or move the port bases below 32768",
            ),
        ),
        (
            [40000, 40001],
            (32768, 60999),
            "40000",  # one already reserved: only the other is exposed; the fix keeps both
            Check(
                "ephemeral range",
                "warn",
                "ports 40001 lie inside the ephemeral range 32768-60999: an outgoing "
                "connection may take one before a restarting backend binds it",
                "sysctl -w net.ipv4.ip_local_reserved_ports=40000-40001 (persist it: "
                "conduitctl render sysctl), or move the port bases below 32768",
            ),
        ),
        (
            [28000],
            (32768, 60999),
            "",
            Check(
                "ephemeral range", "pass", "no fleet port inside the ephemeral range 32768-60999"
            ),
        ),
        (
            [28000],
            None,
            "",
            Check("ephemeral range", "warn", "cannot read net.ipv4.ip_local_port_range"),
        ),
    ],
)
def test_ephemeral_range_fix_reserves_the_ports(
    ports: list[int], ephemeral: tuple[int, int] | None, reserved: str, want: Check
) -> None:
    assert check_ephemeral(ports, ephemeral, reserved) == want


def test_somaxconn() -> None:
    assert check_somaxconn(128) == Check(
        "net.core.somaxconn",
        "warn",
        "128 < 4096: accept queues overflow when clients reconnect at once",
        "sysctl -w net.core.somaxconn=4096 (persist: conduitctl render sysctl)",
    )
    assert check_somaxconn(None) == Check(
        "net.core.somaxconn", "warn", "cannot read net.core.somaxconn"
    )
    assert check_somaxconn(65535) == Check("net.core.somaxconn", "pass", "65535")


def test_file_max() -> None:
    assert check_file_max(100_000, 600_000) == Check(
        "fs.file-max",
        "warn",
        "100000 < 600000 open files the fleet may hold (every backend and the front at their "
        "nofile limit, plus the system)",
        "sysctl -w fs.file-max=600000 (persist: conduitctl render sysctl)",
    )
    assert check_file_max(None, 600_000) == Check("fs.file-max", "warn", "cannot read fs.file-max")
    assert check_file_max(10**6, 600_000) == Check(
        "fs.file-max", "pass", "1000000 >= 600000 the fleet may hold"
    )


def test_evaluate_asks_file_max_for_what_the_sysctl_plan_needs() -> None:
    settings = sim_behind_nginx()
    needed = sysctl_plan(settings).files
    check = by_name(evaluate(settings, facts_of(file_max=1000)))["fs.file-max"]
    assert check.status == "warn"
    assert check.fix == f"sysctl -w fs.file-max={needed} (persist: conduitctl render sysctl)"


@pytest.mark.parametrize(
    ("nr_open", "container", "front", "want"),
    [
        (
            32768,
            65536,
            None,
            Check(
                "fs.nr_open",
                "fail",
                "32768 < 65536: no process may open that many files (container.nofile / "
                "front.nofile)",
                "sysctl -w fs.nr_open=65536, or lower container.nofile / front.nofile",
            ),
        ),
        (
            100_000,
            65536,
            200_000,  # the front's limit is the larger: it decides
            Check(
                "fs.nr_open",
                "fail",
                "100000 < 200000: no process may open that many files (container.nofile / "
                "front.nofile)",
                "sysctl -w fs.nr_open=200000, or lower container.nofile / front.nofile",
            ),
        ),
        (None, 1024, None, Check("fs.nr_open", "warn", "cannot read fs.nr_open")),
        (1_048_576, 65536, 65536, Check("fs.nr_open", "pass", "1048576 >= 65536")),
    ],
)
def test_nr_open(nr_open: int | None, container: int, front: int | None, want: Check) -> None:
    assert check_nr_open(nr_open, container, front) == want


# --- open-files limits: who grants them ------------------------------------------------------


def test_container_nofile_fix_sets_the_grantable_limit() -> None:
    assert check_container_nofile(
        65536, "docker", 20000, "dockerd", raise_hint="raise it"
    ) == Check(
        "container.nofile",
        "fail",
        "container.nofile = 65536 exceeds the hard open-files limit 20000 that dockerd can grant "
        "(docker runtime)",
        "set container.nofile = 20000 in conduit.toml, or raise it",
    )
    assert check_container_nofile(16384, "docker", 20000, "dockerd", raise_hint="") == Check(
        "container.nofile", "pass", "16384 <= dockerd's hard limit 20000"
    )


@pytest.mark.parametrize(
    ("settings", "facts", "want"),
    [
        (
            settings_of(cluster={"containers": 2}),
            facts_of(
                docker=DockerFact(True, "24.0", image="x", image_present=True, nofile_hard=20000)
            ),
            Check(
                "container.nofile",
                "fail",
                "container.nofile = 65536 exceeds the hard open-files limit 20000 that dockerd "
                "can grant (docker runtime)",
                f"set container.nofile = 20000 in conduit.toml, or {DOCKERD_HINT}",
            ),
        ),
        (
            # dockerd's own limit unreadable: judge by what conduitctl itself may grant
            settings_of(cluster={"containers": 2}),
            facts_of(
                docker=DockerFact(True, "24.0", image="x", image_present=True), nofile_hard=20000
            ),
            Check(
                "container.nofile",
                "fail",
                "container.nofile = 65536 exceeds the hard open-files limit 20000 that conduitctl "
                "can grant (docker runtime)",
                f"set container.nofile = 20000 in conduit.toml, or {CONDUITCTL_HINT}",
            ),
        ),
        (
            settings_of(cluster={"runtime": "process", "containers": 2}),
            facts_of(nofile_hard=20000),
            Check(
                "container.nofile",
                "fail",
                "container.nofile = 65536 exceeds the hard open-files limit 20000 that conduitctl "
                "can grant (process runtime)",
                f"set container.nofile = 20000 in conduit.toml, or {CONDUITCTL_HINT}",
            ),
        ),
        (
            # CAP_SYS_RESOURCE: conduitctl may raise its hard limit up to fs.nr_open
            settings_of(cluster={"runtime": "process", "containers": 2}),
            facts_of(nofile_hard=20000, can_raise_nofile=True, nr_open=1_048_576),
            Check(
                "container.nofile",
                "pass",
                "65536 <= conduitctl (CAP_SYS_RESOURCE, up to fs.nr_open)'s hard limit 1048576",
            ),
        ),
    ],
)
def test_evaluate_container_nofile_against_its_granter(
    settings: Settings, facts: PreflightFacts, want: Check
) -> None:
    assert by_name(evaluate(settings, facts))["container.nofile"] == want


def test_front_nofile() -> None:
    assert check_front_nofile(65536, 20000) == Check(
        "front.nofile",
        "warn",
        "front.nofile = 65536 exceeds this process's hard open-files limit 20000: the front "
        "would run with at most 20000",
        "set front.nofile = 20000, or raise the hard limit (ulimit -Hn, LimitNOFILE= in the "
        "conduitctl unit)",
    )
    assert check_front_nofile(16384, 20000) == Check(
        "front.nofile", "pass", "16384 <= hard limit 20000"
    )


@pytest.mark.parametrize(
    ("facts", "status", "detail"),
    [
        (facts_of(nofile_hard=20000), "warn", "front.nofile = 65536 exceeds"),
        (
            facts_of(nofile_hard=20000, can_raise_nofile=True, nr_open=1_048_576),
            "pass",
            "65536 <= hard limit 1048576",
        ),
    ],
)
def test_evaluate_front_nofile_against_what_conduitctl_may_grant(
    facts: PreflightFacts, status: str, detail: str
) -> None:
    check = by_name(evaluate(sim_behind_nginx(), facts))["front.nofile"]
    assert check.status == status and check.detail.startswith(detail)


def test_evaluate_without_a_front_has_no_front_checks() -> None:
    names = {c.name for c in evaluate(settings_of(cluster={"containers": 2}), facts_of())}
    assert not {"front.nofile", "front nginx", "front haproxy", "nginx stream module"} & names


# --- cgroups and the clock -------------------------------------------------------------------

CGROUP_FIX = (
    "run conduitctl as root on a host with a writable cgroup hierarchy, or use "
    'cluster.runtime = "docker"'
)


@pytest.mark.parametrize(
    ("version", "runtime", "path", "writable", "want"),
    [
        (
            2,
            "process",
            Path("/sys/fs/cgroup"),
            False,
            Check(
                "cgroup",
                "warn",
                "cgroup v2; the memory controller at /sys/fs/cgroup is not writable: process "
                "backends run without a memory limit",
                CGROUP_FIX,
            ),
        ),
        (
            1,
            "process",
            None,
            None,
            Check(
                "cgroup",
                "warn",
                "cgroup v1; the memory controller at ? is not writable: process backends run "
                "without a memory limit",
                CGROUP_FIX,
            ),
        ),
        (
            1,
            "process",
            Path("/sys/fs/cgroup/memory/conduitctl"),
            True,
            Check(
                "cgroup",
                "pass",
                "cgroup v1; memory controller writable at /sys/fs/cgroup/memory/conduitctl",
            ),
        ),
        (
            2,
            "docker",
            None,
            False,
            Check("cgroup", "pass", "cgroup v2 (docker enforces container memory limits)"),
        ),
    ],
)
def test_cgroup(
    version: int, runtime: str, path: Path | None, writable: bool | None, want: Check
) -> None:
    assert check_cgroup(version, runtime, path, writable) == want


NTP_FIX = "run an NTP client (systemd-timesyncd or chrony); alerts and TLS need a true clock"


@pytest.mark.parametrize(
    ("fact", "want"),
    [
        (
            ClockFact(None, None, "timedatectl does not answer; no chronyc"),
            Check(
                "clock sync",
                "warn",
                "cannot tell whether the clock is synchronized (timedatectl does not answer; "
                "no chronyc)",
                NTP_FIX,
            ),
        ),
        (
            ClockFact(None, None),
            Check(
                "clock sync",
                "warn",
                "cannot tell whether the clock is synchronized (no tool answered)",
                NTP_FIX,
            ),
        ),
        (
            ClockFact("chronyc", False, "Not synchronised"),
            Check(
                "clock sync",
                "warn",
                "chronyc: the clock is not synchronized (Not synchronised)",
                "timedatectl set-ntp true (or start chronyd)",
            ),
        ),
        (ClockFact("timedatectl", True), Check("clock sync", "pass", "synchronized (timedatectl)")),
    ],
)
def test_clock(fact: ClockFact, want: Check) -> None:
    assert check_clock(fact) == want


# --- the whole checklist ---------------------------------------------------------------------


def test_evaluate_order_is_the_reports_order() -> None:
    facts = facts_of(
        front_tool=FrontToolFact("nginx", NGINX, "configure arguments: --with-stream"),
        listen_ports=(PortFact("tcp:127.0.0.1:18443", "tcp", "127.0.0.1", 18443),),
        backend_ports=(PortFact("metrics tcp:127.0.0.1:29100", "tcp", "127.0.0.1", 29100, TAKEN),),
    )
    checks = evaluate(sim_behind_nginx(), facts)
    assert [c.name for c in checks] == [
        "memory",
        "disk",
        "front nginx",
        "nginx stream module",
        "port tcp:127.0.0.1:18443",
        "port metrics tcp:127.0.0.1:29100",
        "ephemeral range",
        "net.core.somaxconn",
        "fs.file-max",
        "fs.nr_open",
        "container.nofile",
        "front.nofile",
        "cgroup",
        "clock sync",
    ]
    backend = checks[5]
    assert backend.status == "fail"
    assert backend.detail == (
        "backend port 29100/tcp on 127.0.0.1 is taken (Address already in use)"
    )

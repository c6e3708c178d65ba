"""Each preflight rule's finding and the fix it prints: memory, disk, docker, the front's
binary, ports. Over hand-built facts; no host is read.

test_preflight_rules.py tables the statuses; these pin the words an operator reads.
"""

from __future__ import annotations

import pytest
from preflight_helpers import NGINX, STATE, TAKEN, by_name, facts_of, settings_of

from conduitctl.preflight_facts import DockerFact, FrontToolFact, Holder, PortFact
from conduitctl.preflight_rules import (
    MIB,
    Check,
    backend_ports,
    check_disk,
    check_docker,
    check_front_tool,
    check_memory,
    check_nginx_stream,
    check_port,
    evaluate,
    expected_ram,
)
from conduitctl.settings import Settings

STREAM_SO = "/usr/lib/nginx/modules/ngx_stream_module.so"
NGINX_STREAM_FIX = "apt-get install libnginx-mod-stream (or an nginx built --with-stream)"


# --- memory and disk -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "total", "available", "want"),
    [
        (
            8192,
            4096,
            4000,
            Check(
                "memory",
                "fail",
                "the fleet may use 8.0 GiB RAM (basis); the host has 4.0 GiB in all",
                "lower workload.max_clients or cluster.containers (see `conduitctl plan`)",
            ),
        ),
        (
            2048,
            4096,
            1000,
            Check(
                "memory",
                "warn",
                "the fleet may use 2.0 GiB RAM (basis); only 1000 MiB of 4.0 GiB is available now",
                "stop what else uses memory, or lower workload.max_clients",
            ),
        ),
        (
            512,
            4096,
            3000,
            Check(
                "memory",
                "pass",
                "the fleet may use 512 MiB RAM (basis); 2.9 GiB of 4.0 GiB available",
            ),
        ),
    ],
)
def test_memory_says_how_much_and_what_to_lower(
    expected: float, total: float, available: float, want: Check
) -> None:
    assert check_memory(expected, total, available, "basis") == want


DISK_FIX = f"free space on that filesystem or set cluster.state_dir elsewhere (df -h {STATE})"


@pytest.mark.parametrize(
    ("free", "want"),
    [
        (None, Check("disk", "warn", f"cannot read free space of {STATE}", "check `df -h`")),
        (
            199 * MIB,
            Check(
                "disk", "fail", f"199 MiB free on the filesystem of {STATE} (< 200 MiB)", DISK_FIX
            ),
        ),
        (
            1023 * MIB,
            Check(
                "disk", "warn", f"1023 MiB free on the filesystem of {STATE} (< 1 GiB)", DISK_FIX
            ),
        ),
        (2 * 1024 * MIB, Check("disk", "pass", f"2.0 GiB free on the filesystem of {STATE}")),
    ],
)
def test_disk_names_the_filesystem_and_the_fix(free: int | None, want: Check) -> None:
    assert check_disk(STATE, free) == want


def test_expected_ram_of_a_simulator_is_its_memory_limits() -> None:
    settings = settings_of(cluster={"containers": 3}, workload={"profile": "sim"})
    assert expected_ram(settings, facts_of()) == (3 * 512, "3 x container.memory 512 MiB")


def test_expected_ram_of_conduit_is_the_planners() -> None:
    settings = settings_of(cluster={"containers": 2})
    assert expected_ram(settings, facts_of()) == (4176, "plan: 2 x 250 clients")


def test_evaluate_memory_of_a_simulator_over_the_host_fails() -> None:
    settings = settings_of(cluster={"containers": 3}, workload={"profile": "sim"})
    facts = facts_of(memory_total_mb=1024, memory_available_mb=900)
    memory = by_name(evaluate(settings, facts))["memory"]
    assert memory.status == "fail"
    assert memory.detail == (
        "the fleet may use 1.5 GiB RAM (3 x container.memory 512 MiB); the host has 1.0 GiB in all"
    )
    assert memory.fix == "lower workload.max_clients or cluster.containers (see `conduitctl plan`)"


# --- docker and the image --------------------------------------------------------------------

START_DOCKERD = (
    "start dockerd (systemctl start docker, or dockerd --bridge=none --iptables=false), "
    'or set cluster.runtime = "process"'
)


@pytest.mark.parametrize(
    ("fact", "want"),
    [
        (
            DockerFact(reachable=False, error="ConnectionError: refused"),
            [
                Check(
                    "docker",
                    "fail",
                    "dockerd does not answer (ConnectionError: refused)",
                    START_DOCKERD,
                )
            ],
        ),
        (
            DockerFact(reachable=False),
            [Check("docker", "fail", "dockerd does not answer (no reply)", START_DOCKERD)],
        ),
        (
            DockerFact(True, "19.03.1", image="x", image_present=True),
            [
                Check("docker", "warn", "dockerd 19.03.1 is older than 20.x", "upgrade docker"),
                Check("image", "pass", "x is present locally"),
            ],
        ),
        (
            DockerFact(True, None, image=None),
            [
                Check("docker", "pass", "dockerd unknown answers"),
                Check("image", "fail", "no image for this profile", "set workload.image"),
            ],
        ),
        (
            DockerFact(True, "24.0.5", error="ReadTimeout: 10s", image="x", image_present=None),
            [
                Check("docker", "pass", "dockerd 24.0.5 answers"),
                Check("image", "warn", "could not ask dockerd for x (ReadTimeout: 10s)"),
            ],
        ),
        (
            DockerFact(True, "24.0.5", image="conduit-sim:local", image_present=False),
            [
                Check("docker", "pass", "dockerd 24.0.5 answers"),
                Check(
                    "image",
                    "fail",
                    "conduit-sim:local is not present locally (preflight never pulls)",
                    "docker pull conduit-sim:local (or `conduitctl sim build` for "
                    "conduit-sim:local), or set workload.pull = true",
                ),
            ],
        ),
    ],
)
def test_docker_findings_and_fixes(fact: DockerFact, want: list[Check]) -> None:
    assert check_docker(fact) == want


# --- the front's binary and nginx's stream module --------------------------------------------


@pytest.mark.parametrize(
    ("fact", "want"),
    [
        (
            FrontToolFact("nginx", None),
            Check(
                "front nginx",
                "fail",
                "nginx not found",
                'apt-get install nginx libnginx-mod-stream (or set front.kind = "none")',
            ),
        ),
        (
            FrontToolFact("haproxy", None),
            Check(
                "front haproxy",
                "fail",
                "haproxy not found",
                'apt-get install haproxy (or set front.kind = "none")',
            ),
        ),
        (
            FrontToolFact("haproxy", "/usr/sbin/haproxy", "HAProxy version 2.6.12\nStatus: x\n"),
            Check("front haproxy", "pass", "/usr/sbin/haproxy: HAProxy version 2.6.12"),
        ),
        (
            FrontToolFact("haproxy", "/usr/sbin/haproxy", None),
            Check("front haproxy", "pass", "/usr/sbin/haproxy: version unknown"),
        ),
    ],
)
def test_front_tool_names_the_package(fact: FrontToolFact, want: Check) -> None:
    assert check_front_tool(fact)[0] == want


@pytest.mark.parametrize(
    ("version_output", "so_exists", "want"),
    [
        (
            "configure arguments: --with-stream=dynamic",
            False,
            Check(
                "nginx stream module",
                "fail",
                f"nginx has no stream module built in and {STREAM_SO} is missing",
                NGINX_STREAM_FIX,
            ),
        ),
        (
            None,
            False,
            Check(
                "nginx stream module",
                "fail",
                f"nginx has no stream module built in and {STREAM_SO} is missing",
                NGINX_STREAM_FIX,
            ),
        ),
        (
            "configure arguments: --with-stream=dynamic",
            True,
            Check("nginx stream module", "pass", f"loadable module {STREAM_SO}"),
        ),
        (
            "configure arguments: --with-stream --with-http_ssl_module",
            False,
            Check("nginx stream module", "pass", "built in (--with-stream)"),
        ),
    ],
)
def test_nginx_stream_module(version_output: str | None, so_exists: bool, want: Check) -> None:
    fact = FrontToolFact("nginx", NGINX, version_output, stream_so_exists=so_exists)
    assert check_nginx_stream(fact) == want


def test_nginx_stream_module_names_the_so_it_looked_for() -> None:
    fact = FrontToolFact("nginx", NGINX, "", stream_so="/opt/ngx_stream.so")
    assert check_nginx_stream(fact).detail == (
        "nginx has no stream module built in and /opt/ngx_stream.so is missing"
    )


# --- ports -----------------------------------------------------------------------------------


def test_a_taken_port_names_its_holders_once_and_how_to_find_them() -> None:
    holders = (Holder(812, "caddy"), Holder(812, "caddy"), Holder(None, None))
    fact = PortFact("tcp:0.0.0.0:443", "tcp", "0.0.0.0", 443, TAKEN, holders)
    assert check_port(fact, {}) == Check(
        "port tcp:0.0.0.0:443",
        "fail",
        "front listener 443/tcp on 0.0.0.0 is taken (Address already in use) by caddy (pid 812)",
        "stop what holds port 443 (ss -lntup 'sport = :443') or pick another",
    )


def test_a_taken_port_with_unknown_holders_says_only_taken() -> None:
    fact = PortFact("udp:127.0.0.1:5566", "udp", "127.0.0.1", 5566, TAKEN, (Holder(None, None),))
    check = check_port(fact, {})
    assert check.detail == "front listener 5566/udp on 127.0.0.1 is taken (Address already in use)"
    assert check.fix == "stop what holds port 5566 (ss -lntup 'sport = :5566') or pick another"


def test_backend_ports_are_called_backend_ports() -> None:
    free = PortFact("metrics tcp:127.0.0.1:29100", "tcp", "127.0.0.1", 29100)
    assert check_port(free, {}, what="backend port") == Check(
        "port metrics tcp:127.0.0.1:29100", "pass", "backend port 29100/tcp on 127.0.0.1 is free"
    )


@pytest.mark.parametrize(
    ("settings", "ports"),
    [
        (settings_of(cluster={"containers": 2}), [29100, 29101]),  # Conduit listens on nothing
        (
            settings_of(cluster={"containers": 2}, workload={"profile": "sim"}),
            [29100, 29101, 28000, 28001],
        ),
    ],
)
def test_backend_ports(settings: Settings, ports: list[int]) -> None:
    assert backend_ports(settings) == ports


def test_settings_backups_are_pruned_to_the_newest(tmp_path):
    from conduitctl.ops.preflight import prune_backups

    for n in range(25):
        (tmp_path / f"conduit.toml.20261201T0000{n:02d}Z").write_text("x")
    (tmp_path / "other.file").write_text("kept")
    removed = prune_backups(tmp_path, "conduit.toml", keep=20)
    assert [p.name for p in removed] == [f"conduit.toml.20261201T0000{n:02d}Z" for n in range(5)]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 21 and left[0] == "conduit.toml.20261201T000005Z" and "other.file" in left

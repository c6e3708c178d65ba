"""Hand-built settings and facts for the preflight rule tests (no host is read)."""

from __future__ import annotations

from pathlib import Path

from conduitctl.preflight_facts import ClockFact, PreflightFacts
from conduitctl.preflight_rules import Check
from conduitctl.settings import Settings, settings_from_dict

STATE = Path("/var/lib/conduitctl")
NGINX = "/usr/sbin/nginx"
TAKEN = "Address already in use"


def settings_of(**sections: dict[str, object]) -> Settings:
    data: dict[str, dict[str, object]] = {"cluster": {"state_dir": "/tmp/preflight-unit"}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return settings_from_dict(data)


def sim_behind_nginx(**cluster: object) -> Settings:
    """Two simulator processes behind an nginx front on one loopback listener."""
    return settings_of(
        cluster={"runtime": "process", "containers": 2, **cluster},
        workload={"profile": "sim"},
        front={"kind": "nginx", "listeners": ["tcp:127.0.0.1:18443"]},
    )


def facts_of(**over: object) -> PreflightFacts:
    """A roomy, synchronized host with nothing of the fleet's in sight; `over` changes fields."""
    base: dict[str, object] = dict(
        cpus=4,
        memory_total_mb=16384,
        memory_available_mb=12000,
        nic_mbps=1000,
        disk_path=STATE,
        disk_free_bytes=50 * 1024**3,
        file_max=10**7,
        nr_open=1_048_576,
        somaxconn=4096,
        nofile_hard=1_048_576,
        can_raise_nofile=False,
        ephemeral=(32768, 60999),
        clock=ClockFact("timedatectl", True),
    )
    base.update(over)
    return PreflightFacts(**base)  # type: ignore[arg-type]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}

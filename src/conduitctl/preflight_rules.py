"""The preflight rules (core, pure): settings + facts about the host in, checks out.

Each `check_*` rule judges one fact and, when it does not pass, says how to fix it.
`evaluate()` runs every rule over `PreflightFacts` (read by `observe/machine.py`, or built
by hand in tests). A check is `pass`, `warn` or `fail`; the report is ok unless one fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from conduitctl.capacity import PlanInput, make_plan
from conduitctl.preflight_facts import (
    ClockFact,
    DockerFact,
    FrontToolFact,
    Holder,
    PortFact,
    PreflightFacts,
)
from conduitctl.render.sysctl import plan as sysctl_plan
from conduitctl.settings import Settings, hardening_warnings

Status = Literal["pass", "warn", "fail"]

MIB = 1024**2
DISK_WARN_BYTES = 1024 * MIB
DISK_FAIL_BYTES = 200 * MIB
SOMAXCONN_MIN = 4096
DOCKER_MIN_MAJOR = 20


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class PreflightReport:
    checks: tuple[Check, ...]
    backup_path: Path | None = None

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in ("pass", "warn", "fail")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": self.counts(),
            "backup_path": str(self.backup_path) if self.backup_path else None,
            "checks": [c.to_dict() for c in self.checks],
        }


def _mb(n: float) -> str:
    return f"{n / 1024:.1f} GiB" if n >= 1024 else f"{n:.0f} MiB"


def check_memory(expected_mb: float, total_mb: float, available_mb: float, basis: str) -> Check:
    """The plan's expected RAM against the host's total (fail) and what is free now (warn)."""
    need = f"the fleet may use {_mb(expected_mb)} RAM ({basis})"
    if expected_mb > total_mb:
        return Check(
            "memory",
            "fail",
            f"{need}; the host has {_mb(total_mb)} in all",
            "lower workload.max_clients or cluster.containers (see `conduitctl plan`)",
        )
    if expected_mb > available_mb:
        return Check(
            "memory",
            "warn",
            f"{need}; only {_mb(available_mb)} of {_mb(total_mb)} is available now",
            "stop what else uses memory, or lower workload.max_clients",
        )
    return Check("memory", "pass", f"{need}; {_mb(available_mb)} of {_mb(total_mb)} available")


def check_disk(path: Path, free_bytes: int | None) -> Check:
    if free_bytes is None:
        return Check("disk", "warn", f"cannot read free space of {path}", "check `df -h`")
    detail = f"{_mb(free_bytes / MIB)} free on the filesystem of {path}"
    fix = f"free space on that filesystem or set cluster.state_dir elsewhere (df -h {path})"
    if free_bytes < DISK_FAIL_BYTES:
        return Check("disk", "fail", f"{detail} (< {DISK_FAIL_BYTES // MIB} MiB)", fix)
    if free_bytes < DISK_WARN_BYTES:
        return Check("disk", "warn", f"{detail} (< 1 GiB)", fix)
    return Check("disk", "pass", detail)


def check_docker(fact: DockerFact) -> list[Check]:
    """dockerd answers and is recent enough; the image is present locally (or will be pulled)."""
    if not fact.reachable:
        return [
            Check(
                "docker",
                "fail",
                f"dockerd does not answer ({fact.error or 'no reply'})",
                "start dockerd (systemctl start docker, or dockerd --bridge=none "
                '--iptables=false), or set cluster.runtime = "process"',
            )
        ]
    version = fact.version or "unknown"
    major = _major(version)
    if major is not None and major < DOCKER_MIN_MAJOR:
        out = [
            Check(
                "docker",
                "warn",
                f"dockerd {version} is older than {DOCKER_MIN_MAJOR}.x",
                "upgrade docker",
            )
        ]
    else:
        out = [Check("docker", "pass", f"dockerd {version} answers")]
    if fact.image is None:
        out.append(Check("image", "fail", "no image for this profile", "set workload.image"))
    elif fact.image_present is None:
        out.append(Check("image", "warn", f"could not ask dockerd for {fact.image} ({fact.error})"))
    elif fact.image_present:
        out.append(Check("image", "pass", f"{fact.image} is present locally"))
    else:
        out.append(
            Check(
                "image",
                "fail",
                f"{fact.image} is not present locally (preflight never pulls)",
                f"docker pull {fact.image} (or `conduitctl sim build` for conduit-sim:local), "
                "or set workload.pull = true",
            )
        )
    return out


def _major(version: str) -> int | None:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def check_front_tool(fact: FrontToolFact) -> list[Check]:
    install = (
        "apt-get install nginx libnginx-mod-stream"
        if fact.kind == "nginx"
        else "apt-get install haproxy"
    )
    if fact.path is None:
        return [
            Check(
                f"front {fact.kind}",
                "fail",
                f"{fact.kind} not found",
                f'{install} (or set front.kind = "none")',
            )
        ]
    first = (fact.version_output or "").strip().splitlines()
    version = first[0].strip() if first else "version unknown"
    out = [Check(f"front {fact.kind}", "pass", f"{fact.path}: {version}")]
    if fact.kind == "nginx":
        out.append(check_nginx_stream(fact))
    return out


def check_nginx_stream(fact: FrontToolFact) -> Check:
    """The stream module: built in (`--with-stream`), or a loadable .so that exists."""
    v = fact.version_output or ""
    fix = "apt-get install libnginx-mod-stream (or an nginx built --with-stream)"
    if "--with-stream=dynamic" in v or "--with-stream" not in v:
        if fact.stream_so_exists:
            return Check("nginx stream module", "pass", f"loadable module {fact.stream_so}")
        return Check(
            "nginx stream module",
            "fail",
            f"nginx has no stream module built in and {fact.stream_so} is missing",
            fix,
        )
    return Check("nginx stream module", "pass", "built in (--with-stream)")


def _holder_text(holders: Iterable[Holder]) -> str:
    named = [f"{h.name or '?'} (pid {h.pid})" for h in holders if h.pid is not None]
    return ", ".join(dict.fromkeys(named))


def check_port(fact: PortFact, own_pids: dict[int, str], *, what: str = "front listener") -> Check:
    """A taken port fails, naming who holds it; held by this cluster's own process: a pass."""
    name = f"port {fact.label}"
    if fact.error is None:
        return Check(name, "pass", f"{what} {fact.port}/{fact.proto} on {fact.host} is free")
    ours = [own_pids[h.pid] + f", pid {h.pid}" for h in fact.holders if h.pid in own_pids]
    if ours:
        held = "; ".join(dict.fromkeys(ours))
        return Check(name, "pass", f"{what} {fact.port}/{fact.proto} held by {held}")
    who = _holder_text(fact.holders)
    detail = f"{what} {fact.port}/{fact.proto} on {fact.host} is taken ({fact.error})"
    if who:
        detail += f" by {who}"
    fix = f"stop what holds port {fact.port} (ss -lntup 'sport = :{fact.port}') or pick another"
    return Check(name, "fail", detail, fix)


def _spans(ports: Iterable[int]) -> list[tuple[int, int]]:
    spans: list[list[int]] = []
    for p in sorted(set(ports)):
        if spans and spans[-1][1] == p - 1:
            spans[-1][1] = p
        else:
            spans.append([p, p])
    return [(a, b) for a, b in spans]


def parse_port_list(text: str) -> set[int]:
    """`ip_local_reserved_ports` syntax, `8080,28000-28007`, as a set of ports."""
    ports: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        with contextlib.suppress(ValueError):
            ports.update(range(int(lo), int(hi or lo) + 1))
    return ports


def check_ephemeral(
    ports: Iterable[int], ephemeral: tuple[int, int] | None, reserved: str
) -> Check:
    """Listening ports inside the kernel's ephemeral range can be taken by an outgoing socket."""
    name = "ephemeral range"
    if ephemeral is None:
        return Check(name, "warn", "cannot read net.ipv4.ip_local_port_range")
    lo, hi = ephemeral
    exposed = [p for p in ports if lo <= p <= hi and p not in parse_port_list(reserved)]
    if not exposed:
        return Check(name, "pass", f"no fleet port inside the ephemeral range {lo}-{hi}")
    text = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in _spans(exposed))
    return Check(
        name,
        "warn",
        f"ports {text} lie inside the ephemeral range {lo}-{hi}: an outgoing connection may "
        "take one before a restarting backend binds it",
        f"sysctl -w net.ipv4.ip_local_reserved_ports={_merge_reserved(reserved, text)} "
        "(persist it: conduitctl render sysctl), or move the port bases below "
        f"{lo}",
    )


def _merge_reserved(reserved: str, extra: str) -> str:
    merged = parse_port_list(reserved) | parse_port_list(extra)
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in _spans(merged))


def check_somaxconn(value: int | None) -> Check:
    name = "net.core.somaxconn"
    if value is None:
        return Check(name, "warn", "cannot read net.core.somaxconn")
    if value < SOMAXCONN_MIN:
        return Check(
            name,
            "warn",
            f"{value} < {SOMAXCONN_MIN}: accept queues overflow when clients reconnect at once",
            f"sysctl -w net.core.somaxconn={SOMAXCONN_MIN} (persist: conduitctl render sysctl)",
        )
    return Check(name, "pass", f"{value}")


def check_file_max(file_max: int | None, needed: int) -> Check:
    name = "fs.file-max"
    if file_max is None:
        return Check(name, "warn", "cannot read fs.file-max")
    if file_max < needed:
        return Check(
            name,
            "warn",
            f"{file_max} < {needed} open files the fleet may hold (every backend and the front "
            "at their nofile limit, plus the system)",
            f"sysctl -w fs.file-max={needed} (persist: conduitctl render sysctl)",
        )
    return Check(name, "pass", f"{file_max} >= {needed} the fleet may hold")


def check_nr_open(nr_open: int | None, container_nofile: int, front_nofile: int | None) -> Check:
    name = "fs.nr_open"
    want = max(container_nofile, front_nofile or 0)
    if nr_open is None:
        return Check(name, "warn", "cannot read fs.nr_open")
    if nr_open < want:
        return Check(
            name,
            "fail",
            f"{nr_open} < {want}: no process may open that many files (container.nofile / "
            "front.nofile)",
            f"sysctl -w fs.nr_open={want}, or lower container.nofile / front.nofile",
        )
    return Check(name, "pass", f"{nr_open} >= {want}")


def check_container_nofile(
    nofile: int, runtime: str, grant: int, granter: str, *, raise_hint: str
) -> Check:
    """container.nofile must fit under the hard limit dockerd (or conduitctl) can grant."""
    name = "container.nofile"
    if nofile > grant:
        return Check(
            name,
            "fail",
            f"container.nofile = {nofile} exceeds the hard open-files limit {grant} that "
            f"{granter} can grant ({runtime} runtime)",
            f"set container.nofile = {grant} in conduit.toml, or {raise_hint}",
        )
    return Check(name, "pass", f"{nofile} <= {granter}'s hard limit {grant}")


def check_front_nofile(nofile: int, grant: int) -> Check:
    name = "front.nofile"
    if nofile > grant:
        return Check(
            name,
            "warn",
            f"front.nofile = {nofile} exceeds this process's hard open-files limit {grant}: "
            f"the front would run with at most {grant}",
            f"set front.nofile = {grant}, or raise the hard limit (ulimit -Hn, LimitNOFILE= in "
            "the conduitctl unit)",
        )
    return Check(name, "pass", f"{nofile} <= hard limit {grant}")


def check_cgroup(
    version: int, runtime: str, memory_path: Path | None, writable: bool | None
) -> Check:
    name = "cgroup"
    base = f"cgroup v{version}"
    if runtime != "process":
        return Check(name, "pass", f"{base} (docker enforces container memory limits)")
    if writable:
        return Check(name, "pass", f"{base}; memory controller writable at {memory_path}")
    return Check(
        name,
        "warn",
        f"{base}; the memory controller at {memory_path or '?'} is not writable: process "
        "backends run without a memory limit",
        "run conduitctl as root on a host with a writable cgroup hierarchy, or use "
        'cluster.runtime = "docker"',
    )


def check_clock(fact: ClockFact) -> Check:
    name = "clock sync"
    if fact.synced is None:
        return Check(
            name,
            "warn",
            f"cannot tell whether the clock is synchronized ({fact.detail or 'no tool answered'})",
            "run an NTP client (systemd-timesyncd or chrony); alerts and TLS need a true clock",
        )
    if not fact.synced:
        return Check(
            name,
            "warn",
            f"{fact.source}: the clock is not synchronized ({fact.detail})",
            "timedatectl set-ntp true (or start chronyd)",
        )
    return Check(name, "pass", f"synchronized ({fact.source})")


def expected_ram(settings: Settings, facts: PreflightFacts) -> tuple[float, str]:
    """(expected RAM MiB, basis): the planner's for Conduit, the memory limits otherwise.

    The planner's RAM per client is Psiphon's sizing guidance for Conduit; the simulator and
    generic proxies have no such guidance, so their bound is what the kernel lets them take.
    """
    n = settings.cluster.containers
    if settings.workload.profile != "psiphon-conduit":
        limit_mb = n * settings.container.memory / MIB
        return limit_mb, f"{n} x container.memory {_mb(settings.container.memory / MIB)}"
    plan = make_plan(
        PlanInput(
            cpus=max(facts.cpus, 1),
            memory_gb=max(facts.memory_total_mb / 1024, 0.01),
            nic_mbps=facts.nic_mbps,
            sustained_fraction=settings.host.sustained_fraction,
            duplex=settings.host.duplex,
            front=settings.front.enabled,
            nofile=settings.container.nofile,
            file_max=facts.file_max,
            containers=n,
            max_clients=settings.workload.max_clients,
        )
    )
    basis = f"plan: {plan.containers} x {plan.max_clients_per_container} clients"
    return plan.expected["ram_mb"], basis


def evaluate(settings: Settings, facts: PreflightFacts) -> list[Check]:
    """Every check but the backup, from facts already read (pure)."""
    checks: list[Check] = []
    ram_mb, basis = expected_ram(settings, facts)
    checks.append(check_memory(ram_mb, facts.memory_total_mb, facts.memory_available_mb, basis))
    checks.append(check_disk(facts.disk_path, facts.disk_free_bytes))
    if facts.docker is not None:
        checks += check_docker(facts.docker)
    if facts.front_tool is not None:
        checks += check_front_tool(facts.front_tool)
    checks += [check_port(p, facts.own_pids) for p in facts.listen_ports]
    checks += [check_port(p, facts.own_pids, what="backend port") for p in facts.backend_ports]
    checks.append(check_ephemeral(backend_ports(settings), facts.ephemeral, facts.reserved_ports))
    checks.append(check_somaxconn(facts.somaxconn))
    checks.append(check_file_max(facts.file_max, sysctl_plan(settings).files))
    front_nofile = settings.front.nofile if settings.front.enabled else None
    checks.append(check_nr_open(facts.nr_open, settings.container.nofile, front_nofile))
    checks.append(_container_nofile(settings, facts))
    if front_nofile is not None:
        own = facts.nr_open if facts.can_raise_nofile and facts.nr_open else facts.nofile_hard
        checks.append(check_front_nofile(front_nofile, own))
    checks.append(
        check_cgroup(
            facts.cgroup_version,
            settings.cluster.runtime,
            facts.memory_cgroup,
            facts.memory_cgroup_writable,
        )
    )
    checks.append(check_clock(facts.clock))
    checks += [
        Check("hardening", "warn", line, "remove the opt-out unless this host needs it")
        for line in hardening_warnings(settings)
    ]
    return checks


def nofile_grant(
    runtime: str,
    *,
    dockerd_hard: int | None,
    can_raise: bool,
    nr_open: int | None,
    own_hard: int,
) -> tuple[int, str, str]:
    """The most open files a backend can be granted on this host: (limit, who grants it,
    how to raise it). Preflight checks container.nofile against it; init writes within it."""
    if runtime == "docker" and dockerd_hard:
        return dockerd_hard, "dockerd", (
            "raise dockerd's limit (LimitNOFILE= in docker.service, or `ulimit -Hn` where "
            "dockerd starts)"
        )  # fmt: skip
    hint = ("raise the hard limit conduitctl starts with (ulimit -Hn, or LimitNOFILE= in the "
            "conduitctl systemd unit)")  # fmt: skip
    if can_raise and nr_open:
        return nr_open, "conduitctl (CAP_SYS_RESOURCE, up to fs.nr_open)", hint
    return own_hard, "conduitctl", hint


def _container_nofile(settings: Settings, facts: PreflightFacts) -> Check:
    grant, granter, hint = nofile_grant(
        settings.cluster.runtime,
        dockerd_hard=facts.docker.nofile_hard if facts.docker is not None else None,
        can_raise=facts.can_raise_nofile,
        nr_open=facts.nr_open,
        own_hard=facts.nofile_hard,
    )
    return check_container_nofile(
        settings.container.nofile, settings.cluster.runtime, grant, granter, raise_hint=hint
    )


def backend_ports(settings: Settings) -> list[int]:
    n = settings.cluster.containers
    ports = list(
        range(settings.workload.metrics_port_base, settings.workload.metrics_port_base + n)
    )
    if settings.workload.listens:
        base = settings.workload.listen_port_base
        ports += range(base, base + n)
    return ports

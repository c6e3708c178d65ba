"""The pre-deployment checklist: can this host run the fleet conduit.toml describes?

Three layers, so the rules are testable without a host:
- `gather_facts()` (the edge) reads the machine: memory, disk, docker, the front's binary,
  which ports are taken and by whom, kernel limits, cgroups, clock sync. It changes nothing.
- `evaluate()` and the `check_*` rules (pure) turn settings + facts into `Check` values.
- `backup_config()` is the only write: a copy of conduit.toml in STATE_DIR/backups.

A check is `pass`, `warn` or `fail`; the report is ok unless one check fails.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psutil

from conduitctl import labels
from conduitctl.capacity import PlanInput, make_plan
from conduitctl.hostinfo import DEFAULT_NIC_MBPS, NGINX_STREAM_MODULE, host_facts, read_int
from conduitctl.observe.cgroups import CGROUP_ROOT, cgroup_version
from conduitctl.render.check_front import find_tool
from conduitctl.render.sysctl import plan as sysctl_plan
from conduitctl.settings import Settings
from conduitctl.settings_file import holds_secrets

Status = Literal["pass", "warn", "fail"]

MIB = 1024**2
DISK_WARN_BYTES = 1024 * MIB
DISK_FAIL_BYTES = 200 * MIB
SOMAXCONN_MIN = 4096
DOCKER_MIN_MAJOR = 20
CAP_SYS_RESOURCE = 24
TOOL_TIMEOUT = 5.0
BACKUP_DIR = "backups"


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


# --- facts: what the edge reads --------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """A process holding a port (pid None: the kernel would not say, e.g. not root)."""

    pid: int | None
    name: str | None


@dataclass(frozen=True)
class PortFact:
    label: str  # e.g. "tcp:127.0.0.1:443" or "backend listen tcp:127.0.0.1:28001"
    proto: Literal["tcp", "udp"]
    host: str
    port: int
    error: str | None = None  # None: the bind succeeded, the port is free
    holders: tuple[Holder, ...] = ()


@dataclass(frozen=True)
class DockerFact:
    reachable: bool
    version: str | None = None
    error: str | None = None
    image: str | None = None
    image_present: bool | None = None  # None: not asked (no daemon, no image)
    nofile_hard: int | None = None  # dockerd's own hard RLIMIT_NOFILE, when readable


@dataclass(frozen=True)
class FrontToolFact:
    kind: Literal["nginx", "haproxy"]
    path: str | None  # None: not installed
    version_output: str | None = None  # `nginx -V` (stderr) / `haproxy -v`
    stream_so: str = str(NGINX_STREAM_MODULE)
    stream_so_exists: bool = False


@dataclass(frozen=True)
class ClockFact:
    source: str | None  # timedatectl | systemd-timesyncd | chronyc | None: no tool answered
    synced: bool | None  # None: cannot tell
    detail: str = ""


@dataclass(frozen=True)
class PreflightFacts:
    cpus: int
    memory_total_mb: float
    memory_available_mb: float
    nic_mbps: float
    disk_path: Path
    disk_free_bytes: int | None
    file_max: int | None
    nr_open: int | None
    somaxconn: int | None
    nofile_hard: int  # this process's hard RLIMIT_NOFILE
    can_raise_nofile: bool  # CAP_SYS_RESOURCE: may raise a hard limit up to fs.nr_open
    ephemeral: tuple[int, int] | None
    reserved_ports: str = ""
    docker: DockerFact | None = None  # None: cluster.runtime is not docker
    front_tool: FrontToolFact | None = None  # None: front.kind = none
    listen_ports: tuple[PortFact, ...] = ()
    backend_ports: tuple[PortFact, ...] = ()
    own_pids: dict[int, str] = field(default_factory=dict)  # pid -> "conduitctl's nginx"
    cgroup_version: int = 2
    memory_cgroup: Path | None = None
    memory_cgroup_writable: bool | None = None
    clock: ClockFact = ClockFact(None, None)


# --- pure rules ------------------------------------------------------------------------------


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
    return checks


def _container_nofile(settings: Settings, facts: PreflightFacts) -> Check:
    nofile = settings.container.nofile
    runtime = settings.cluster.runtime
    if runtime == "docker" and facts.docker is not None and facts.docker.nofile_hard:
        return check_container_nofile(
            nofile,
            runtime,
            facts.docker.nofile_hard,
            "dockerd",
            raise_hint="raise dockerd's limit (LimitNOFILE= in docker.service, or "
            "`ulimit -Hn` where dockerd starts)",
        )
    if facts.can_raise_nofile and facts.nr_open:
        grant, granter = facts.nr_open, "conduitctl (CAP_SYS_RESOURCE, up to fs.nr_open)"
    else:
        grant, granter = facts.nofile_hard, "conduitctl"
    return check_container_nofile(
        nofile,
        runtime,
        grant,
        granter,
        raise_hint="raise the hard limit conduitctl starts with (ulimit -Hn, or "
        "LimitNOFILE= in the conduitctl systemd unit)",
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


# --- the backup: the only write --------------------------------------------------------------


def backup_config(
    settings: Settings, config_path: Path, now: datetime | None = None
) -> tuple[Check, Path | None]:
    """Copy conduit.toml to STATE_DIR/backups/conduit.toml.<UTC timestamp>.

    Mode 0600 when the settings hold notifier secrets, else 0644. Never overwrites a backup.
    """
    name = "settings backup"
    try:
        data = config_path.read_bytes()
    except OSError as exc:
        return Check(name, "warn", f"cannot read {config_path} ({exc.strerror or exc})"), None
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    directory = settings.state_dir.absolute() / BACKUP_DIR
    secret = holds_secrets(settings)
    mode = 0o600 if secret else 0o644
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for n in range(100):
            target = directory / f"{config_path.name}.{stamp}{f'.{n}' if n else ''}"
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            except FileExistsError:
                continue
            try:
                os.fchmod(fd, mode)  # the umask may have narrowed or widened nothing: be exact
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            break
        else:
            raise OSError(errno.EEXIST, "too many backups with the same timestamp")
    except OSError as exc:
        return (
            Check(
                name,
                "fail",
                f"cannot write a backup in {directory} ({exc.strerror or exc})",
                f"make {directory} writable or set cluster.state_dir",
            ),
            None,
        )
    why = " (0600: it holds notifier secrets)" if secret else ""
    return Check(name, "pass", f"{config_path.absolute()} copied to {target}{why}"), target


# --- the edge: reading the machine -----------------------------------------------------------


def _run(argv: list[str], timeout: float = TOOL_TIMEOUT) -> tuple[int, str, str] | None:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.returncode, r.stdout, r.stderr


def _disk(state_dir: Path) -> tuple[Path, int | None]:
    path = state_dir.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return state_dir.absolute(), shutil.disk_usage(path).free
    except OSError:
        return state_dir.absolute(), None


def _docker_fact(settings: Settings) -> DockerFact:
    image = settings.workload.effective_image
    try:
        import docker
        import docker.errors

        client = docker.from_env(timeout=int(TOOL_TIMEOUT) * 2)
        client.ping()
        version = str(client.version().get("Version") or "unknown")
    except Exception as exc:  # no SDK, no socket, no answer: all mean "not running" here
        return DockerFact(reachable=False, error=f"{type(exc).__name__}: {exc}"[:200], image=image)
    present: bool | None = None
    error = None
    if image:
        try:
            client.images.get(image)
            present = True
        except docker.errors.ImageNotFound:
            present = False
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
    return DockerFact(
        reachable=True,
        version=version,
        error=error,
        image=image,
        image_present=present,
        nofile_hard=_dockerd_nofile(),
    )


def _dockerd_nofile() -> int | None:
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "dockerd":
            with contextlib.suppress(psutil.Error, AttributeError, OSError):
                hard = proc.rlimit(psutil.RLIMIT_NOFILE)[1]
                return None if hard == resource.RLIM_INFINITY else int(hard)
    return None


def _front_tool_fact(kind: Literal["nginx", "haproxy"]) -> FrontToolFact:
    path = find_tool(kind)
    if path is None:
        return FrontToolFact(kind=kind, path=None)
    result = _run([path, "-V"] if kind == "nginx" else [path, "-v"])
    output = None
    if result is not None:
        output = result[2] if kind == "nginx" else result[1]
    return FrontToolFact(
        kind=kind,
        path=path,
        version_output=output,
        stream_so_exists=NGINX_STREAM_MODULE.exists(),
    )


def probe_bind(proto: Literal["tcp", "udp"], host: str, port: int) -> str | None:
    """Try to bind (as the front would: SO_REUSEADDR for TCP); None when free, else the error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as sock:
        if proto == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
            if proto == "tcp":
                sock.listen(1)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def port_holders(proto: Literal["tcp", "udp"], port: int) -> tuple[Holder, ...]:
    """Processes with a socket bound to this local port (listening, for TCP)."""
    try:
        conns = psutil.net_connections(kind=proto)
    except (psutil.Error, OSError):
        return ()
    holders = []
    for c in conns:
        if not c.laddr or c.laddr.port != port:
            continue
        if proto == "tcp" and c.status != psutil.CONN_LISTEN:
            continue
        name = None
        if c.pid is not None:
            with contextlib.suppress(psutil.Error):
                name = psutil.Process(c.pid).name()
        holders.append(Holder(pid=c.pid, name=name))
    return tuple(dict.fromkeys(holders))


def _port_fact(label: str, proto: Literal["tcp", "udp"], host: str, port: int) -> PortFact:
    error = probe_bind(proto, host, port)
    holders = port_holders(proto, port) if error else ()
    return PortFact(label=label, proto=proto, host=host, port=port, error=error, holders=holders)


def _listen_facts(settings: Settings) -> tuple[PortFact, ...]:
    out = []
    for listener in settings.front.listeners:
        host = listener.host or settings.front.bind
        proto: Literal["tcp", "udp"] = "tcp" if listener.proto.value == "tcp" else "udp"
        out.append(_port_fact(str(listener), proto, host, listener.port))
    return tuple(out)


def _backend_facts(settings: Settings) -> tuple[PortFact, ...]:
    host = settings.workload.bind_host
    n = settings.cluster.containers
    out = []
    base = settings.workload.metrics_port_base
    for port in range(base, base + n):
        out.append(_port_fact(f"metrics tcp:{host}:{port}", "tcp", host, port))
    if settings.workload.listens:
        base = settings.workload.listen_port_base
        for port in range(base, base + n):
            for proto in ("tcp", "udp"):
                out.append(_port_fact(f"listen {proto}:{host}:{port}", proto, host, port))
    return tuple(out)


def _with_children(pid: int, label: str, into: dict[int, str]) -> None:
    try:
        proc = psutil.Process(pid)
        into[pid] = label
        for child in proc.children(recursive=True):
            into[child.pid] = label
    except psutil.Error:
        return


def own_processes(settings: Settings, config_path: Path) -> dict[int, str]:
    """pid -> what it is, for this cluster's front, process backends and docker backends."""
    from conduitctl.front.base import read_pid
    from conduitctl.hostinfo import render_env
    from conduitctl.render import haproxy as haproxy_render
    from conduitctl.render import nginx as nginx_render

    own: dict[int, str] = {}
    if settings.front.enabled:
        env = render_env(settings, config_path)
        pid_file = (
            nginx_render.pid_path(env)
            if settings.front.kind == "nginx"
            else haproxy_render.pid_path(env)
        )
        pid = read_pid(pid_file)
        if pid is not None:
            _with_children(pid, f"conduitctl's {settings.front.kind}", own)
    state = str(settings.state_dir.absolute())
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "conduitctl.runtime.shim" in cmdline and any(state in arg for arg in cmdline):
            _with_children(proc.pid, f"{settings.cluster.name} backend", own)
    if settings.cluster.runtime == "docker":
        own.update(_docker_backend_pids(settings))
    return own


def _docker_backend_pids(settings: Settings) -> dict[int, str]:
    own: dict[int, str] = {}
    try:
        import docker

        client = docker.from_env(timeout=int(TOOL_TIMEOUT))
        filters = {
            "label": [
                f"{labels.LABEL_OWNER}={labels.OWNER}",
                f"{labels.LABEL_CLUSTER}={settings.cluster.name}",
            ]
        }
        for container in client.containers.list(filters=filters):
            pid = int(container.attrs.get("State", {}).get("Pid") or 0)
            if pid:
                _with_children(pid, f"{settings.cluster.name} backend {container.name}", own)
    except Exception:  # no daemon: the docker check says so
        return own
    return own


def _ephemeral() -> tuple[int, int] | None:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(lo), int(hi)
    except (OSError, ValueError):
        return None


def _can_raise_nofile() -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _memory_cgroup(root: Path = CGROUP_ROOT) -> tuple[int, Path, bool]:
    version = cgroup_version(root)
    base = root / "memory" if version == 1 else root
    target = base / "conduitctl"
    path = target if target.exists() else base
    writable = os.access(path, os.W_OK)
    if writable and version == 2:
        control = root / "cgroup.subtree_control"
        writable = os.access(control, os.W_OK)
    return version, path, writable


def clock_fact(
    run: Callable[[list[str]], tuple[int, str, str] | None] = _run,
    which: Callable[[str], str | None] = shutil.which,
    timesync: Path = Path("/run/systemd/timesync/synchronized"),
) -> ClockFact:
    """timedatectl, else systemd-timesyncd's flag file, else chronyc; None when none answers."""
    tried = []
    if which("timedatectl"):
        result = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
        if result is not None and result[0] == 0 and result[1].strip() in ("yes", "no"):
            answer = result[1].strip()
            return ClockFact("timedatectl", answer == "yes", f"NTPSynchronized={answer}")
        tried.append("timedatectl does not answer")
    if timesync.exists():
        return ClockFact("systemd-timesyncd", True, str(timesync))
    if timesync.parent.exists():
        return ClockFact("systemd-timesyncd", False, f"no {timesync}")
    if which("chronyc"):
        result = run(["chronyc", "tracking"])
        if result is not None and result[0] == 0:
            for line in result[1].splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "Leap status":
                    return ClockFact("chronyc", value.strip() == "Normal", value.strip())
        tried.append("chronyc does not answer")
    else:
        tried.append("no chronyc")
    return ClockFact(None, None, "; ".join(tried))


def gather_facts(settings: Settings, config_path: Path) -> PreflightFacts:
    """Read everything the rules need from this host. Changes nothing."""
    host = host_facts(settings.host.nic)
    memory = psutil.virtual_memory()
    disk_path, disk_free = _disk(settings.state_dir)
    version, cgroup_path, writable = _memory_cgroup()
    kind = settings.front.kind
    reserved = ""
    with contextlib.suppress(OSError):
        reserved = Path("/proc/sys/net/ipv4/ip_local_reserved_ports").read_text().strip()
    return PreflightFacts(
        cpus=host.cpus,
        memory_total_mb=memory.total / MIB,
        memory_available_mb=memory.available / MIB,
        nic_mbps=settings.host.nic_mbps or host.nic_mbps or DEFAULT_NIC_MBPS,
        disk_path=disk_path,
        disk_free_bytes=disk_free,
        file_max=host.file_max,
        nr_open=read_int("/proc/sys/fs/nr_open"),
        somaxconn=read_int("/proc/sys/net/core/somaxconn"),
        nofile_hard=host.nofile_hard,
        can_raise_nofile=_can_raise_nofile(),
        ephemeral=_ephemeral(),
        reserved_ports=reserved,
        docker=_docker_fact(settings) if settings.cluster.runtime == "docker" else None,
        front_tool=_front_tool_fact(kind) if kind != "none" else None,
        listen_ports=_listen_facts(settings),
        backend_ports=_backend_facts(settings),
        own_pids=own_processes(settings, config_path),
        cgroup_version=version,
        memory_cgroup=cgroup_path,
        memory_cgroup_writable=writable,
        clock=clock_fact(),
    )


def run_preflight(
    settings: Settings,
    config_path: Path,
    *,
    facts: PreflightFacts | None = None,
    now: datetime | None = None,
) -> PreflightReport:
    """Run the checklist; `facts` skips reading the machine. Writes only the settings backup."""
    checks = evaluate(settings, facts or gather_facts(settings, config_path))
    backup, path = backup_config(settings, config_path, now)
    return PreflightReport(checks=(*checks, backup), backup_path=path)


__all__ = [
    "Check",
    "PreflightFacts",
    "PreflightReport",
    "backup_config",
    "evaluate",
    "gather_facts",
    "run_preflight",
]

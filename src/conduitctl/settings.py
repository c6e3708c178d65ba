"""The conduit.toml model: one frozen, validated settings object, and how to find and load it.

Every error names the key, the value and the allowed range or the fix, in one line.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from conduitctl import config_locate
from conduitctl.conduit_cli import bandwidth_problem, set_problem
from conduitctl.errors import ConfigError, not_utf8
from conduitctl.logs import add_secrets
from conduitctl.settings_types import (
    Capability,
    HostAddress,
    ImageRef,
    InterfaceName,
    SafePath,
    Slug,
    Text,
    UserSpec,
    one_line,
)
from conduitctl.statedir import resolve_state_dir
from conduitctl.units import parse_duration, parse_size
from conduitctl.workloads import PROFILES

CONFIG_ENV = config_locate.CONFIG_ENV
SYSTEM_CONFIG = Path(config_locate.SYSTEM_CONFIG)
ROOT_STATE_DIR = Path("/var/lib/conduitctl")
USER_STATE_DIR = Path(".conduitctl")

# Conduit's own ceiling for --max-common-clients is 1000 per station; the simulator and
# generic proxies may go higher (benchmarks hold 10,000 clients on 8 backends).
MAX_CLIENTS_CEILING = 1000
MAX_CLIENTS_ANY_PROFILE = 4000

# Upper bounds for sizes: far above any real host, far below what a tool would overflow on.
MAX_MEMORY = 16 * 1024**4
MAX_FILE_SIZE = 1024**4


def _size(value: Any) -> int:
    try:
        return parse_size(value)
    except OverflowError:  # "1e400g" is inf bytes
        raise ValueError("too large for a size; use one such as 512m or 1g") from None


Size = Annotated[int, BeforeValidator(_size)]
Duration = Annotated[float, BeforeValidator(parse_duration)]


class CoherenceError(ValueError):
    """A rule spanning several keys failed; `key` and `value` name the one to change."""

    def __init__(self, key: str, value: object, fix: str) -> None:
        super().__init__(fix)
        self.key = key
        self.value = value
        self.fix = fix


class _Model(BaseModel):
    # No setting takes inf or nan: both pass a lone `gt` bound and neither renders.
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )


class Proto(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class Listener(_Model):
    """A front listener, in conduit.toml "tcp:443", "udp:5566" or "tcp:127.0.0.1:8443"."""

    proto: Proto
    host: HostAddress | None = None  # None: front.bind
    port: int = Field(ge=1, le=65535)

    @classmethod
    def parse(cls, text: str) -> Listener:
        parts = text.split(":")
        if len(parts) == 2:
            proto, host, port = parts[0], None, parts[1]
        elif len(parts) == 3:
            proto, host, port = parts
        else:
            raise ValueError(f"{text!r} is not PROTO:PORT or PROTO:HOST:PORT (e.g. tcp:443)")
        if proto not in ("tcp", "udp"):
            raise ValueError("protocol must be tcp or udp")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("port must be 1..65535")
        return cls(proto=Proto(proto), host=host or None, port=int(port))

    def __str__(self) -> str:
        host = f"{self.host}:" if self.host else ""
        return f"{self.proto.value}:{host}{self.port}"


def _parse_listener(value: Any) -> Any:
    return Listener.parse(value) if isinstance(value, str) else value


ListenerField = Annotated[Listener, BeforeValidator(_parse_listener)]


class Cluster(_Model):
    name: Slug = "conduit"
    containers: int = Field(default=8, ge=1, le=64)
    runtime: Literal["docker", "process"] = "docker"
    # default: /var/lib/conduitctl as root, ./.conduitctl otherwise
    state_dir: SafePath | None = None


class _StationLimits(_Model):
    """The Conduit CLI's rules for the client count and bandwidth (workload and overrides)."""

    @model_validator(mode="before")
    @classmethod
    def _one_of_the_names(cls, data: Any) -> Any:
        """max_common_clients (CLI 2.0) or max_clients (1.x): one of them, never both."""
        if isinstance(data, dict) and "max_common_clients" in data and "max_clients" in data:
            raise ValueError(
                "max_common_clients and max_clients are one setting (the CLI 2.0 name and "
                "the old one); keep max_common_clients"
            )
        return data

    @field_validator("bandwidth_mbps", check_fields=False)
    @classmethod
    def _cli_bandwidth(cls, mbps: float | None) -> float | None:
        problem = None if mbps is None else bandwidth_problem(mbps)
        if problem is not None:
            raise ValueError(problem)
        return mbps


class BackendOverride(_StationLimits):
    """Per-backend values, as conduit-manager's MAX_CLIENTS_N / BANDWIDTH_N / CPUS_N / MEMORY_N."""

    max_clients: int | None = Field(
        default=None, ge=1, le=1_000_000,
        validation_alias=AliasChoices("max_common_clients", "max_clients"),
    )  # fmt: skip
    bandwidth_mbps: float | None = Field(default=None, ge=-1, le=100_000)
    cpus: float | None = Field(default=None, gt=0, le=256)
    memory: Size | None = Field(default=None, ge=32 * 1024**2, le=MAX_MEMORY)


class Workload(_StationLimits):
    profile: Literal["psiphon-conduit", "sim", "generic"] = "psiphon-conduit"
    image: ImageRef | None = None  # default: the profile's image
    flag_dialect: Literal["v2", "v1"] = "v2"
    # Conduit CLI 2.0's --max-common-clients; `max_clients` (the 1.x name) is still read
    max_clients: int = Field(
        default=250, ge=1, le=1_000_000,
        validation_alias=AliasChoices("max_common_clients", "max_clients"),
    )  # fmt: skip
    bandwidth_mbps: float = Field(default=40.0, ge=-1, le=100_000)  # -1: unlimited
    # The CLI's `--set KEY=VALUE` (2.0), from its allowlist, checked by name and type
    set: dict[str, bool | int | Text] = Field(default_factory=dict)
    metrics_port_base: int = Field(default=29100, ge=1024, le=65000)
    listen_port_base: int = Field(default=28000, ge=1024, le=65000)
    bind_host: HostAddress = "127.0.0.1"  # backends' ports and metrics stay on loopback
    command: list[Text] | None = None  # generic profile: replaces the image's default arguments
    pull: bool = False  # pull a missing image from its registry (never by default: local images)
    extra_args: list[Text] = Field(default_factory=list)  # appended to the profile's arguments
    overrides: dict[int, BackendOverride] = Field(default_factory=dict)
    # The named opt-out for backends' ports or metrics off loopback (bind_host, or a
    # --metrics-addr of its own in extra_args): refused without it, warned about with it.
    allow_public_bind: bool = False

    @field_validator("set")
    @classmethod
    def _allowed_set(cls, value: dict[str, bool | int | str]) -> dict[str, bool | int | str]:
        for key, item in value.items():
            problem = set_problem(key, item)
            if problem is not None:
                raise ValueError(f"{key}: {problem}")
        return value

    @property
    def listens(self) -> bool:
        return PROFILES[self.profile].listens

    @property
    def effective_image(self) -> str | None:
        return self.image or PROFILES[self.profile].default_image


class Container(_Model):
    """Hardening applied to every backend container (and, where it makes sense, process)."""

    user: UserSpec = "1000:1000"
    network: Literal["host", "bridge"] = "host"  # bridge: ports published on 127.0.0.1 only
    restart_policy: Literal["no", "on-failure", "unless-stopped", "always"] = "unless-stopped"
    read_only: bool = True
    no_new_privileges: bool = True
    cap_drop: list[Capability] = Field(default_factory=lambda: ["ALL"])
    pids_limit: int = Field(default=256, ge=16, le=65536)
    memory: Size = Field(default=parse_size("512m"), ge=32 * 1024**2, le=MAX_MEMORY)
    cpus: float = Field(default=1.0, gt=0, le=256)
    nofile: int = Field(default=65536, ge=1024, le=1_048_576)
    tmpfs_size: Size = Field(default=parse_size("64m"), ge=1024**2, le=MAX_MEMORY)
    log_max_size: Size = Field(default=parse_size("10m"), ge=1024**2, le=MAX_FILE_SIZE)
    log_max_files: int = Field(default=3, ge=1, le=100)
    # The named opt-out for a weaker container (root user, capabilities kept, a writable
    # root, new privileges): refused without it, warned about with it.
    allow_weak_hardening: bool = False


class Front(_Model):
    kind: Literal["nginx", "haproxy", "none"] = "none"
    bind: HostAddress = "0.0.0.0"
    listeners: list[ListenerField] = Field(default_factory=list)
    balance: Literal["least_conn", "round_robin", "hash"] = "least_conn"
    max_fails: int = Field(default=2, ge=1, le=100)
    fail_timeout: Duration = Field(default=10.0, gt=0, le=3600)
    per_ip_limit: int = Field(default=32, ge=0, le=100_000)  # 0: no per-IP limit
    limit_log_level: Literal["info", "notice", "warn", "error"] = "warn"
    connect_timeout: Duration = Field(default=5.0, gt=0, le=600)
    proxy_timeout: Duration = Field(default=600.0, gt=0, le=86400)
    udp_timeout: Duration = Field(default=60.0, gt=0, le=86400)
    access_log: bool = True
    worker_connections: int = Field(default=16384, ge=512, le=1_048_576)
    nofile: int = Field(default=65536, ge=1024, le=1_048_576)
    stats_port: int = Field(default=29000, ge=1024, le=65535)  # HAProxy Prometheus exporter
    # A front on a profile that listens on nothing is a mistake unless the operator insists.
    allow_without_listeners: bool = False

    @property
    def enabled(self) -> bool:
        """Whether a front balances clients across the backends (kind "none": there is none)."""
        return self.kind != "none"


class Health(_Model):
    interval: Duration = Field(default=1.0, ge=0.1, le=300)
    timeout: Duration = Field(default=0.8, ge=0.05, le=60)
    fall: int = Field(default=2, ge=1, le=100)
    rise: int = Field(default=2, ge=1, le=100)
    # Self-healing: restarts back off exponentially from restart_backoff up to the max; this
    # many restarts inside the window is a crash loop: restarts stop and an alert fires.
    # A running backend that stays unhealthy this long is restarted (it left the front after
    # `fall` probes already); a dead one is restarted at once.
    restart_after: Duration = Field(default=10.0, ge=0, le=3600)
    restart_backoff: Duration = Field(default=1.0, ge=0, le=600)
    restart_backoff_max: Duration = Field(default=60.0, ge=0, le=3600)
    crash_loop_restarts: int = Field(default=5, ge=1, le=1000)
    crash_loop_window: Duration = Field(default=300.0, ge=10, le=86400)
    # A crash loop never stops the restarts: they go on, the backoff capped at this.
    crash_loop_backoff_max: Duration = Field(default=300.0, ge=1, le=86400)
    # Healthy this long: the backoff starts over and the deaths before count no more.
    min_healthy: Duration = Field(default=60.0, ge=1, le=86400)
    # Graceful degradation: after backends stay down this long and the survivors are full,
    # raise max clients on survivors (one at a time) up to the planner's per-backend ceiling.
    degrade_after: Duration = Field(default=120.0, ge=1, le=86400)
    # How the supervisor finds a hung station (alive, silent) between probes, for profiles
    # that greet: "queues" greets only one whose accept queue holds connections (free; under
    # traffic); "greetings" greets every station every 0.4 s (out of the front within 1 s
    # without traffic too, for about 0.4 % of a core more at 8 backends). Behind HAProxy its
    # own checks do this anyway.
    hang_check: Literal["queues", "greetings"] = "queues"

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> Health:
        if self.timeout > self.interval:
            raise CoherenceError(
                "health.timeout",
                self.timeout,
                f"longer than health.interval = {self.interval:g}s; make it at most the interval",
            )
        return self


class Alerts(_Model):
    notifiers: list[Text] = Field(default_factory=list)  # apprise URLs; hold secrets
    cpu_percent: float = Field(default=90, gt=0, le=100)
    ram_percent: float = Field(default=85, gt=0, le=100)
    nic_mbps: float | None = Field(default=None, gt=0)  # default: host.sustained_fraction x NIC
    repeat_interval: Duration = Field(default=4 * 3600.0, ge=60, le=7 * 86400)

    @field_validator("notifiers")
    @classmethod
    def _urls_have_scheme(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if "://" not in url:
                raise ValueError(
                    f"notifier {redact_url(url)!r} is not an apprise URL (e.g. tgram://TOKEN/CHAT)"
                )
        return urls


class Daemon(_Model):
    """The supervisor: its Prometheus exporter (loopback only) and its log."""

    metrics_port: int = Field(default=29099, ge=1024, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = False


class Host(_Model):
    nic: InterfaceName | None = None  # default: the route's
    nic_mbps: float | None = Field(default=None, gt=0, le=400_000)  # default: read from the kernel
    sustained_fraction: float = Field(default=0.8, gt=0, le=1)
    duplex: bool = True  # full duplex: nic_mbps each way


class Settings(_Model):
    cluster: Cluster = Field(default_factory=Cluster)
    workload: Workload = Field(default_factory=Workload)
    container: Container = Field(default_factory=Container)
    front: Front = Field(default_factory=Front)
    health: Health = Field(default_factory=Health)
    alerts: Alerts = Field(default_factory=Alerts)
    daemon: Daemon = Field(default_factory=Daemon)
    host: Host = Field(default_factory=Host)

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        check_coherence(self)
        return self

    @property
    def state_dir(self) -> Path:
        if self.cluster.state_dir is not None:
            return self.cluster.state_dir
        return ROOT_STATE_DIR if os.geteuid() == 0 else Path.cwd() / USER_STATE_DIR

    def backend_names(self) -> list[str]:
        return [f"{self.cluster.name}-{i}" for i in range(1, self.cluster.containers + 1)]


def check_coherence(s: Settings) -> None:
    """Rules that span sections: listeners, port ranges, overrides, front vs profile."""
    n = s.cluster.containers
    _check_conduit_cli(s.workload)
    seen: set[tuple[str, int]] = set()
    for listener in s.front.listeners:
        key = (listener.proto.value, listener.port)
        if key in seen:
            raise CoherenceError(
                "front.listeners", str(listener), "listed twice; keep one of each PROTO:PORT"
            )
        seen.add(key)

    ranges = {"workload.metrics_port_base": (s.workload.metrics_port_base, n)}
    if s.workload.listens:
        ranges["workload.listen_port_base"] = (s.workload.listen_port_base, n)
    if s.front.kind == "haproxy":
        ranges["front.stats_port"] = (s.front.stats_port, 1)
    ranges["daemon.metrics_port"] = (s.daemon.metrics_port, 1)
    names = list(ranges)
    for i, a in enumerate(names):
        a_lo, a_n = ranges[a]
        if a_lo + a_n - 1 > 65535:
            raise CoherenceError(a, a_lo, f"{a_n} ports from {a_lo} run past 65535; lower it")
        for b in names[i + 1 :]:
            b_lo, b_n = ranges[b]
            if a_lo < b_lo + b_n and b_lo < a_lo + a_n:
                raise CoherenceError(
                    b,
                    b_lo,
                    f"ports {b_lo}-{b_lo + b_n - 1} overlap {a} ports {a_lo}-{a_lo + a_n - 1}; "
                    "move one range",
                )
    for listener in s.front.listeners:
        for name, (lo, count) in ranges.items():
            if lo <= listener.port < lo + count:
                raise CoherenceError(
                    "front.listeners",
                    str(listener),
                    f"port {listener.port} falls in {name} range {lo}-{lo + count - 1}; "
                    "pick another port",
                )

    conduit = s.workload.profile == "psiphon-conduit"
    ceiling = MAX_CLIENTS_CEILING if conduit else MAX_CLIENTS_ANY_PROFILE
    why = "Conduit's ceiling per station" if conduit else "per backend"
    values = [("workload.max_clients", s.workload.max_clients)] + [
        (f"workload.overrides.{i}.max_clients", o.max_clients)
        for i, o in sorted(s.workload.overrides.items())
        if o.max_clients is not None
    ]
    for field_key, value in values:
        if value > ceiling:
            raise CoherenceError(
                field_key, value, f"allowed range is 1..{ceiling} ({why}); add containers instead"
            )

    for index in s.workload.overrides:
        if not 1 <= index <= n:
            raise CoherenceError(
                f"workload.overrides.{index}",
                index,
                f"no such backend (cluster.containers = {n}); remove it or raise the count",
            )

    if s.front.enabled:
        if not s.workload.listens and not s.front.allow_without_listeners:
            raise CoherenceError(
                "front.kind",
                s.front.kind,
                f"profile {s.workload.profile!r} listens on no port (Conduit dials out), so a "
                'front has nothing to balance; set front.kind = "none" '
                "(or front.allow_without_listeners = true)",
            )
        if not s.front.listeners:
            raise CoherenceError(
                "front.listeners",
                [],
                f"front.kind = {s.front.kind!r} needs listeners, e.g. tcp:443",
            )
    docker = s.cluster.runtime == "docker"
    if s.workload.profile == "generic" and docker and not s.workload.image:
        raise CoherenceError(
            "workload.image", None, "the generic profile needs an image; set workload.image"
        )
    weak = weak_hardening(s)
    if weak and not s.container.allow_weak_hardening:
        setting, shown, why = weak[0]
        raise CoherenceError(
            setting, shown, f"{why}; restore it, or set container.allow_weak_hardening = true"
        )
    public = public_binds(s)
    if public and not s.workload.allow_public_bind:
        setting, shown, why = public[0]
        raise CoherenceError(
            setting, shown, f"{why}; keep it on loopback, or set workload.allow_public_bind = true"
        )


def _check_conduit_cli(w: Workload) -> None:
    """What the real Conduit CLI would refuse at start: found here, not in a crash loop."""
    if w.set and w.flag_dialect == "v1":
        raise CoherenceError(
            "workload.set", w.set, 'the CLI 1.x has no --set; drop it or use flag_dialect = "v2"'
        )


def weak_hardening(s: Settings) -> list[tuple[str, object, str]]:
    """(key, value, why) for each container hardening that is weaker than the default."""
    c = s.container
    found: list[tuple[str, object, str]] = []
    uid, _, gid = c.user.partition(":")
    if uid == "0":
        found.append(("container.user", c.user, "runs the backends as root"))
    elif gid == "0":
        found.append(("container.user", c.user, "runs the backends in the root group"))
    if not c.cap_drop:
        found.append(("container.cap_drop", c.cap_drop, "keeps every capability"))
    if not c.read_only:
        found.append(("container.read_only", c.read_only, "gives a writable root filesystem"))
    if not c.no_new_privileges:
        found.append(("container.no_new_privileges", c.no_new_privileges,
                      "lets a backend gain privileges (setuid)"))  # fmt: skip
    return found


def public_binds(s: Settings) -> list[tuple[str, object, str]]:
    """(key, value, why) for each way the backends' own ports leave loopback."""
    found: list[tuple[str, object, str]] = []
    if not is_loopback(s.workload.bind_host):
        found.append(("workload.bind_host", s.workload.bind_host,
                      "puts the backends' ports and metrics off loopback"))  # fmt: skip
    args = s.workload.extra_args
    if any(a == "--metrics-addr" or a.startswith("--metrics-addr=") for a in args):
        why = "sets a metrics address of its own (conduitctl binds one on loopback)"
        found.append(("workload.extra_args", "--metrics-addr", why))
    return found


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def hardening_warnings(s: Settings) -> list[str]:
    """What an opt-out let through, one line each (config check and preflight say it)."""
    lines = []
    if s.container.allow_weak_hardening:
        lines += [f"{key} = {value!r} {why} (container.allow_weak_hardening)"
                  for key, value, why in weak_hardening(s)]  # fmt: skip
    if s.workload.allow_public_bind:
        lines += [f"{key} = {value!r} {why} (workload.allow_public_bind)"
                  for key, value, why in public_binds(s)]  # fmt: skip
    return lines


def redact_url(url: str) -> str:
    """An apprise URL with everything after the scheme hidden: secrets are never printed."""
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://***" if sep else "***"


# --- loading --------------------------------------------------------------------------------


def find_config(explicit: Path | None) -> Path:
    """--config, else $CONDUITCTL_CONFIG, else ./conduit.toml, else /etc/conduitctl/conduit.toml."""
    if explicit is not None:
        return explicit
    return Path(config_locate.locate(None))


def load_settings(path: Path) -> Settings:
    """Read and validate a conduit.toml. Raises ConfigError with one line naming key and fix."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config; create one with `conduitctl init` or pass --config PATH"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read config ({exc.strerror}); check its permissions"
        ) from None
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise ConfigError(not_utf8(str(path), data, exc)) from None
    return anchor_state_dir(parse_settings(text, source=str(path)), path)


def anchor_state_dir(settings: Settings, config_path: Path) -> Settings:
    """A relative cluster.state_dir, taken against the config file's directory (not the cwd),
    so the systemd unit, the daemon and the CLI agree on it."""
    configured = settings.cluster.state_dir
    if configured is None or configured.is_absolute():
        return settings
    anchored = resolve_state_dir(configured, config_path, ROOT_STATE_DIR)
    cluster = settings.cluster.model_copy(update={"state_dir": anchored})
    return settings.model_copy(update={"cluster": cluster})


def parse_settings(text: str, source: str = "conduit.toml") -> Settings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(one_line(f"{source}: not valid TOML ({exc}); fix the syntax")) from None
    except ValueError:  # an integer of more than 4,300 digits: no setting takes one
        long = re.search(r"\d{1000,}", text)
        where = f"line {text.count(chr(10), 0, long.start()) + 1}" if long else "a value"
        raise ConfigError(
            f"{source}: {where} holds a number too long for any setting; shorten it"
        ) from None
    return settings_from_dict(data, source)


def settings_from_dict(data: dict[str, Any], source: str = "conduit.toml") -> Settings:
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(one_line(f"{source}: {describe_validation_error(exc)}")) from None
    # Whatever process reads a notifier URL, its log handlers hide it from then on (the
    # one side effect here, on purpose: no command can forget it).
    add_secrets(settings.alerts.notifiers)
    return settings


def describe_validation_error(exc: ValidationError) -> str:
    """The first error as `key = value: what is allowed`, plus a count of the others."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    ctx_error = (first.get("ctx") or {}).get("error")
    if isinstance(ctx_error, CoherenceError):
        return f"{ctx_error.key} = {_show(ctx_error.value)}: {ctx_error.fix}{more}"
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    value = _show(first.get("input"), key)
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key{_suggest(loc)}{more}"
    if kind == "missing":
        return f"{key}: required key is missing{more}"
    bounds = _field_bounds(loc)
    if bounds and kind in (
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
    ):
        return f"{key} = {value}: allowed range is {bounds}{more}"
    message = first["msg"].removeprefix("Value error, ")
    return f"{key} = {value}: {message}{more}"


def _show(value: object, key: str = "") -> str:
    if key.startswith("alerts.notifiers"):
        return "(hidden: notifier URLs hold secrets)"
    if isinstance(value, str):
        return repr(value) if "://" not in value else repr(redact_url(value))
    if isinstance(value, Listener):
        return repr(str(value))
    return repr(value)


def _model_at(loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, str | None]:
    """The model class that owns the last key of `loc`, and that key."""
    model: type[BaseModel] | None = Settings
    parts = list(loc[:-1])
    while parts and model is not None:
        part = parts.pop(0)
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None, None
        if model is Workload and part == "overrides":
            model = BackendOverride
            if parts:
                parts.pop(0)  # the backend index
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            model = None
    last = loc[-1] if loc else None
    return model, last if isinstance(last, str) else None


def _field_bounds(loc: tuple[Any, ...]) -> str | None:
    model, name = _model_at(loc)
    if model is None or name is None or name not in model.model_fields:
        return None
    lo: object = None
    hi: object = None
    lo_open = hi_open = False
    for meta in model.model_fields[name].metadata:
        if isinstance(meta, annotated_types.Ge):
            lo = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            lo, lo_open = meta.gt, True
        elif isinstance(meta, annotated_types.Le):
            hi = meta.le
        elif isinstance(meta, annotated_types.Lt):
            hi, hi_open = meta.lt, True
    if lo is None and hi is None:
        return None
    if lo is not None and hi is not None and not (lo_open or hi_open):
        return f"{lo}..{hi}"
    bounds = []
    if lo is not None:
        bounds.append(f"> {lo}" if lo_open else f">= {lo}")
    if hi is not None:
        bounds.append(f"< {hi}" if hi_open else f"<= {hi}")
    return " and ".join(bounds)


def _suggest(loc: tuple[Any, ...]) -> str:
    model, name = _model_at(loc)
    if model is None or name is None:
        return ""
    known = list(model.model_fields)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known keys: {', '.join(known)}"

"""The alert rules (pure): their names, severities, pending durations and summaries, which
firing rule mutes which (inhibition), and an alert's identity (labels, fingerprint)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

OOM_QUIET_S = 600.0  # an oom alert resolves after this long without another OOM kill
QUEUE_WINDOW = 3  # accept queue samples (ticks) that must show growth
QUEUE_BACKLOG_FRACTION = 0.5  # ...or a queue at least this share of the listen backlog

Labels = tuple[tuple[str, str], ...]  # sorted (key, value) pairs: hashable, JSON-friendly


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class Scope(StrEnum):
    """Which label an alert of the rule carries: one alert per backend, per listener, or one."""

    BACKEND = "backend"
    LISTENER = "listener"
    GLOBAL = "global"  # the front, the host, the fleet: no labels


class RuleName(StrEnum):
    BACKEND_DOWN = "backend_down"
    CRASH_LOOP = "crash_loop"
    OOM = "oom"
    CPU_HIGH = "cpu_high"
    RAM_HIGH = "ram_high"
    HOST_MEMORY_LOW = "host_memory_low"
    NIC_HIGH = "nic_high"
    FRONT_DOWN = "front_down"
    ACCEPT_QUEUE_GROWING = "accept_queue_growing"
    ALL_BACKENDS_DOWN = "all_backends_down"
    PORT_STOLEN = "port_stolen"


@dataclass(frozen=True)
class Rule:
    name: RuleName
    severity: Severity
    for_s: float  # the condition must hold this long (pending) before the alert fires
    scope: Scope
    summary: str  # one line; {backend} / {listener} and {detail} are filled in
    description: str  # the condition in words (docs, `conduitctl alerts --rules`)

    def render(self, labels: Labels, detail: str) -> str:
        return self.summary.format(**dict(labels), detail=detail)


RULES: dict[RuleName, Rule] = {
    r.name: r
    for r in (
        Rule(
            RuleName.BACKEND_DOWN,
            Severity.WARNING,
            30.0,
            Scope.BACKEND,
            "backend {backend} is down: {detail}",
            "a backend is not running, or its health probe fails",
        ),
        Rule(
            RuleName.CRASH_LOOP,
            Severity.CRITICAL,
            0.0,
            Scope.BACKEND,
            "backend {backend} is crash-looping: {detail}",
            "the supervisor stopped restarting a backend (crash-loop limit reached)",
        ),
        Rule(
            RuleName.OOM,
            Severity.WARNING,
            0.0,
            Scope.BACKEND,
            "backend {backend} was OOM-killed: {detail}",
            "a backend's OOM-kill counter increased; resolves after "
            f"{OOM_QUIET_S / 60:g} min without another kill",
        ),
        Rule(
            RuleName.CPU_HIGH,
            Severity.WARNING,
            120.0,
            Scope.BACKEND,
            "backend {backend} CPU high: {detail}",
            "backend CPU above alerts.cpu_percent of its CPU limit (docker), "
            "or of one core (process runtime: no limit)",
        ),
        Rule(
            RuleName.RAM_HIGH,
            Severity.WARNING,
            60.0,
            Scope.BACKEND,
            "backend {backend} memory high: {detail}",
            "backend RSS above alerts.ram_percent of its memory limit "
            "(the observed cgroup limit, else the configured container memory)",
        ),
        Rule(
            RuleName.HOST_MEMORY_LOW,
            Severity.WARNING,
            60.0,
            Scope.GLOBAL,
            "host memory low: {detail}",
            "host available memory below (100 - alerts.ram_percent) % of total",
        ),
        Rule(
            RuleName.NIC_HIGH,
            Severity.WARNING,
            120.0,
            Scope.GLOBAL,
            "NIC near saturation: {detail}",
            "NIC rx or tx (rx + tx when half duplex) above alerts.nic_mbps, by default "
            "host.sustained_fraction x the NIC speed (host.nic_mbps or the kernel's); "
            "inactive when neither is known",
        ),
        Rule(
            RuleName.FRONT_DOWN,
            Severity.CRITICAL,
            0.0,  # the single point of failure: say so at once, even when restarted within a tick
            Scope.GLOBAL,
            "front is down: {detail}",
            "the front (nginx/haproxy) is not running, or not every listener accepts",
        ),
        Rule(
            RuleName.ACCEPT_QUEUE_GROWING,
            Severity.WARNING,
            5.0,
            Scope.LISTENER,
            "listener {listener} accept queue growing: {detail}",
            f"a front listener's accept queue is above 0 and has grown over {QUEUE_WINDOW} "
            f"ticks without dropping, or holds {QUEUE_BACKLOG_FRACTION:.0%} of its backlog",
        ),
        Rule(
            RuleName.ALL_BACKENDS_DOWN,
            Severity.CRITICAL,
            10.0,
            Scope.GLOBAL,
            "all backends are down: {detail}",
            "no backend is running and healthy",
        ),
        Rule(
            RuleName.PORT_STOLEN,
            Severity.CRITICAL,
            0.0,  # clients reach a stranger through the front: say so at once
            Scope.BACKEND,
            "backend {backend}'s port is taken: {detail}",
            "another process listens on a backend's port (its listener or /metrics): "
            "whoever answers there is not the station we started; it is never counted healthy",
        ),
    )
}

_BACKEND_RULES = frozenset(r.name for r in RULES.values() if r.scope == Scope.BACKEND)


@dataclass(frozen=True)
class Inhibition:
    """While `source` fires, alerts of `targets` are muted; `equal`: labels that must match."""

    source: RuleName
    targets: frozenset[RuleName]
    equal: tuple[str, ...] = ()


INHIBITIONS: tuple[Inhibition, ...] = (
    # The front is the single way in: while it is down, per-backend noise adds nothing.
    Inhibition(RuleName.FRONT_DOWN, _BACKEND_RULES),
    Inhibition(RuleName.ALL_BACKENDS_DOWN, frozenset({RuleName.BACKEND_DOWN})),
    # A crash-looping backend is down by definition: one message for it, not two.
    Inhibition(RuleName.CRASH_LOOP, frozenset({RuleName.BACKEND_DOWN}), equal=("backend",)),
    # A station whose port is taken is down, and dies on "address in use" as it restarts:
    # the theft is the one thing to say.
    Inhibition(
        RuleName.PORT_STOLEN,
        frozenset({RuleName.BACKEND_DOWN, RuleName.CRASH_LOOP}),
        equal=("backend",),
    ),
)


def make_labels(**labels: str) -> Labels:
    return tuple(sorted(labels.items()))


def fingerprint(rule: RuleName, labels: Labels) -> str:
    """A stable alert identity: `backend_down{backend=conduit-1}`, `front_down`."""
    if not labels:
        return rule.value
    return rule.value + "{" + ",".join(f"{k}={v}" for k, v in labels) + "}"

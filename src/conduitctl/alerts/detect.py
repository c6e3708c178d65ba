"""Conditions (pure): which rule holds in one tick, for which labels, with the value, and
the history of earlier ticks the cross-tick rules (oom, accept_queue_growing) need."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

from conduitctl.alerts.rules import (
    OOM_QUIET_S,
    QUEUE_BACKLOG_FRACTION,
    QUEUE_WINDOW,
    RULES,
    Labels,
    RuleName,
    fingerprint,
    make_labels,
)
from conduitctl.observe.model import BackendObservation, Tick
from conduitctl.settings import Settings


@dataclass(frozen=True)
class Condition:
    """A rule that holds right now for these labels."""

    rule: RuleName
    labels: Labels
    value: float | None  # the observed number (percent, Mbit/s, count...), None if boolean
    detail: str  # the value in words, for the summary

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule, self.labels)

    @property
    def summary(self) -> str:
        return RULES[self.rule].render(self.labels, self.detail)


@dataclass(frozen=True)
class OomTrack:
    count: int  # the backend's OOM-kill counter at the last tick
    last_increase: float | None = None  # ts of the last tick that saw it increase
    episode_kills: int = 0  # kills since the current episode began (it ends after quiet)


@dataclass(frozen=True)
class History:
    """What the conditions need from earlier ticks: counters and recent samples."""

    oom: dict[str, OomTrack] = field(default_factory=dict)  # backend -> track
    queues: dict[str, tuple[int, ...]] = field(default_factory=dict)  # listener -> samples

    def observe(self, tick: Tick) -> History:
        """This history with `tick` added (pure; call after `conditions` for the same tick)."""
        return History(
            oom={b.name: _oom_track(self.oom.get(b.name), b, tick.ts) for b in tick.backends},
            queues={
                name: _queue_samples(self.queues.get(name, ()), depth)
                for name, depth in tick.front.accept_queue.items()
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "oom": {
                name: {
                    "count": t.count,
                    "last_increase": t.last_increase,
                    "episode_kills": t.episode_kills,
                }
                for name, t in sorted(self.oom.items())
            },
            "queues": {name: list(samples) for name, samples in sorted(self.queues.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls(
            oom={
                str(name): OomTrack(
                    count=int(t["count"]),
                    last_increase=optional_float(t.get("last_increase")),
                    episode_kills=int(t.get("episode_kills", 0)),
                )
                for name, t in dict(data.get("oom", {})).items()
            },
            queues={
                str(name): tuple(int(v) for v in samples)
                for name, samples in dict(data.get("queues", {})).items()
            },
        )


def _oom_track(prev: OomTrack | None, b: BackendObservation, now: float) -> OomTrack:
    """The first sight of a counter is a baseline (a kill at an unknown time is not news); a
    counter that went down was reset (backend recreated) and counts from zero."""
    if prev is None:
        return OomTrack(b.oom_kills)
    increase = b.oom_kills - prev.count if b.oom_kills >= prev.count else b.oom_kills
    if increase <= 0:
        return replace(prev, count=b.oom_kills)
    in_episode = prev.last_increase is not None and now - prev.last_increase < OOM_QUIET_S
    kills = (prev.episode_kills if in_episode else 0) + increase
    return OomTrack(b.oom_kills, now, kills)


def _queue_samples(prev: tuple[int, ...], depth: int) -> tuple[int, ...]:
    return (*prev, depth)[-QUEUE_WINDOW:]


def conditions(tick: Tick, settings: Settings, history: History | None = None) -> list[Condition]:
    """Every rule that holds in `tick`. Labels come from fixed sets (backend names, listener
    names), never container ids. `history` (from `AlertState.history`) feeds the rules that
    look across ticks (oom, accept_queue_growing); without it they only see this tick."""
    hist = history or History()
    out: list[Condition] = []
    down: list[str] = []
    for b in tick.backends:
        labels = make_labels(backend=b.name)
        if not b.running or b.healthy is False:
            down.append(b.name)
            out.append(
                Condition(
                    RuleName.BACKEND_DOWN,
                    labels,
                    None,
                    "not running" if not b.running else "health probe failing",
                )
            )
        if b.port_stolen:
            out.append(Condition(RuleName.PORT_STOLEN, labels, None, b.port_stolen))
        if b.crash_looping:
            out.append(
                Condition(
                    RuleName.CRASH_LOOP,
                    labels,
                    float(b.restarts),
                    f"{b.restarts} restarts; they go on, slower, until it stays healthy",
                )
            )
        track = _oom_track(hist.oom.get(b.name), b, tick.ts)
        if track.last_increase is not None and tick.ts - track.last_increase < OOM_QUIET_S:
            out.append(
                Condition(
                    RuleName.OOM,
                    labels,
                    float(track.episode_kills),
                    f"{track.episode_kills} OOM kill(s); resolves after "
                    f"{OOM_QUIET_S / 60:g} min without another",
                )
            )
        out.extend(_resource_conditions(b, labels, settings))

    if tick.backends and len(down) == len(tick.backends):
        n = len(tick.backends)
        out.append(
            Condition(RuleName.ALL_BACKENDS_DOWN, (), float(n), f"0 of {n} running and healthy")
        )

    out.extend(_host_conditions(tick, settings))

    front = tick.front
    front_served = settings.front.enabled and front.kind != "none"
    if front_served and not (front.running and front.listening):
        why = "not running" if not front.running else "running but not listening"
        out.append(Condition(RuleName.FRONT_DOWN, (), None, f"{front.kind} {why}"))
    for name, depth in sorted(front.accept_queue.items()):
        samples = _queue_samples(hist.queues.get(name, ()), depth)
        backlog = front.accept_backlog.get(name, 0)
        growing = (
            len(samples) == QUEUE_WINDOW
            and depth > 0
            and all(a <= b for a, b in pairwise(samples))
            and samples[-1] > samples[0]
        )
        full = depth > 0 and backlog > 0 and depth >= QUEUE_BACKLOG_FRACTION * backlog
        if growing or full:
            of = f" of a {backlog} backlog" if backlog > 0 else ""
            trend = f", up from {samples[0]} over {len(samples)} ticks" if growing else ""
            out.append(
                Condition(
                    RuleName.ACCEPT_QUEUE_GROWING,
                    make_labels(listener=name),
                    float(depth),
                    f"{depth} queued{of}{trend}",
                )
            )
    return out


def _resource_conditions(
    b: BackendObservation, labels: Labels, settings: Settings
) -> list[Condition]:
    out: list[Condition] = []
    override = settings.workload.overrides.get(b.index)
    limits = settings.cluster.runtime == "docker"  # the process runtime enforces no limits
    threshold = settings.alerts.cpu_percent
    if b.cpu_percent is not None:
        cores = 1.0
        if limits:
            cores = override.cpus if override and override.cpus else settings.container.cpus
        of_limit = b.cpu_percent / cores
        if of_limit > threshold:
            what = f"its {cores:g} CPU limit" if limits else "one core (no CPU limit)"
            out.append(
                Condition(
                    RuleName.CPU_HIGH,
                    labels,
                    round(of_limit, 1),
                    f"{of_limit:.0f}% of {what} (threshold {threshold:g}%)",
                )
            )
    if b.rss_bytes is not None:
        limit = b.memory_limit_bytes or (
            override.memory if override and override.memory else settings.container.memory
        )
        used = 100.0 * b.rss_bytes / limit if limit > 0 else 0.0
        if used > settings.alerts.ram_percent:
            out.append(
                Condition(
                    RuleName.RAM_HIGH,
                    labels,
                    round(used, 1),
                    f"RSS {_mib(b.rss_bytes)} = {used:.0f}% of its {_mib(limit)} limit "
                    f"(threshold {settings.alerts.ram_percent:g}%)",
                )
            )
    return out


def _host_conditions(tick: Tick, settings: Settings) -> list[Condition]:
    out: list[Condition] = []
    host = tick.host
    if host.mem_total_bytes > 0:
        available = 100.0 * host.mem_available_bytes / host.mem_total_bytes
        floor = 100.0 - settings.alerts.ram_percent
        if available < floor:
            out.append(
                Condition(
                    RuleName.HOST_MEMORY_LOW,
                    (),
                    round(available, 1),
                    f"{_mib(host.mem_available_bytes)} available = {available:.0f}% of "
                    f"{_mib(host.mem_total_bytes)} (alert below {floor:g}%)",
                )
            )
    limit, why = nic_threshold(settings, host.nic_speed_mbps)
    if limit is not None and (host.nic_rx_mbps is not None or host.nic_tx_mbps is not None):
        rx, tx = host.nic_rx_mbps or 0.0, host.nic_tx_mbps or 0.0
        if settings.host.duplex:
            value, what = (rx, "rx") if rx >= tx else (tx, "tx")
        else:
            value, what = rx + tx, "rx+tx"
        if value > limit:
            nic = f"{host.nic} " if host.nic else ""
            out.append(
                Condition(
                    RuleName.NIC_HIGH,
                    (),
                    round(value, 1),
                    f"{nic}{what} {value:.0f} Mbit/s > {limit:g} Mbit/s ({why})",
                )
            )
    return out


def nic_threshold(
    settings: Settings, observed_speed_mbps: float | None
) -> tuple[float | None, str]:
    """The nic_high threshold in Mbit/s and where it comes from; None when nothing is known."""
    if settings.alerts.nic_mbps is not None:
        return settings.alerts.nic_mbps, "alerts.nic_mbps"
    speed = settings.host.nic_mbps or observed_speed_mbps
    if not speed:
        return None, "NIC speed unknown"
    fraction = settings.host.sustained_fraction
    return fraction * speed, f"{fraction:g} x {speed:g} Mbit/s NIC"


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 1024**2:.0f} MiB"


def optional_float(value: Any) -> float | None:
    """A JSON number, or None for null (the state's optional timestamps and values)."""
    return None if value is None else float(value)

"""Graceful degradation (pure): when backends stay down and the survivors are full, raise max
clients on survivors, one backend at a time, up to a ceiling; put them back when the fleet has
recovered.

Raising a backend's max clients restarts it (Conduit reads it from its command line), so it
happens one backend at a time, never while another backend is mid-change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

FULL_AT = 0.9  # survivors this full (connected + connecting vs their max) need more room


class Move(StrEnum):
    RAISE = "raise"
    RESTORE = "restore"


@dataclass(frozen=True)
class Member:
    name: str
    healthy: bool  # running, healthy and in the front
    down_since: float | None  # when it stopped being healthy; None while healthy
    configured: int  # max clients from conduit.toml
    current: int  # max clients it runs with now
    load: int  # connected + connecting, from its /metrics


@dataclass(frozen=True)
class Change:
    move: Move
    name: str
    max_clients: int
    reason: str


def plan_degradation(
    members: list[Member], now: float, degrade_after: float, ceiling: int
) -> Change | None:
    """At most one change: the next survivor to raise, or the next raised one to restore."""
    healthy = [m for m in members if m.healthy]
    if not healthy:
        return None
    long_down = [
        m for m in members
        if not m.healthy and m.down_since is not None and now - m.down_since >= degrade_after
    ]  # fmt: skip
    if long_down:
        capacity = sum(m.current for m in healthy)
        load = sum(m.load for m in healthy)
        if load < FULL_AT * capacity:
            return None
        # Survivors: all but the long-down. One briefly out (a survivor being raised right
        # now restarts) still counts, or the others would be raised to cover it too.
        survivors = len(members) - len(long_down)
        wanted = math.ceil(sum(m.configured for m in members) / survivors)
        target = min(ceiling, wanted)
        for m in sorted(healthy, key=lambda m: m.name):
            if m.current < target:
                return Change(
                    Move.RAISE,
                    m.name,
                    target,
                    f"{len(long_down)} down for {degrade_after:g}s+ and survivors at "
                    f"{load}/{capacity} clients",
                )
        return None
    if len(healthy) == len(members):
        for m in sorted(members, key=lambda m: m.name):
            if m.current != m.configured:
                return Change(Move.RESTORE, m.name, m.configured, "the fleet has recovered")
    return None


def ceiling_for(profile_ceiling: int, fleet_capacity: int | None, members: list[Member]) -> int:
    """The most clients a survivor may be raised to: the profile's ceiling, and the host's
    capacity (the planner's bottleneck) shared among the healthy ones."""
    if not fleet_capacity:
        return profile_ceiling
    healthy = sum(m.healthy for m in members) or 1
    return min(profile_ceiling, max(fleet_capacity // healthy, 1))

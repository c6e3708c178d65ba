"""Health with rise/fall hysteresis (pure): one flapping probe does not move a backend."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Health:
    healthy: bool | None = None  # None: not probed yet (a running backend stays in the front)
    good: int = 0  # consecutive good probes
    bad: int = 0  # consecutive bad probes
    since: float = 0.0  # when `healthy` last changed
    reason: str = ""  # the last failed probe's detail


def observe_probe(
    state: Health, ok: bool, *, rise: int, fall: int, now: float, reason: str = ""
) -> Health:
    """The next health after one probe. Unknown turns healthy on the first good probe (the
    backend is already in the front), unhealthy after `fall` bad ones; unhealthy turns
    healthy after `rise` good ones."""
    if ok:
        good, bad = state.good + 1, 0
        healthy = state.healthy
        if state.healthy is None or (state.healthy is False and good >= rise):
            healthy = True
        changed = healthy != state.healthy
        return replace(state, healthy=healthy, good=good, bad=bad,
                       since=now if changed else state.since, reason="")  # fmt: skip
    good, bad = 0, state.bad + 1
    healthy = state.healthy
    if state.healthy is not False and bad >= fall:
        healthy = False
    changed = healthy != state.healthy
    return replace(state, healthy=healthy, good=good, bad=bad,
                   since=now if changed else state.since, reason=reason)  # fmt: skip


def dead(state: Health, now: float, reason: str) -> Health:
    """A runtime event said the backend died: unhealthy at once, no probes needed."""
    if state.healthy is False:
        return replace(state, good=0, reason=reason)
    return Health(healthy=False, good=0, bad=0, since=now, reason=reason)

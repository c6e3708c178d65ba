"""Drain: a backend leaves the front for new connections, its sessions end (bounded by a
timeout), then it stops. Undrain brings it back.

A drained backend is the operator's: the supervisor keeps it out of the front and does not
restart it (STATE_DIR/drained.json says which: conduitctl.intent), until `undrain`.

Without a front (front.kind = "none", e.g. real Conduit, which listens on no port) there is
nothing to drain: nobody can stop new clients from arriving. A graceful restart then waits
(bounded) for a quiet moment instead, the backend's sessions at or below a low-water mark,
and restarts it then, under a hold (ops/holds.py) so the supervisor does not fight it. The
decision is `restart_moment()`, pure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from conduitctl.errors import BadInput, ConduitctlError
from conduitctl.events import EventKind
from conduitctl.fleet import require_backend
from conduitctl.front.base import Front
from conduitctl.intent import drained, holding, set_drained
from conduitctl.ops.ready import NETWORK, READY_TIMEOUT, Probes
from conduitctl.runtime.base import LaunchSpec, Runtime, launch_specs
from conduitctl.settings import Settings

if TYPE_CHECKING:
    from conduitctl.ops.announce import Announcement

POLL_S = 0.5
LOW_WATER_FRACTION = 0.1  # no front: restart at or below this share of the max clients
NOT_SERVING_SAMPLES = 3  # /metrics unreadable this many polls in a row: nothing to protect


@dataclass(frozen=True)
class DrainResult:
    """One backend's drain (or, without a front, its wait for a quiet moment)."""

    name: str
    sessions_at_start: int | None
    # When it stopped: after a drain 0 unless the timeout ran out; without a front at most
    # `low_water` unless the timeout ran out (those sessions were cut). None: unreadable.
    sessions_left: int | None
    waited_s: float
    timed_out: bool
    low_water: int | None = None  # None: drained through the front

    def to_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


class RestartAborted(ConduitctlError):
    """A rolling restart stopped at a backend that did not come back; the ones after it
    were not touched. `announcement` says where the alert went."""

    def __init__(
        self, message: str, name: str, restarted: list[str], announcement: Announcement
    ) -> None:
        super().__init__(message)
        self.name = name
        self.restarted = restarted
        self.announcement = announcement


class Moment(StrEnum):
    """`restart_moment`'s answer: wait, or restart now and why."""

    WAIT = "wait"
    LOW = "low"  # sessions at or below the low-water mark
    NOT_SERVING = "not_serving"  # /metrics unreadable NOT_SERVING_SAMPLES times in a row
    TIMED_OUT = "timed_out"  # the bound passed: restart anyway, cutting what is left


def low_water(max_clients: int, fraction: float = LOW_WATER_FRACTION) -> int:
    """The default low-water mark: `fraction` of the backend's max clients, rounded down."""
    return math.floor(max_clients * fraction)


def restart_moment(
    samples: Sequence[int | None], low_water: int, now: float, deadline: float
) -> Moment:
    """Restart a backend now, or wait? Pure.

    `samples`: its sessions (connected + connecting) so far, oldest first, None where
    /metrics was unreadable; the newest decides. At or below `low_water`: LOW, even past the
    deadline. The last NOT_SERVING_SAMPLES unreadable: NOT_SERVING (it serves nobody we
    could protect). Otherwise TIMED_OUT once `now` >= `deadline`, else WAIT.
    """
    if samples and samples[-1] is not None and samples[-1] <= low_water:
        return Moment.LOW
    recent = samples[-NOT_SERVING_SAMPLES:]
    if len(recent) == NOT_SERVING_SAMPLES and all(s is None for s in recent):
        return Moment.NOT_SERVING
    if now >= deadline:
        return Moment.TIMED_OUT
    return Moment.WAIT


def _check(settings: Settings, name: str) -> None:
    require_backend(name, settings.backend_names())


def drain(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    name: str,
    *,
    timeout: float = 300.0,
    progress: Callable[[str], None] = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    probes: Probes = NETWORK,
) -> DrainResult:
    _check(settings, name)
    state_dir = settings.state_dir
    marked = drained(state_dir) | {name}
    set_drained(state_dir, marked)  # first: the supervisor must not put it back or restart it
    how = front.set_down(frozenset(marked))
    progress(f"{name} out of the front for new connections ({how})")
    started = clock()
    first = probes.sessions(settings, name)
    left = first
    while left and clock() - started < timeout:
        progress(f"{name}: {left} sessions left")
        sleep(max(0.0, min(POLL_S, started + timeout - clock())))  # no later than the bound
        left = probes.sessions(settings, name)
    timed_out = bool(left)
    if timed_out:
        progress(f"{name}: timeout, {left} sessions left; stopping anyway")
    runtime.stop(name)
    progress(f"{name} stopped (data kept)")
    return DrainResult(name, first, left or 0, round(clock() - started, 2), timed_out)


def undrain(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    name: str,
    *,
    progress: Callable[[str], None] = lambda _: None,
    ready_timeout: float = READY_TIMEOUT,
    spec: LaunchSpec | None = None,
    probes: Probes = NETWORK,
) -> None:
    """Start it (with `spec`, e.g. a rollout stage's, else conduit.toml's) and, once ready
    (within `ready_timeout` s, else ConduitctlError and it stays drained), put it back in
    the front."""
    _check(settings, name)
    spec = spec or next(s for s in launch_specs(settings) if s.name == name)
    runtime.start(spec)
    if probes.wait(settings, [spec.backend], ready_timeout):
        raise ConduitctlError(
            f"{name} not ready {ready_timeout:g}s after undrain; see `conduitctl logs {name}`"
        )
    marked = drained(settings.state_dir) - {name}
    front.set_down(frozenset(marked))
    set_drained(settings.state_dir, marked)
    progress(f"{name} back in the front")


def restart_when_quiet(
    settings: Settings,
    runtime: Runtime,
    name: str,
    *,
    timeout: float = 300.0,
    low_clients: int | None = None,
    progress: Callable[[str], None] = lambda _: None,
    ready_timeout: float = READY_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    spec: LaunchSpec | None = None,
    probes: Probes = NETWORK,
) -> DrainResult:
    """No front: wait up to `timeout` s for its sessions to be at or below `low_clients`
    (None: LOW_WATER_FRACTION of its max clients), then restart it (with `spec`, e.g. a
    rollout stage's, else conduit.toml's; the data is kept) and wait until it is ready.
    Past the bound it restarts anyway, cutting what is left (`timed_out`). Held from the
    supervisor while it is down.

    Raises BadInput for an unknown name, ConduitctlError when it is not ready within
    `ready_timeout` s."""
    _check(settings, name)
    if low_clients is not None and low_clients < 0:
        raise BadInput(f"low clients must be 0 or more (got {low_clients})")
    spec = spec or next(s for s in launch_specs(settings) if s.name == name)
    mark = low_water(spec.backend.max_clients) if low_clients is None else low_clients
    started = clock()
    deadline = started + timeout
    samples = [probes.sessions(settings, name)]
    while (moment := restart_moment(samples, mark, clock(), deadline)) is Moment.WAIT:
        if len(samples) == 1:
            progress(f"{name}: {samples[0]} sessions; waiting for {mark} or fewer (no front)")
        sleep(max(0.0, min(POLL_S, deadline - clock())))  # no later than the bound
        samples.append(probes.sessions(settings, name))
    left = samples[-1]
    waited = round(clock() - started, 2)
    if moment is Moment.TIMED_OUT:
        progress(f"{name}: timed out after {timeout:g}s with {left} sessions; restarting anyway")
    elif moment is Moment.NOT_SERVING:
        progress(f"{name}: its /metrics does not answer; restarting")
    else:
        progress(f"{name}: {left} sessions (low-water {mark}); restarting")
    with holding(settings.state_dir, [name], seconds=ready_timeout + 60):
        runtime.stop(name)
        runtime.start(spec)
        if probes.wait(settings, [spec.backend], ready_timeout):
            raise ConduitctlError(
                f"{name} not ready {ready_timeout:g}s after its restart; "
                f"see `conduitctl logs {name}`"
            )
    progress(f"{name} restarted and ready")
    return DrainResult(
        name,
        sessions_at_start=samples[0],
        sessions_left=left,
        waited_s=waited,
        timed_out=moment is Moment.TIMED_OUT,
        low_water=mark,
    )


def graceful_restart(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    name: str,
    *,
    timeout: float = 300.0,
    low_clients: int | None = None,
    progress: Callable[[str], None] = lambda _: None,
    ready_timeout: float = READY_TIMEOUT,
) -> DrainResult:
    """Restart one backend without cutting sessions where it can; the data is kept.

    With a front: drain (no session cut within `timeout`), then start and put back.
    Without one (front.kind = "none"): `restart_when_quiet` with `low_clients`.
    Raises ConduitctlError when it is not ready within `ready_timeout` s."""
    if not settings.front.enabled:
        return restart_when_quiet(
            settings,
            runtime,
            name,
            timeout=timeout,
            low_clients=low_clients,
            progress=progress,
            ready_timeout=ready_timeout,
        )
    result = drain(settings, runtime, front, name, timeout=timeout, progress=progress)
    undrain(settings, runtime, front, name, progress=progress, ready_timeout=ready_timeout)
    return result


def rolling_restart(
    settings: Settings,
    runtime: Runtime,
    front: Front,
    *,
    timeout: float = 300.0,
    low_clients: int | None = None,
    progress: Callable[[str], None] = lambda _: None,
    ready_timeout: float = READY_TIMEOUT,
) -> list[DrainResult]:
    """Every backend, one at a time (`graceful_restart`), each ready again (and back in the
    front) before the next, so all but one keep serving.

    Stops at the first one that does not come back: records an OPERATION_FAILED event and
    alerts the notifiers (`announce`), then raises RestartAborted naming it; the backends
    after it are not touched. With a front, that one stays drained (out of the front, left
    alone by the supervisor) until `conduitctl undrain`."""
    results: list[DrainResult] = []
    names = settings.backend_names()
    for i, name in enumerate(names, start=1):
        progress(f"[{i}/{len(names)}] {name}")
        try:
            result = graceful_restart(
                settings,
                runtime,
                front,
                name,
                timeout=timeout,
                low_clients=low_clients,
                progress=progress,
                ready_timeout=ready_timeout,
            )
        except ConduitctlError as exc:
            from conduitctl.ops.announce import announce  # apprise: only when needed

            done = [r.name for r in results]
            untouched = names[i:]
            message = (
                f"rolling restart stopped at {name}: {exc}; {len(done)} of {len(names)} "
                f"restarted, not touched: {', '.join(untouched) or 'none'}"
            )
            outcome = announce(
                settings,
                EventKind.OPERATION_FAILED,
                name,
                message,
                operation="rolling_restart",
                error=str(exc),
                restarted=done,
                not_touched=untouched,
            )
            progress(f"alert: {outcome.summary()}")
            raise RestartAborted(f"{message} ({outcome.summary()})", name, done, outcome) from exc
        results.append(result)
    return results

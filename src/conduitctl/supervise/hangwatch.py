"""Sub-second greeting probes, for profiles that greet: the hang window.

A hung station (alive, silent) still completes TCP handshakes in its kernel backlog, so the
front's connects succeed and its clients wait for a greeting that never comes. The regular
probe finds it only after `fall` probe intervals; this watch greets every backend in service
every GREETING_INTERVAL_S and gives it GREETING_TIMEOUT_S to answer (a healthy station on
loopback answers in milliseconds). A miss is confirmed at once by a second probe; two in a
row wake the supervisor, which takes the station out of the front without waiting for its
next probe round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from conduitctl.fleet import BackendSpec
from conduitctl.supervise.probes import greeting
from conduitctl.workloads import Profile

GREETING_INTERVAL_S = 0.2
GREETING_TIMEOUT_S = 0.25
FALL = 2  # misses in a row: the second one is sent as soon as the first times out

# (backend, timeout s) -> None when it greeted, else why not
Greeter = Callable[[BackendSpec, float], Awaitable[str | None]]


def greeter_for(profile: Profile) -> Greeter:
    async def greet(backend: BackendSpec, timeout: float) -> str | None:
        assert backend.listen_port is not None
        try:
            await greeting(backend.host, backend.listen_port, timeout, profile.greeting_prefix,
                           profile.busy_prefix, backend.name)  # fmt: skip
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            if isinstance(exc, TimeoutError | asyncio.TimeoutError):
                return f"no greeting within {timeout * 1000:.0f} ms"
            return str(exc) or type(exc).__name__
        return None

    return greet


async def watch(
    serving: Callable[[], list[BackendSpec]],
    on_silent: Callable[[str, str], None],
    greet: Greeter,
    stopping: asyncio.Event,
    *,
    interval: float = GREETING_INTERVAL_S,
    timeout: float = GREETING_TIMEOUT_S,
) -> None:
    """Until `stopping`: greet each backend `serving()` names; `on_silent(name, why)` for one
    that missed FALL greetings in a row."""

    async def one(backend: BackendSpec) -> None:
        why: str | None = None
        for _ in range(FALL):
            why = await greet(backend, timeout)
            if why is None:
                return
        on_silent(backend.name, why or "no greeting")

    while not stopping.is_set():
        targets = [b for b in serving() if b.listen_port is not None]
        if targets:
            await asyncio.gather(*(one(b) for b in targets))
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)

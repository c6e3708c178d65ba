"""Sub-second greeting probes, for profiles that greet: the hang window.

A hung station (alive, silent) still completes TCP handshakes in its kernel backlog, so the
front's connects succeed and its clients wait for a greeting that never comes. The regular
probe finds it only after `fall` probe intervals. This watch looks every GREETING_INTERVAL_S
at the kernel's accept queues (one netlink dump, filtered by port in the kernel): a connection
left waiting in a station's queue means it may have stopped taking them, and one greeting
(GREETING_TIMEOUT_S to answer; a healthy station on loopback answers in milliseconds)
confirms it. That wakes the supervisor, which
takes the station out of the front without waiting for its next probe round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from conduitctl.fleet import BackendSpec
from conduitctl.supervise.probes import greeting
from conduitctl.workloads import Profile

# Under a 600-client ramp a hang fails the new connections it meets until it is out: looks
# every 0.5 s let 7-22 fail, every 0.1 s 3-5 (benchmarks/bench_hang.py), for about 0.5 % of a
# core while clients are served. Only profiles that greet run it: not real Conduit.
GREETING_INTERVAL_S = 0.1
# While no station in service has a client, a hang fails no connection: the looks slow to
# this, a fifth as many (a look costs about 0.47 ms of CPU on this 2-core VM).
IDLE_INTERVAL_S = 0.5
GREET_EVERY_S = 0.4  # health.hang_check = "greetings": a look at every station this often
GREETING_TIMEOUT_S = 0.25
FALL = 2  # misses in a row: the second one is sent as soon as the first times out
QUEUE_STRIKES = 1  # looks with connections waiting in its accept queue, before a greeting

# (backend, timeout s) -> None when it greeted, else why not
Greeter = Callable[[BackendSpec, float], Awaitable[str | None]]
# listen ports -> {port: (connections queued, backlog)} (observe.host.accept_queues)
QueueReader = Callable[[set[int]], Mapping[int, tuple[int, int | None]]]


def next_look_in(
    interval: float, *, clients: bool, waiting: Mapping[int, tuple[int, int | None]]
) -> float:
    """Seconds to the next queue look: `interval` while a station in service has clients or
    a connection waited at this look, else IDLE_INTERVAL_S (nothing to fail meanwhile)."""
    if clients or any(queued for queued, _ in waiting.values()):
        return interval
    return max(interval, IDLE_INTERVAL_S)


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
    queued: QueueReader | None = None,
    serving_clients: Callable[[], bool] | None = None,
) -> None:
    """Until `stopping`: every `interval`, look for backends `serving()` names that stopped
    answering; `on_silent(name, why)` for each.

    With `queued` (the kernel's accept queues, one netlink read for the whole fleet): a
    backend whose listen socket kept connections waiting QUEUE_STRIKES looks in a row is
    greeted once to confirm. A station that takes its connections costs nothing, so the
    watch costs the same at 8 backends as at 64. Without it: every backend is greeted every
    `interval`, FALL misses in a row.

    With `queued` and `serving_clients` (whether any station in service had clients at the
    last tick): while none has and no connection waited at the last look, the looks come
    every IDLE_INTERVAL_S instead; the first client seen brings back `interval`."""
    strikes: dict[str, int] = {}

    async def confirm(backend: BackendSpec, tries: int) -> None:
        why: str | None = None
        for _ in range(tries):
            why = await greet(backend, timeout)
            if why is None:
                return
        on_silent(backend.name, why or "no greeting")

    while not stopping.is_set():
        targets = [b for b in serving() if b.listen_port is not None]
        pace = interval
        if targets and queued is None:
            await asyncio.gather(*(confirm(b, FALL) for b in targets))
        elif targets and queued is not None:
            waiting = queued({b.listen_port for b in targets if b.listen_port is not None})
            suspects = []
            for b in targets:
                queue = waiting.get(b.listen_port) if b.listen_port is not None else None
                strikes[b.name] = strikes.get(b.name, 0) + 1 if queue and queue[0] > 0 else 0
                if strikes[b.name] >= QUEUE_STRIKES:
                    strikes[b.name] = 0
                    suspects.append(b)
            if suspects:
                await asyncio.gather(*(confirm(b, 1) for b in suspects))
            clients = serving_clients is None or serving_clients()
            pace = next_look_in(interval, clients=clients, waiting=waiting)
        await asyncio.sleep(pace)  # a timer, not a task per look: it runs 10 times a second

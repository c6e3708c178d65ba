"""Where the drills read the time and wait: injected, as the daemon takes its `clock` (and
the CLI's Fleet.clock), so unit tests drive a drill's waits with a fake one and sleep for
real nowhere."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """The real clock by default; a test passes its own functions."""

    now: Callable[[], float] = time.time  # unix seconds: what events and history carry
    monotonic: Callable[[], float] = time.monotonic  # deadlines and durations
    sleep: Callable[[float], None] = time.sleep  # blocking waits (worker threads)
    pause: Callable[[float], Awaitable[None]] = asyncio.sleep  # waits in the event loop
    cpu: Callable[[], float] = time.process_time  # this process's CPU seconds


REAL_CLOCK = Clock()

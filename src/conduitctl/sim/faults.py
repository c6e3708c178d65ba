"""Fault injection for chaos drills and tests: leak memory, hold memory per client, burn CPU.

Crash and hang live in the server, because they act on its sockets and event loop. Stdlib only.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import threading
import time

PAGE = 4096
MIB = 1024 * 1024
BURN_PERIOD = 0.1
# hashlib releases the GIL for inputs over 2 KiB, so the burn is real CPU time that does not
# starve the event loop of the interpreter lock.
_BURN_CHUNK = b"\x5a" * (256 * 1024)


def touch_pages(block: bytearray | mmap.mmap) -> None:
    """Write one byte per page: fresh (calloc'd or mmap'd) pages are not resident until written."""
    block[::PAGE] = b"\x01" * len(range(0, len(block), PAGE))


class MemoryLeak:
    """Allocates and touches memory at a fixed rate and never frees it."""

    def __init__(self, mb_per_s: float) -> None:
        self.mb_per_s = mb_per_s
        self._held: list[bytearray] = []
        self.leaked_bytes = 0
        self._carry = 0.0

    def tick(self, seconds: float) -> int:
        """Leak ``mb_per_s * seconds`` more (fractions carry over); returns bytes added."""
        self._carry += self.mb_per_s * MIB * seconds
        n = int(self._carry)
        if n <= 0:
            return 0
        self._carry -= n
        block = bytearray(n)
        touch_pages(block)
        self._held.append(block)
        self.leaked_bytes += n
        return n


class SessionMemory:
    """Holds ``mb_per_session`` MB, allocated and touched, for each open client session.

    A load-dependent regression: the process stays small while few clients are connected and
    grows with every one. Each block is an anonymous mmap, so ``release`` returns its pages to
    the OS at once (a freed large bytearray may stay in the malloc heap).
    """

    def __init__(self, mb_per_session: float) -> None:
        self.bytes_per_session = int(mb_per_session * MIB)
        self.held_bytes = 0

    def acquire(self) -> mmap.mmap | None:
        """One session's block, resident; ``None`` when the fault is off (0 MB).

        Pass the result to ``release`` when the session ends. Raises OSError when no address
        space is left; under a cgroup memory limit the kernel OOM-kills instead.
        """
        if self.bytes_per_session <= 0:
            return None
        # Private, like heap memory (the default anonymous mmap is shared, i.e. shmem).
        block = mmap.mmap(-1, self.bytes_per_session, flags=mmap.MAP_PRIVATE)
        try:
            touch_pages(block)
        except BaseException:
            block.close()
            raise
        self.held_bytes += self.bytes_per_session
        return block

    def release(self, block: mmap.mmap | None) -> None:
        """Unmap a block from ``acquire``; ``None`` and an already released block are no-ops."""
        if block is None or block.closed:
            return
        block.close()
        self.held_bytes -= self.bytes_per_session


def burn_shares(fraction: float) -> list[float]:
    """Split a CPU load of ``fraction`` cores over threads of at most one core each."""
    if fraction <= 0:
        return []
    threads = math.ceil(fraction)
    return [fraction / threads] * threads


class CpuBurner:
    """Keeps ``fraction`` of a core busy (duty cycle over 100 ms) until ``stop()``."""

    def __init__(self, fraction: float) -> None:
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._burn, args=(share,), name="burn-cpu", daemon=True)
            for share in burn_shares(fraction)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _burn(self, share: float) -> None:
        busy = BURN_PERIOD * share
        while not self._stop.is_set():
            start = time.monotonic()
            digest = hashlib.sha256()
            while time.monotonic() - start < busy:
                digest.update(_BURN_CHUNK)
            idle = BURN_PERIOD - (time.monotonic() - start)
            if idle > 0:
                self._stop.wait(idle)

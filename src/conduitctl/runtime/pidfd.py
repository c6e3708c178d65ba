"""Process deaths from pidfds, not polling (Linux >= 5.3).

`on_exit(name, detail)` is called on the event loop's thread as soon as the kernel says the
process ended; the supervisor then ticks at once instead of waiting for the next probe.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

OnExit = Callable[[str, dict[str, Any]], None]


class PidWatcher:
    """One pidfd per backend process; readable when the process exits.

    Works for processes this daemon did not start (adopted after its own restart)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_exit: OnExit) -> None:
        self.loop = loop
        self.on_exit = on_exit
        self.fds: dict[str, tuple[int, int]] = {}  # name -> (pid, fd)

    def start(self) -> None:
        """Nothing to start: each process is watched from `watch` on."""

    def watch(self, name: str, pid: int) -> None:
        current = self.fds.get(name)
        if current and current[0] == pid:
            return
        self.forget(name)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.loop.call_soon(self.on_exit, name, {"pid": pid, "reason": "gone"})
            return
        self.fds[name] = (pid, fd)
        self.loop.add_reader(fd, self._fired, name)

    def _fired(self, name: str) -> None:
        pid, _ = self.fds.get(name, (None, None))
        self.forget(name)
        self.on_exit(name, {"pid": pid, "reason": "exited"})

    def forget(self, name: str) -> None:
        entry = self.fds.pop(name, None)
        if entry:
            self.loop.remove_reader(entry[1])
            os.close(entry[1])

    def close(self) -> None:
        for name in list(self.fds):
            self.forget(name)

"""Deaths from runtime events, not polling: pidfd for processes, docker events for containers.

Both call `on_exit(name, detail)` on the event loop's thread as soon as the kernel or dockerd
says so; the daemon then ticks at once instead of waiting for the next probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from conduitctl import labels

log = logging.getLogger(__name__)

OnExit = Callable[[str, dict[str, Any]], None]


class PidWatcher:
    """One pidfd per backend process; readable when the process exits (Linux >= 5.3).

    Works for processes this daemon did not start (adopted after its own restart)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_exit: OnExit) -> None:
        self.loop = loop
        self.on_exit = on_exit
        self.fds: dict[str, tuple[int, int]] = {}  # name -> (pid, fd)

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


class DockerEventWatcher:
    """dockerd's event stream for this cluster's containers (die, oom, kill, start), read in
    a thread and handed to the loop."""

    ACTIONS = ("die", "oom", "start")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: Any,
        cluster: str,
        on_event: Callable[[str, str, dict[str, Any]], None],
    ) -> None:
        self.loop = loop
        self.client = client
        self.cluster = cluster
        self.on_event = on_event
        self.stream: Any = None
        self.thread = threading.Thread(target=self._run, name="docker-events", daemon=True)
        self.stopping = False

    def start(self) -> None:
        self.stream = self.client.events(
            decode=True,
            filters={
                "type": "container",
                "label": [f"{labels.LABEL_OWNER}={labels.OWNER}",
                          f"{labels.LABEL_CLUSTER}={self.cluster}"],
                "event": list(self.ACTIONS),
            },
        )  # fmt: skip
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.stream:
                attrs = event.get("Actor", {}).get("Attributes", {})
                name, action = attrs.get("name", ""), event.get("Action", "")
                self.loop.call_soon_threadsafe(self.on_event, name, action, attrs)
        except Exception as exc:  # the stream ends when dockerd restarts or on close()
            if not self.stopping:
                log.warning("docker event stream ended: %s", exc)

    def close(self) -> None:
        self.stopping = True
        if self.stream is not None:
            with contextlib.suppress(Exception):
                self.stream.close()

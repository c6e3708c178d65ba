"""Container deaths from dockerd's event stream, not polling.

The stream of this cluster's containers (die, oom, start) is read in a thread and each event
handed to the event loop's thread, so the supervisor ticks at once instead of waiting for the
next probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from conduitctl import labels
from conduitctl.runtime.base import OnRuntimeEvent, RuntimeEvent

log = logging.getLogger(__name__)


class DockerEventWatcher:
    """dockerd's events for this cluster's containers; `client` is called once, at start."""

    ACTIONS = ("die", "oom", "start")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: Callable[[], Any],
        cluster: str,
        on_event: OnRuntimeEvent,
    ) -> None:
        self.loop = loop
        self.client = client
        self.cluster = cluster
        self.on_event = on_event
        self.stream: Any = None
        self.thread = threading.Thread(target=self._run, name="docker-events", daemon=True)
        self.stopping = False

    def start(self) -> None:
        self.stream = self.client().events(
            decode=True,
            filters={
                "type": "container",
                "label": [f"{labels.LABEL_OWNER}={labels.OWNER}",
                          f"{labels.LABEL_CLUSTER}={self.cluster}"],
                "event": list(self.ACTIONS),
            },
        )  # fmt: skip
        self.thread.start()

    def watch(self, name: str, pid: int) -> None:
        """Nothing per process: the stream covers every container of the cluster."""

    def forget(self, name: str) -> None:
        """Nothing per process (see `watch`)."""

    def _run(self) -> None:
        try:
            for event in self.stream:
                attrs = event.get("Actor", {}).get("Attributes", {})
                name, action = attrs.get("name", ""), event.get("Action", "")
                if action not in self.ACTIONS:
                    continue
                kind = RuntimeEvent(action)
                detail = {"exit_code": attrs.get("exitCode")} if kind == RuntimeEvent.DIED else {}
                self.loop.call_soon_threadsafe(self.on_event, name, kind, detail)
        except Exception as exc:  # the stream ends when dockerd restarts or on close()
            if not self.stopping:
                log.warning("docker event stream ended: %s", exc)

    def close(self) -> None:
        self.stopping = True
        if self.stream is not None:
            with contextlib.suppress(Exception):
                self.stream.close()

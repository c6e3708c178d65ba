"""Container deaths from dockerd's event stream, not polling.

The stream of this cluster's containers (die, oom, start) is read in a thread and each event
handed to the event loop's thread, so the supervisor ticks at once instead of waiting for the
next probe. A stream that ends (dockerd restarted) is opened again, from the last event seen:
OOM kills after a dockerd restart are still reported.
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
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 30.0


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
        self._stop = threading.Event()

    def _open(self, since: float | None = None) -> Any:
        return self.client().events(
            decode=True,
            since=since,
            filters={
                "type": "container",
                "label": [f"{labels.LABEL_OWNER}={labels.OWNER}",
                          f"{labels.LABEL_CLUSTER}={self.cluster}"],
                "event": list(self.ACTIONS),
            },
        )  # fmt: skip

    def start(self) -> None:
        self.stream = self._open()
        self.thread.start()

    def watch(self, name: str, pid: int) -> None:
        """Nothing per process: the stream covers every container of the cluster."""

    def forget(self, name: str) -> None:
        """Nothing per process (see `watch`)."""

    def _run(self) -> None:
        """Read the stream; when it ends (dockerd restarted, an upgrade) open it again, from
        the last event seen, backing off up to RECONNECT_MAX_S, until `close`."""
        last_seen: float | None = None
        backoff = RECONNECT_FIRST_S
        while not self.stopping:
            try:
                if self.stream is None:
                    self.stream = self._open(since=last_seen)
                    log.info("docker event stream reconnected")
                    backoff = RECONNECT_FIRST_S
                for event in self.stream:
                    last_seen = event.get("time", last_seen)
                    self._deliver(event)
            except Exception as exc:
                if self.stopping:
                    return
                log.warning("docker event stream lost; reconnecting",
                            extra={"error": str(exc), "retry_s": backoff})  # fmt: skip
            else:
                if self.stopping:
                    return
                log.warning("docker event stream ended; reconnecting", extra={"retry_s": backoff})
            self.stream = None
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, RECONNECT_MAX_S)

    def _deliver(self, event: dict[str, Any]) -> None:
        attrs = event.get("Actor", {}).get("Attributes", {})
        name, action = attrs.get("name", ""), event.get("Action", "")
        if action not in self.ACTIONS:
            return
        kind = RuntimeEvent(action)
        detail = {"exit_code": attrs.get("exitCode")} if kind == RuntimeEvent.DIED else {}
        self.loop.call_soon_threadsafe(self.on_event, name, kind, detail)

    def close(self) -> None:
        self.stopping = True
        self._stop.set()
        if self.stream is not None:
            with contextlib.suppress(Exception):
                self.stream.close()

"""The docker event watcher survives dockerd restarts: a stream that breaks or ends is
opened again from the last event seen, and every event still reaches the supervisor."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

from conduitctl.runtime import docker_events
from conduitctl.runtime.base import RuntimeEvent
from conduitctl.runtime.docker_events import DockerEventWatcher


def event(name: str, action: str, ts: int) -> dict[str, Any]:
    return {
        "Action": action,
        "time": ts,
        "Actor": {"Attributes": {"name": name, "exitCode": "137"}},
    }


class FlakyDocker:
    """Three streams: one that breaks (dockerd restarting), one that ends, then a quiet one."""

    def __init__(self) -> None:
        self.since: list[float | None] = []
        self.quiet = threading.Event()

    def events(self, decode: bool, since: float | None, filters: dict[str, Any]) -> Iterator[Any]:
        self.since.append(since)
        return self._stream(len(self.since))

    def _stream(self, n: int) -> Iterator[dict[str, Any]]:
        if n == 1:
            yield event("c-1", "die", 100)
            raise ConnectionError("dockerd went away")
        if n == 2:
            yield event("c-2", "oom", 105)
            yield event("c-2", "die", 106)
            return
        self.quiet.set()
        threading.Event().wait(5)  # nothing more happens
        yield from ()


def test_a_broken_or_ended_stream_is_reopened_from_the_last_event(monkeypatch):
    monkeypatch.setattr(docker_events, "RECONNECT_FIRST_S", 0.01)
    docker = FlakyDocker()
    seen: list[tuple[str, RuntimeEvent]] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        watcher = DockerEventWatcher(loop, lambda: docker, "c",
                                     lambda name, kind, _d: seen.append((name, kind)))  # fmt: skip
        watcher.start()
        while not docker.quiet.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        watcher.close()

    asyncio.run(run())
    assert seen == [
        ("c-1", RuntimeEvent.DIED),
        ("c-2", RuntimeEvent.OOM),
        ("c-2", RuntimeEvent.DIED),
    ]
    assert docker.since == [None, 100, 106]  # each reconnect starts where the last one stopped

"""The hang watch (sub-second greetings) against a fake greeter, and what the supervisor's
next tick does with a silent backend: out of the front at once, not probed again first."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_supervisor_tick import Rig

from conduitctl.fleet import BackendSpec
from conduitctl.supervise.hangwatch import FALL, IDLE_INTERVAL_S, next_look_in, watch


def backend(name: str, port: int) -> BackendSpec:
    return BackendSpec(name=name, index=int(name[-1]), host="127.0.0.1", listen_port=port,
                       metrics_port=port + 100, max_clients=10, bandwidth_mbps=-1,
                       memory_bytes=2**28, cpus=1.0)  # fmt: skip


def test_a_backend_missing_two_greetings_in_a_row_is_reported_silent() -> None:
    calls: list[str] = []
    silent: list[tuple[str, str]] = []
    flaky = iter([None, "no greeting within 250 ms", None])  # one miss, then it answers

    async def greet(b: BackendSpec, timeout: float) -> str | None:
        calls.append(b.name)
        if b.name == "c-1":
            return "no greeting within 250 ms"
        if b.name == "c-3":
            return next(flaky, None)
        return None

    async def run() -> None:
        stopping = asyncio.Event()
        backends = [backend("c-1", 1000), backend("c-2", 1001), backend("c-3", 1002)]

        def on_silent(name: str, why: str) -> None:
            silent.append((name, why))
            stopping.set()

        await asyncio.wait_for(watch(lambda: backends, on_silent, greet, stopping,
                                     interval=0.01), 5)  # fmt: skip

    asyncio.run(run())
    assert silent == [("c-1", "no greeting within 250 ms")]
    assert calls.count("c-1") == FALL


def test_a_silent_backend_leaves_the_front_on_the_next_tick_without_a_probe(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.tick(at=0)
    rig.supervisor.on_silent("c-1", "no greeting within 250 ms")
    assert rig.supervisor.wake.is_set()
    tick = rig.tick(at=0.3)
    assert rig.probes.probed[-1] == ["c-2"]  # not waited for
    c1 = next(b for b in tick.backends if b.name == "c-1")
    assert c1.healthy is False and not c1.in_front
    assert [b.name for b in rig.supervisor.serving()] == ["c-2"]


def test_the_queue_looks_slow_down_only_while_nothing_is_served_or_waiting() -> None:
    assert next_look_in(0.1, clients=True, waiting={}) == 0.1
    assert next_look_in(0.1, clients=False, waiting={9000: (1, 511)}) == 0.1  # one waits
    assert next_look_in(0.1, clients=False, waiting={9000: (0, 511)}) == IDLE_INTERVAL_S
    assert next_look_in(0.1, clients=False, waiting={}) == IDLE_INTERVAL_S
    assert next_look_in(2.0, clients=False, waiting={}) == 2.0  # never faster than asked


def test_the_supervisor_counts_clients_only_of_running_stations(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.tick(at=0)
    assert not rig.supervisor.serving_clients()
    slot = rig.supervisor.slots["c-1"]
    slot.values["conduit_connecting_clients"] = 2
    assert rig.supervisor.serving_clients()
    slot.running = False
    assert not rig.supervisor.serving_clients()

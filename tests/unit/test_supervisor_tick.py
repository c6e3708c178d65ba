"""The Supervisor's tick against fakes and a fake clock: restarts with backoff, the crash
loop, the front's out-and-back-in, and what it leaves to the operator. No sleeps; the pure
policies it applies are tests/unit/test_supervise_policy.py's."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from fakes import START, FakeClock, FakeFront, FakeProbes, FakeRuntime, Journal, fleet_config

from conduitctl.events import Event, EventKind
from conduitctl.intent import holding, set_drained
from conduitctl.observe.model import Tick
from conduitctl.runtime.base import launch_specs
from conduitctl.settings import settings_from_dict
from conduitctl.supervise.daemon import PORT_SWEEP_TICKS, Supervisor

BACKOFF, BACKOFF_MAX, LOOP_RESTARTS = 2.0, 8.0, 3
LOOP_BACKOFF_MAX, MIN_HEALTHY = 30.0, 20
HEALTH = {
    "rise": 2,
    "fall": 2,
    "interval": 1,
    "timeout": 0.5,
    "restart_after": 5,
    "restart_backoff": BACKOFF,
    "restart_backoff_max": BACKOFF_MAX,
    "crash_loop_restarts": LOOP_RESTARTS,
    "crash_loop_window": 60,
    "crash_loop_backoff_max": LOOP_BACKOFF_MAX,
    "min_healthy": MIN_HEALTHY,
}


class Rig:
    """A supervisor over a running two-backend fleet, everything it touches faked."""

    def __init__(self, tmp_path: Path) -> None:
        self.state_dir = tmp_path / "state"
        settings = settings_from_dict(fleet_config(self.state_dir, 2, health=HEALTH))
        self.clock = FakeClock()
        self.journal: Journal = []
        self.runtime = FakeRuntime(self.clock, self.journal)
        for spec in launch_specs(settings):
            self.runtime.seed(spec)
        self.front = FakeFront(self.journal)
        self.probes = FakeProbes(self.runtime)
        self.events: list[Event] = []
        self.stolen: dict[str, str] = {}  # backend -> the port another process holds
        self.supervisor = Supervisor(settings, self.runtime, self.front,
                                     state_dir=self.state_dir, clock=self.clock,
                                     sinks=[self.events.append],
                                     prober=self.probes.probe_all,
                                     port_check=lambda _s, targets: {
                                         b.name: self.stolen[b.name] for b, _pid in targets
                                         if b.name in self.stolen})  # fmt: skip
        self.supervisor.adopt()

    def tick(self, at: float | None = None) -> Tick:
        """One tick at `at` s after the start (or now)."""
        if at is not None:
            self.clock.now = START + at
        return asyncio.run(self.supervisor.tick())

    def starts(self, name: str) -> list[object]:
        return [c for c in self.runtime.mutations() if c == ("start", name)]

    def of(self, kind: EventKind, name: str | None = None) -> list[Event]:
        return [e for e in self.events if e.kind is kind and (name is None or e.backend == name)]

    def restarts_at(self, name: str) -> list[float]:
        return [round(e.ts - START, 3) for e in self.of(EventKind.RESTART, name)]


def test_a_healthy_fleet_is_adopted_and_left_alone(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    for t in range(5):
        tick = rig.tick(at=t)
    assert rig.runtime.mutations() == [] and rig.front.installs == []
    assert [b.healthy for b in tick.backends] == [True, True]
    assert rig.probes.probed[-1] == ["c-1", "c-2"]
    assert [e.kind for e in rig.events] == [EventKind.DAEMON_START]


def test_a_dead_backend_leaves_the_front_and_is_restarted_with_backoff(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.tick(at=0)
    rig.runtime.kill("c-1")
    rig.tick(at=10)  # the first restart is immediate
    assert rig.journal[:3] == [("front.set_down", ("c-1",)), ("stop", "c-1"), ("start", "c-1")]
    assert [e.message for e in rig.of(EventKind.FRONT_OUT)] == [
        "c-1 out of the front (not running)"
    ]

    for restarted in (12.0, 16.0):  # BACKOFF after the first restart, then twice that
        rig.runtime.kill("c-1")
        before = len(rig.starts("c-1"))
        rig.tick(at=restarted - 1.5)
        rig.tick(at=restarted - 0.1)
        assert len(rig.starts("c-1")) == before  # dead, but its backoff is not over
        rig.tick(at=restarted)
        assert rig.restarts_at("c-1")[-1] == restarted

    assert rig.restarts_at("c-1") == [10.0, 12.0, 16.0]
    assert [e.data["attempt"] for e in rig.of(EventKind.RESTART)] == [1, 2, 3]
    assert len(rig.starts("c-1")) == 3 and rig.starts("c-2") == []
    assert rig.of(EventKind.FRONT_OUT, "c-1")[1:] == []  # out once, not once per death


def test_a_crash_loop_is_said_once_and_the_restarts_go_on_until_it_stays_healthy(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.tick(at=0)
    t = 1.0
    while len(rig.of(EventKind.CRASH_LOOP)) == 0 and t < 60:
        if rig.runtime.containers["c-1"].pid is not None:
            rig.runtime.kill("c-1")
        rig.tick(at=t)
        t += 1
    assert len(rig.starts("c-1")) == LOOP_RESTARTS + 1  # declared, and restarted anyway
    [loop] = rig.of(EventKind.CRASH_LOOP, "c-1")
    assert loop.data == {"restarts": LOOP_RESTARTS, "window_s": 60.0}
    assert f"at most {LOOP_BACKOFF_MAX:g}s apart" in loop.message

    for _ in range(8):  # it keeps dying: restarted each time its (capped) backoff is over
        rig.runtime.kill("c-1")
        t = rig.supervisor.slots["c-1"].restart.next_at - START
        tick = rig.tick(at=t)
    at = rig.restarts_at("c-1")
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert max(gaps) == LOOP_BACKOFF_MAX > BACKOFF_MAX  # slower than outside a loop
    assert len(rig.of(EventKind.CRASH_LOOP)) == 1  # said once
    assert {b.name: b.crash_looping for b in tick.backends} == {"c-1": True, "c-2": False}
    assert rig.front.installed == (1, frozenset({"c-1"}))  # kept out of the front meanwhile

    for later in range(int(t) + 1, int(t) + MIN_HEALTHY + 4):  # now it lives, and is healthy
        tick = rig.tick(at=later)
    assert {b.name: b.crash_looping for b in tick.backends} == {"c-1": False, "c-2": False}
    assert rig.front.installed[1] == frozenset()  # back in the front
    assert rig.supervisor.slots["c-1"].restart.attempts == 0  # the backoff starts over


def test_an_unhealthy_backend_leaves_the_front_and_returns_after_rise_probes(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.tick(at=0)
    rig.probes.failing = {"c-2"}  # alive, but its probes fail
    rig.tick(at=1)
    assert rig.front.installs == []  # one bad probe is not `fall` of them
    rig.tick(at=2)
    assert rig.front.installs == [frozenset({"c-2"})]
    assert [e.data["healthy"] for e in rig.of(EventKind.HEALTH, "c-2")] == [False]

    rig.probes.failing = set()
    rig.tick(at=3)
    assert rig.front.installs == [frozenset({"c-2"})]  # one good probe is not `rise` of them
    tick = rig.tick(at=4)
    assert rig.front.installs == [frozenset({"c-2"}), frozenset()]
    assert [e.message for e in rig.of(EventKind.FRONT_IN)] == [
        "c-2 back into the front (healthy again)"
    ]
    assert {b.name: b.in_front for b in tick.backends} == {"c-1": True, "c-2": True}
    assert rig.runtime.mutations() == []  # back within restart_after: never restarted


def test_a_backend_unhealthy_for_restart_after_is_restarted(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.tick(at=0)
    rig.probes.failing = {"c-2"}
    for t in (1, 2, 3, 4, 5, 6):  # unhealthy from t=2
        rig.tick(at=t)
    assert rig.starts("c-2") == []
    rig.tick(at=7)  # restart_after (5 s) since it turned unhealthy
    assert rig.starts("c-2") == [("start", "c-2")]
    assert rig.of(EventKind.RESTART, "c-2")[0].message.startswith(
        "restarting c-2 (unhealthy (timeout)), attempt 1"
    )


def test_a_held_backend_is_left_to_the_operator_until_the_hold_ends(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.tick(at=0)
    with holding(rig.state_dir, ["c-1"]):
        rig.runtime.kill("c-1")  # e.g. `conduitctl restart c-1` stopped it
        for t in (1, 2, 30):
            rig.tick(at=t)
        assert rig.runtime.mutations() == [] and rig.front.installs == []
    rig.tick(at=31)  # let go: its state is read again, and it is dead
    assert rig.starts("c-1") == [("start", "c-1")]
    assert rig.front.installs == [frozenset({"c-1"})]


def test_a_drained_backend_stays_stopped_and_out(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.tick(at=0)
    set_drained(rig.state_dir, {"c-2"})
    rig.runtime.stop("c-2")  # what `conduitctl drain c-2` does after the front
    rig.journal.clear()
    for t in (1, 2, 100):
        rig.tick(at=t)
    assert rig.journal == []
    assert rig.supervisor.front_down() == frozenset({"c-2"})  # in every front install


def test_a_backend_whose_port_another_process_holds_is_never_healthy(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.tick(at=0)
    rig.stolen["c-2"] = "port 28001 is held by pid 77 (nc), not by the station's process"
    # A healthy station's ports are looked at every PORT_SWEEP_TICKS ticks (one that holds
    # its listener cannot lose it); its probes pass (someone answers), yet one look is enough.
    for at in range(1, PORT_SWEEP_TICKS + 1):
        tick = rig.tick(at=at)
        c2 = next(b for b in tick.backends if b.name == "c-2")
        if c2.port_stolen:
            break
    assert at <= PORT_SWEEP_TICKS
    assert c2.healthy is False and not c2.in_front and c2.port_stolen == rig.stolen["c-2"]
    [found] = [e for e in rig.of(EventKind.HEALTH, "c-2") if e.data.get("port_stolen")]
    assert "pid 77" in found.message
    from conduitctl.alerts import RuleName, conditions

    rules = {
        (c.rule, dict(c.labels).get("backend")) for c in conditions(tick, rig.supervisor.settings)
    }
    assert (RuleName.PORT_STOLEN, "c-2") in rules
    rig.tick(at=at + 1)  # now unhealthy: looked at every tick, said once
    assert len([e for e in rig.of(EventKind.HEALTH, "c-2") if e.data.get("port_stolen")]) == 1
    del rig.stolen["c-2"]
    tick = rig.tick(at=at + 2)
    assert next(b for b in tick.backends if b.name == "c-2").port_stolen is None


def test_a_station_whose_key_broke_is_never_restarted_on_it(tmp_path: Path) -> None:
    """Conduit would start as a new station on a key it cannot parse: the supervisor says
    why and leaves it stopped, the file as it was."""
    rig = Rig(tmp_path)
    rig.tick(at=0)
    rig.runtime.keys["c-1"] = b'{"mnemonic": "", "privateKe'  # cut short while it ran
    rig.runtime.kill("c-1")
    rig.tick(at=10)
    assert rig.starts("c-1") == [] and ("stop", "c-1") not in rig.runtime.mutations()
    assert rig.runtime.keys["c-1"] == b'{"mnemonic": "", "privateKe'
    assert rig.restarts_at("c-1") == [10.0]  # tried, and said so; the backoff goes on

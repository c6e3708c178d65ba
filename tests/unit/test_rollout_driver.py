"""The rollout Driver against fakes and a fake clock: the phases of a rollout that passes, the
halt and roll back when the canary fails its health gate, and resuming a recorded rollout.
The pure stages and gates are tests/unit/test_rollout_plan.py's."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import tomlkit
from fakes import FakeClock, FakeFront, FakeProbes, FakeRuntime, Journal, fleet_config

from conduitctl.errors import ConduitctlError
from conduitctl.events import EventKind
from conduitctl.ops import snapshots
from conduitctl.ops.rollout import Driver, abort, begin
from conduitctl.rollout_plan import MIN_PROBES, stage_specs
from conduitctl.rollout_state import Phase, RolloutState, load, save
from conduitctl.runtime.base import launch_specs
from conduitctl.settings import Settings, parse_settings
from conduitctl.statedir import StateDir
from conduitctl.store import Store
from conduitctl.supervise.files import history_path

OLD, NEW = "conduit-sim:1", "conduit-sim:2"
SOAK_S = 5.0


class Rollout:
    """A three-backend fleet on OLD, conduit.toml edited to NEW, the rollout begun."""

    def __init__(self, tmp_path: Path, stages: str = "1,2,3", soak_s: float = SOAK_S) -> None:
        self.state_dir = tmp_path / "state"
        self.old_text = tomlkit.dumps(fleet_config(self.state_dir, image=OLD))
        self.new_text = tomlkit.dumps(fleet_config(self.state_dir, image=NEW))
        self.old: Settings = parse_settings(self.old_text)
        self.new: Settings = parse_settings(self.new_text)
        self.config_path = tmp_path / "conduit.toml"
        self.config_path.write_text(self.new_text)
        snapshots.set_applied(self.state_dir, self.old_text)  # what `up` left
        self.clock = FakeClock()
        self.journal: Journal = []
        self.runtime = FakeRuntime(self.clock, self.journal)
        for spec in launch_specs(self.old):
            self.runtime.seed(spec)
        self.front = FakeFront(self.journal)
        self.probes = FakeProbes(self.runtime)
        self.phases: list[tuple[Phase, int]] = []  # (phase, stage) as the driver moved on
        self.told = 0
        self.state = begin(self.new, self.config_path, self.runtime, self.front,
                           stages=stages, soak_s=soak_s, now=self.clock())  # fmt: skip

    def progress(self, _line: str) -> None:
        state = load(self.state_dir)
        assert state is not None
        if not self.phases or self.phases[-1] != (state.phase, state.stage):
            self.phases.append((state.phase, state.stage))

    def tell_supervisor(self) -> None:
        self.told += 1

    def driver(self) -> Driver:
        return Driver(settings=self.new, config_path=self.config_path, runtime=self.runtime,
                      front=self.front, front_for=lambda _settings: self.front,
                      tell_supervisor=self.tell_supervisor, progress=self.progress,
                      clock=self.clock, sleep=self.clock.sleep,
                      probes=self.probes.as_probes())  # fmt: skip

    def images(self) -> list[str | None]:
        return [spec.image for _, spec in sorted(self.runtime.running().items())]

    def started(self) -> list[object]:
        return [c[1] for c in self.runtime.mutations() if c[0] == "start"]


def test_a_passing_rollout_moves_stage_by_stage_and_ends_on_the_new_settings(
    tmp_path: Path,
) -> None:
    rollout = Rollout(tmp_path)
    state = rollout.driver().run()

    assert state.phase is Phase.PASSED
    assert rollout.phases == [
        (Phase.APPLYING, 0), (Phase.SOAKING, 0),
        (Phase.APPLYING, 1), (Phase.SOAKING, 1),
        (Phase.APPLYING, 2), (Phase.SOAKING, 2),
    ]  # fmt: skip
    assert [p["backends"] for p in state.passed] == [1, 2, 3]
    # each stage soaked for its whole soak under the fake clock
    passed_at = [state.started_at, *(p["at"] for p in state.passed)]
    assert all(b - a >= SOAK_S for a, b in itertools.pairwise(passed_at))
    # one backend per stage, each drained from the front, replaced, and put back
    assert rollout.started() == ["c-1", "c-2", "c-3"]
    c2 = [c for c in rollout.journal if "c-2" in c or c[0] == "front.set_down"]
    out = c2.index(("front.set_down", ("c-2",)))
    assert c2[out : out + 5] == [("front.set_down", ("c-2",)), ("stop", "c-2"),
                                 ("start", "c-2"), ("wait", "c-2"),
                                 ("front.set_down", ())]  # fmt: skip
    assert rollout.images() == [NEW, NEW, NEW]
    assert snapshots.applied_path(rollout.state_dir).read_text() == rollout.new_text
    assert rollout.config_path.read_text() == rollout.new_text
    saved = load(rollout.state_dir)
    assert saved is not None and saved.phase is Phase.PASSED and not saved.active
    assert saved.driver_pid == os.getpid()
    assert rollout.told == 4  # once per stage, and at the end


def test_a_canary_failing_its_health_gate_halts_and_rolls_back(tmp_path: Path) -> None:
    rollout = Rollout(tmp_path, soak_s=60.0)

    def canary_degrades(_now: float) -> None:  # it came up, then fails its probes
        rollout.probes.failing_images.add(NEW)

    rollout.clock.on_sleep.append(canary_degrades)
    state = rollout.driver().run()

    assert state.phase is Phase.ROLLED_BACK
    assert state.message.startswith(f"{MIN_PROBES - 1} of {MIN_PROBES} probes of the new backends")
    assert rollout.phases == [(Phase.APPLYING, 0), (Phase.SOAKING, 0),
                              (Phase.ROLLING_BACK, 0), (Phase.ROLLED_BACK, 0)]  # fmt: skip
    assert state.passed == [] and state.stage == 0
    assert rollout.clock.slept < 60.0  # halted at the gate, not after the soak
    # only the canary moved, and it is back on the old settings; the others never stopped
    assert rollout.started() == ["c-1", "c-1"]
    assert rollout.images() == [OLD, OLD, OLD]
    hashes = {n: s.config_hash() for n, s in rollout.runtime.running().items()}
    assert hashes == {s.name: s.config_hash() for s in launch_specs(rollout.old)}
    # conduit.toml is what the fleet runs again; the rejected edit is kept
    assert rollout.config_path.read_text() == rollout.old_text
    assert StateDir(rollout.state_dir).rollout_rejected.read_text() == rollout.new_text
    assert snapshots.applied_path(rollout.state_dir).read_text() == rollout.old_text
    with Store(history_path(rollout.state_dir)) as store:
        [alert] = store.events(kinds={EventKind.OPERATION_FAILED})
    assert "rolled back at stage 1/3" in alert.message


def test_a_roll_back_that_fails_itself_is_left_for_a_human(tmp_path: Path) -> None:
    rollout = Rollout(tmp_path, soak_s=60.0)

    def canary_degrades(_now: float) -> None:
        rollout.probes.failing_images.add(NEW)
        rollout.runtime.failing_starts["c-1"] = ConduitctlError("c-1: disk full")

    rollout.clock.on_sleep.append(canary_degrades)
    state = rollout.driver().run()

    assert state.phase is Phase.FAILED and not state.active  # not retried in a loop
    assert state.message.endswith("; the roll back stopped: c-1: disk full")
    assert rollout.started() == ["c-1", "c-1"]  # one attempt to move it back
    assert rollout.images() == [NEW, OLD, OLD]  # c-1 as its failed start left it
    with Store(history_path(rollout.state_dir)) as store:
        [alert] = store.events(kinds={EventKind.OPERATION_FAILED})
    assert alert.message.endswith("the roll back stopped: c-1: disk full")


def test_a_resumed_rollout_reapplies_its_stage_leaves_moved_backends_and_soaks_again(
    tmp_path: Path,
) -> None:
    rollout = Rollout(tmp_path)
    # The driver died soaking stage 2: c-1 and c-2 already run the new settings.
    for spec in stage_specs(rollout.old, rollout.new, 2)[:2]:
        rollout.runtime.seed(spec)
    died: RolloutState = rollout.state
    died.stage, died.phase = 1, Phase.SOAKING
    died.soak_started_at = rollout.clock.advance(100) - 1
    died.passed = [{"stage": 1, "backends": 1, "at": rollout.clock() - 50}]
    died.driver_pid = None
    save(rollout.state_dir, died)
    resumed_at = rollout.clock()

    state = rollout.driver().run()

    assert state.phase is Phase.PASSED
    assert rollout.phases[0] == (Phase.SOAKING, 1)  # stage 2 re-applied: nothing to move
    assert rollout.started() == ["c-3"]  # c-1 and c-2 were left alone
    taken = [snap.reason for snap in snapshots.list_snapshots(rollout.state_dir)]
    assert taken == ["rollout", "rollout-3"]  # no snapshot for a stage that changed nothing
    assert [p["stage"] for p in state.passed] == [1, 2, 3]
    assert state.passed[1]["at"] - resumed_at >= SOAK_S  # its soak started over
    assert rollout.images() == [NEW, NEW, NEW]


def test_an_aborted_rollout_is_rolled_back_by_the_next_run(tmp_path: Path) -> None:
    rollout = Rollout(tmp_path)
    rollout.runtime.seed(stage_specs(rollout.old, rollout.new, 1)[0])  # the canary moved
    abort(rollout.state_dir)

    state = rollout.driver().run()

    assert state.phase is Phase.ROLLED_BACK
    assert state.message == "aborted by the operator"
    assert rollout.started() == ["c-1"]  # only the canary needed moving back
    assert rollout.images() == [OLD, OLD, OLD]
    assert rollout.config_path.read_text() == rollout.old_text

"""The executor (ops.converge.execute and up) against fakes: it carries out exactly the plan,
in its order, and stops where a step fails. The plan itself is tests/unit/test_plan_whole.py's."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeFront, FakeProbes, FakeRuntime, Journal, fleet_config, stale

from conduitctl.errors import ConduitctlError, Refused
from conduitctl.intent import drained, set_drained
from conduitctl.ops.converge import UpResult, execute, up
from conduitctl.reconcile import ActionKind, FleetPlan, Observed, plan_fleet
from conduitctl.runtime.base import LaunchSpec, State, launch_specs
from conduitctl.settings import Settings, settings_from_dict


class Fleet:
    """Settings, a journal shared by the fakes, and the fakes."""

    def __init__(self, tmp_path: Path, containers: int = 3, front: str = "nginx") -> None:
        self.settings: Settings = settings_from_dict(
            fleet_config(tmp_path / "state", containers, front=front)
        )
        self.specs: list[LaunchSpec] = launch_specs(self.settings)
        self.journal: Journal = []
        self.runtime = FakeRuntime(journal=self.journal)
        self.front = FakeFront(self.journal, kind=front)
        self.probes = FakeProbes(self.runtime)
        self.progress: list[str] = []

    def plan(self) -> FleetPlan:
        """The plan from what the fakes hold now (pure: no port or key checks needed here)."""
        out = frozenset(drained(self.settings.state_dir))
        front = self.front.plan(out) if self.front.balances else "none"
        return plan_fleet(self.specs, Observed(self.runtime.backends(), out, front=front))

    def execute(self, plan: FleetPlan, batch: int = 1) -> UpResult:
        return execute(self.settings, self.runtime, self.front, plan, batch=batch,
                       progress=self.progress.append, probes=self.probes.as_probes())  # fmt: skip

    def hashes(self) -> dict[str, str]:
        return {n: spec.config_hash() for n, spec in self.runtime.running().items()}


def test_execute_carries_out_every_kind_of_step_in_the_plans_order(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    c1, c2, _ = fleet.specs
    fleet.runtime.seed(stale(c1))  # runs an older config: recreate
    fleet.runtime.seed(c2, State.STOPPED)  # there, not running: start
    # c-3 is missing: create; c-4 is left from a bigger fleet: remove
    extra = launch_specs(settings_from_dict(fleet_config(tmp_path / "state", 4)))[3]
    fleet.runtime.seed(extra)
    fleet.front.version += 1  # the front's config changes too (c-4 leaves it)
    plan = fleet.plan()
    assert [(a.kind, a.name) for a in plan.actions] == [
        (ActionKind.REMOVE, "c-4"),
        (ActionKind.CREATE, "c-3"),
        (ActionKind.START, "c-2"),
        (ActionKind.RECREATE, "c-1"),
    ]

    result = fleet.execute(plan)

    assert fleet.journal == [
        ("start", "c-3"),
        ("start", "c-2"),
        ("wait", "c-3", "c-2"),  # the fresh ones ready before any running one is replaced
        ("start", "c-1"),
        ("wait", "c-1"),
        ("front.apply", ()),
        ("stop", "c-4"),  # out of the front (above) before it is removed
        ("remove", "c-4", False),  # its data is kept
    ]
    assert fleet.hashes() == {s.name: s.config_hash() for s in fleet.specs}
    assert "c-4" in fleet.runtime.keys and "c-4" not in fleet.runtime.containers
    assert fleet.front.installs == [frozenset()] and fleet.front.reloads == 1
    assert (result.actions, result.front, result.changed) == (plan.actions, "reloaded", True)
    assert fleet.progress[0] == "create c-3 (missing)"
    assert fleet.progress[-1] == "remove c-4 (not in the config (scaled down); its data is kept)"


def test_recreates_go_batch_at_a_time_each_batch_ready_before_the_next(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, containers=4)
    for spec in fleet.specs:
        fleet.runtime.seed(stale(spec))
    fleet.execute(fleet.plan(), batch=2)
    assert fleet.journal == [
        ("wait",),  # nothing fresh to wait for
        ("start", "c-1"),
        ("start", "c-2"),
        ("wait", "c-1", "c-2"),
        ("start", "c-3"),
        ("start", "c-4"),
        ("wait", "c-3", "c-4"),
        ("front.apply", ()),
    ]


def test_an_up_to_date_fleet_is_left_alone_and_the_front_not_reinstalled(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    for spec in fleet.specs:
        fleet.runtime.seed(spec)
    plan = fleet.plan()
    assert plan.front == "unchanged" and not plan.changes

    result = fleet.execute(plan)

    assert fleet.runtime.mutations() == []
    assert fleet.front.installs == [] and fleet.front.reloads == 0
    assert (result.front, result.changed) == ("unchanged", False)
    assert fleet.progress == []


def test_the_front_is_installed_when_the_plan_says_reload(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    for spec in fleet.specs:
        fleet.runtime.seed(spec)
    fleet.front.version += 1
    plan = fleet.plan()
    assert plan.front == "reload" and plan.changes

    result = fleet.execute(plan)

    assert fleet.runtime.mutations() == []
    assert fleet.front.installs == [frozenset()]
    assert (result.front, result.changed) == ("reloaded", True)
    assert fleet.progress == ["front nginx reloaded"]


def test_without_a_front_nothing_is_asked_of_it(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, front="none")
    fleet.runtime.seed(stale(fleet.specs[0]))
    for spec in fleet.specs[1:]:
        fleet.runtime.seed(spec)
    result = fleet.execute(fleet.plan())
    assert [c for c in fleet.journal if str(c[0]).startswith("front")] == []
    assert fleet.runtime.mutations() == [("start", "c-1")]
    assert result.front == "none"


def test_a_drained_backend_stays_stopped_and_out_of_the_front(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    c1, c2, c3 = fleet.specs
    fleet.runtime.seed(c1)
    fleet.runtime.seed(c2, State.STOPPED)
    fleet.runtime.seed(c3, State.STOPPED)
    set_drained(fleet.settings.state_dir, {"c-2"})

    fleet.execute(fleet.plan())

    assert fleet.runtime.mutations() == [("start", "c-3")]
    assert fleet.runtime.containers["c-2"].state == State.STOPPED
    assert ("front.apply", ("c-2",)) in fleet.journal
    assert fleet.front.installed == (1, frozenset({"c-2"}))


def test_a_refused_change_touches_nothing(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    for spec in fleet.specs:
        fleet.runtime.seed(stale(spec))  # every backend would be recreated
    fleet.front.version += 1
    fleet.front.check_error = "nginx -t: unknown directive"
    fleet.runtime.foreign_names = {"c-3": "a container conduitctl does not own"}
    before = fleet.hashes()

    with pytest.raises(Refused) as refused:
        up(fleet.settings, fleet.runtime, fleet.front, probes=fleet.probes.as_probes(),
           progress=fleet.progress.append)  # fmt: skip

    assert str(refused.value) == (
        "nothing changed: c-3: a container conduitctl does not own (and 1 more)"
    )
    assert fleet.journal == [] and fleet.progress == []
    assert fleet.front.installs == [] and fleet.hashes() == before


def test_a_backend_not_ready_after_its_recreate_stops_the_change_there(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    for spec in fleet.specs:
        fleet.runtime.seed(stale(spec))
    fleet.probes.failing = {"c-2"}

    with pytest.raises(ConduitctlError, match=r"^c-2 not ready after its recreate; stopping here"):
        fleet.execute(fleet.plan())

    # c-1 and c-2 were replaced, c-3 not touched, the front not reloaded
    assert fleet.journal == [("wait",), ("start", "c-1"), ("wait", "c-1"), ("start", "c-2"),
                             ("wait", "c-2")]  # fmt: skip
    assert fleet.progress == ["recreate c-1 (config changed)", "recreate c-2 (config changed)"]
    assert fleet.runtime.containers["c-3"].spec == stale(fleet.specs[2])


def test_a_failed_start_stops_the_change_before_the_next_step(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    fleet.runtime.failing_starts = {"c-2": ConduitctlError("no such image conduit-sim:1")}

    with pytest.raises(ConduitctlError, match="no such image"):
        fleet.execute(fleet.plan())

    assert fleet.journal == [("start", "c-1"), ("start", "c-2")]
    assert fleet.progress == ["create c-1 (missing)", "create c-2 (missing)"]
    assert set(fleet.runtime.running()) == {"c-1"}
    assert fleet.front.installs == []

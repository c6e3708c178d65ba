"""The change protocol's own steps, on a real state dir: counted holds, the operator lock,
the refusal while a rollout runs, and the change event in the history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conduitctl.app.change import changing, record
from conduitctl.app.context import Fleet
from conduitctl.errors import BadInput, Busy
from conduitctl.events import EventKind
from conduitctl.intent import held, holding
from conduitctl.rollout_plan import Gates
from conduitctl.rollout_state import Phase, RolloutState, save
from conduitctl.settings import parse_settings
from conduitctl.statedir import StateDir
from conduitctl.store import Store


def fleet_at(tmp_path: Path) -> Fleet:
    """A Fleet whose runtime and front are never reached by these steps."""
    settings = parse_settings(f'[cluster]\nstate_dir = "{tmp_path}"\n', source="test")
    nothing: Any = None
    return Fleet(settings, tmp_path / "conduit.toml", StateDir(tmp_path), nothing, nothing,
                 nothing, clock=lambda: 1_000.0)  # fmt: skip


def test_an_inner_hold_does_not_release_the_outer_one(tmp_path):
    with holding(tmp_path, ["c-1", "c-2"]):
        with holding(tmp_path, ["c-1"]):
            assert held(tmp_path) == {"c-1", "c-2"}
        assert held(tmp_path) == {"c-1", "c-2"}  # c-1 still held by the outer change
    assert held(tmp_path) == set()


def test_a_second_change_is_busy_and_names_the_holder(tmp_path):
    fleet = fleet_at(tmp_path)
    with changing(fleet, ["c-1"]):
        assert held(tmp_path) == {"c-1"}
        with pytest.raises(Busy, match=r"pid \d+"), changing(fleet, ["c-2"]):
            pass
        assert held(tmp_path) == {"c-1"}  # the refused one took no hold
    with changing(fleet, []):  # free again once the first has ended
        pass


def test_a_running_rollout_refuses_every_change_but_its_own(tmp_path):
    fleet = fleet_at(tmp_path)
    state = RolloutState(id="r1", started_at=1.0, stages=[1, 3], soak_s=60.0,
                         clients_steps=None, gates=Gates(), drain_timeout=30.0,
                         base_snapshot="s1", phase=Phase.SOAKING)  # fmt: skip
    save(tmp_path, state)
    with pytest.raises(BadInput, match="rollout --abort"), changing(fleet, ["c-1"]):
        pass
    assert held(tmp_path) == set()
    with changing(fleet, [], rollout=True):  # the rollout's own
        pass


def test_a_change_is_recorded_as_a_change_event(tmp_path):
    fleet = fleet_at(tmp_path)
    assert record(fleet, "restart", "restart c-2", backend="c-2", waited_s=1.5)
    store = Store(fleet.files.history_db)
    try:
        [event] = store.events(kinds={EventKind.CHANGE})
    finally:
        store.close()
    assert (event.ts, event.backend, event.message) == (1_000.0, "c-2", "restart c-2")
    assert event.data == {"command": "restart", "waited_s": 1.5}


def test_a_history_that_cannot_be_written_never_fails_the_change(tmp_path):
    fleet = fleet_at(tmp_path)
    fleet.files.history_db.mkdir(parents=True)  # a directory where the database should be
    assert record(fleet, "down", "down: 2 backends stopped") is False

"""The Scenario enum: what each scenario signals, which are timed, and what validate returns."""

from __future__ import annotations

import signal

import pytest

from conduitctl.drills.chaos import (
    FRONT,
    SCENARIOS,
    TIMED,
    Scenario,
    not_recovered,
    validate,
)
from conduitctl.events import Event, EventKind

T = 1_000_000.0


def test_every_scenario_is_described_and_the_cli_names_still_parse():
    assert set(SCENARIOS) == set(Scenario)
    assert [str(s) for s in Scenario] == [
        "kill",
        "kill-many",
        "hang",
        "oom",
        "front-restart",
        "loss",
        "cpu",
        "memory",
    ]


@pytest.mark.parametrize(
    ("scenario", "sig"),
    [
        (Scenario.KILL, signal.SIGKILL),
        (Scenario.KILL_MANY, signal.SIGKILL),
        (Scenario.HANG, signal.SIGUSR1),
        (Scenario.OOM, None),
        (Scenario.FRONT_RESTART, None),
        (Scenario.LOSS, None),
    ],
)
def test_backend_signal(scenario, sig):
    assert scenario.backend_signal == sig


def test_timed_is_the_set_and_the_property():
    assert {s for s in Scenario if s.timed} == TIMED


def test_validate_returns_the_scenario_it_names():
    assert validate("kill-many", 0, 8) is Scenario.KILL_MANY


def test_not_recovered_leaves_the_front_to_the_drill():
    events = [
        Event(ts=T + 0.2, kind=EventKind.FRONT_OUT, backend="c-1"),
        Event(ts=T + 0.3, kind=EventKind.FRONT_OUT, backend="c-2"),
        Event(ts=T + 1.5, kind=EventKind.FRONT_IN, backend="c-2"),
    ]
    assert not_recovered(events, T, ["c-1", "c-2", FRONT]) == ["c-1"]
    assert not_recovered(events, T, ["c-2"]) == []

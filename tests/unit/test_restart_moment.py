"""When a graceful restart without a front restarts a backend: `restart_moment` (pure)."""

from __future__ import annotations

import pytest

from conduitctl.ops.drain import NOT_SERVING_SAMPLES, Moment, low_water, restart_moment

DEADLINE = 100.0


@pytest.mark.parametrize(
    ("samples", "mark", "now", "expected"),
    [
        # the newest sample decides
        ([50], 10, 0.0, Moment.WAIT),
        ([50, 30, 11], 10, 0.0, Moment.WAIT),
        ([50, 30, 10], 10, 0.0, Moment.LOW),  # at the mark counts
        ([50, 30, 3], 10, 0.0, Moment.LOW),
        ([0], 0, 0.0, Moment.LOW),
        ([1], 0, 0.0, Moment.WAIT),  # low-water 0: only an empty backend
        ([5, 50], 10, 0.0, Moment.WAIT),  # low once, busy again: keep waiting
        # the bound
        ([50], 10, DEADLINE, Moment.TIMED_OUT),
        ([50], 10, DEADLINE + 1, Moment.TIMED_OUT),
        ([50], 10, DEADLINE - 0.01, Moment.WAIT),
        ([9], 10, DEADLINE + 1, Moment.LOW),  # low at the bound is not a timeout
        # /metrics unreadable: wait a little, then it serves nobody we could protect
        ([None], 10, 0.0, Moment.WAIT),
        ([None] * (NOT_SERVING_SAMPLES - 1), 10, 0.0, Moment.WAIT),
        ([None] * NOT_SERVING_SAMPLES, 10, 0.0, Moment.NOT_SERVING),
        ([50, *[None] * NOT_SERVING_SAMPLES], 10, 0.0, Moment.NOT_SERVING),
        ([None, None, 50, None], 10, 0.0, Moment.WAIT),  # not in a row
        ([None, 50], 10, DEADLINE, Moment.TIMED_OUT),
        ([None], 10, DEADLINE, Moment.TIMED_OUT),
        ([], 10, 0.0, Moment.WAIT),
    ],
)
def test_restart_moment(samples, mark, now, expected):
    assert restart_moment(samples, mark, now, DEADLINE) is expected


def test_a_zero_timeout_decides_on_the_first_sample():
    assert restart_moment([3], 10, 5.0, 5.0) is Moment.LOW
    assert restart_moment([30], 10, 5.0, 5.0) is Moment.TIMED_OUT


@pytest.mark.parametrize(
    ("max_clients", "fraction", "expected"),
    [(1000, 0.1, 100), (250, 0.1, 25), (5, 0.1, 0), (19, 0.1, 1), (200, 0.25, 50), (1, 1.0, 1)],
)
def test_low_water_is_a_share_of_max_clients_rounded_down(max_clients, fraction, expected):
    assert low_water(max_clients, fraction) == expected


def test_low_water_default_is_ten_percent():
    assert low_water(250) == 25

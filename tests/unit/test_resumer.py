"""The supervisor resumes a rollout whose driver died, a bounded number of times."""

from __future__ import annotations

from pathlib import Path

from conduitctl.rollout_plan import Gates
from conduitctl.rollout_state import Phase, RolloutState, save
from conduitctl.supervise.resume import MAX_RESUMES, RESUME_COOLDOWN_S, Resumer


def test_a_driver_that_keeps_dying_is_resumed_a_bounded_number_of_times(tmp_path: Path):
    state = RolloutState(id="r1", started_at=1.0, stages=[1, 2], soak_s=60.0,
                         clients_steps=None, gates=Gates(), drain_timeout=30.0,
                         base_snapshot="s1", phase=Phase.SOAKING,
                         driver_pid=999_999_999)  # fmt: skip
    save(tmp_path, state)  # active, and its driver is gone
    now = [0.0]
    started: list[float] = []
    given_up: list[tuple[str, int]] = []
    resumer = Resumer(tmp_path / "conduit.toml", tmp_path, tmp_path / "log",
                      on_give_up=lambda s, n: given_up.append((s.id, n)),
                      clock=lambda: now[0],
                      start=lambda _c, _l: started.append(now[0]) or 4242)  # fmt: skip
    for _ in range(MAX_RESUMES + 5):  # each started driver "dies" at once: still orphaned
        resumer(None)
        resumer(None)  # within the cooldown: nothing more
        now[0] += RESUME_COOLDOWN_S
    assert len(started) == MAX_RESUMES
    assert started == [i * RESUME_COOLDOWN_S for i in range(MAX_RESUMES)]
    assert given_up == [("r1", MAX_RESUMES)]  # the human is told once

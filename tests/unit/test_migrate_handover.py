"""The hand-over (ops/migrate.py) with fakes behind the Runtime and conduit-manager's side:
every way it can fail after the legacy container was touched puts the station back, or says
exactly what is left to do by hand; never two processes on one key; a second run picks up a
migration that stopped half-way."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fakes import FakeRuntime, fake_key, fleet_config

from conduitctl.errors import ConduitctlError
from conduitctl.migrate_plan import FoundContainer
from conduitctl.ops.migrate import Journal, MigrationStopped, hand_over, survey
from conduitctl.runtime.base import State, launch_specs
from conduitctl.settings import Settings, settings_from_dict
from conduitctl.statedir import StateDir

IMAGE = "ghcr.io/ssmirr/conduit/conduit:latest"


@dataclass
class Box:
    running: bool = True
    policy: str = "on-failure"
    retries: int = 5
    volume: str = "conduit-data-1"


@dataclass
class FakeManagerHost:
    """conduit-manager's containers in a dict; `failing[(method, name)]` (or with the first
    argument: `(method, name, arg)`) makes that call raise, as dockerd would; `calls` is what
    was done, in order."""

    boxes: dict[str, Box]
    keys: dict[str, bytes]  # volume -> key
    failing: dict[tuple[str, str], Exception] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def _call(self, method: str, name: str, *rest: str) -> Box:
        self.calls.append((method, name, *rest))
        failure = self.failing.get((method, name)) or self.failing.get((method, name, *rest[:1]))
        if failure is not None:
            raise failure
        return self.boxes[name]

    def inventory(self) -> list[FoundContainer]:
        return [FoundContainer(name=n, running=b.running, image=IMAGE, data_volume=b.volume,
                               args=("start",), restart_policy=b.policy,
                               restart_retries=b.retries)
                for n, b in self.boxes.items()]  # fmt: skip

    def read_key(self, volume: str, *, via: str) -> bytes | None:
        failure = self.failing.get(("read_key", via))
        if failure is not None:
            raise failure
        return self.keys.get(volume)

    def stop(self, name: str, timeout: float = 30.0) -> None:
        self._call("stop", name).running = False

    def set_restart(self, name: str, policy: str, retries: int = 0) -> None:
        box = self._call("set_restart", name, policy, str(retries))
        box.policy, box.retries = policy, retries

    def rename(self, name: str, new_name: str) -> None:
        self.boxes[new_name] = self._call("rename", name, new_name)
        del self.boxes[name]

    def start(self, name: str) -> None:
        self._call("start", name).running = True

    def remove(self, name: str) -> None:
        self._call("remove", name)
        del self.boxes[name]


def settings(tmp_path: Path) -> Settings:
    config = fleet_config(tmp_path / "state", 1, front="none")
    config["cluster"] = {**config["cluster"], "name": "conduit"}  # type: ignore[dict-item]
    return settings_from_dict(config)


def world(tmp_path: Path) -> tuple[Settings, FakeRuntime, FakeManagerHost]:
    host = FakeManagerHost(boxes={"conduit-1": Box()}, keys={"conduit-data-1": fake_key("s1")})
    return settings(tmp_path), FakeRuntime(), host


def run(s: Settings, runtime: FakeRuntime, host: FakeManagerHost) -> None:
    files = StateDir(s.state_dir)
    surveyed = survey(s, runtime, host, journal=files.migration)
    assert surveyed.plan.refusals == []
    hand_over(s, runtime, host, surveyed, files, progress=lambda _: None, ready_timeout=0.01)


def test_a_successor_that_fails_to_start_gives_the_station_back_as_it_was(
    tmp_path: Path,
) -> None:
    s, runtime, host = world(tmp_path)
    runtime.failing_starts["conduit-1"] = ConduitctlError("docker: image not found")
    with pytest.raises(MigrationStopped, match="runs again in its own container"):
        run(s, runtime, host)
    box = host.boxes["conduit-1"]
    assert (box.running, box.policy, box.retries) == (True, "on-failure", 5)  # retries kept
    assert host.calls[:3] == [("set_restart", "conduit-1", "no", "0"), ("stop", "conduit-1"),
                              ("rename", "conduit-1", "conduit-1-pre-conduitctl")]  # fmt: skip
    assert runtime.keys["conduit-1"] == fake_key("s1")  # ours keeps the copy, never started


def test_a_successor_that_cannot_be_removed_leaves_the_station_stopped(tmp_path: Path) -> None:
    s, runtime, host = world(tmp_path)

    def remove(name: str, purge: bool = False) -> None:
        raise ConduitctlError("docker: remove conduit-1: dockerd is gone")

    runtime.remove = remove  # type: ignore[method-assign]
    with pytest.raises(MigrationStopped, match="never runs twice: docker rm -f conduit-1"):
        run(s, runtime, host)
    assert not host.boxes["conduit-1-pre-conduitctl"].running  # one key, one process
    assert ("start", "conduit-1-pre-conduitctl") not in host.calls


def test_a_failed_step_back_names_what_is_left_to_do_by_hand(tmp_path: Path) -> None:
    s, runtime, host = world(tmp_path)
    runtime.failing_starts["conduit-1"] = ConduitctlError("no image")
    host.failing[("set_restart", "conduit-1", "on-failure")] = ConduitctlError("docker: timeout")
    with pytest.raises(MigrationStopped) as stopped:
        run(s, runtime, host)
    assert stopped.value.args[0].endswith(
        "finish it by hand: docker update --restart on-failure conduit-1; docker start conduit-1"
    )
    journal = StateDir(s.state_dir).migration.read_text()
    assert "restore failed at: docker update --restart on-failure conduit-1" in journal


def test_ctrl_c_while_ours_starts_puts_the_station_back(tmp_path: Path) -> None:
    s, runtime, host = world(tmp_path)
    runtime.failing_starts["conduit-1"] = KeyboardInterrupt()  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        run(s, runtime, host)
    assert host.boxes["conduit-1"].running
    assert "conduit-1" not in runtime.containers


def test_a_docker_error_while_stopping_the_legacy_one_restores_its_restart_policy(
    tmp_path: Path,
) -> None:
    s, runtime, host = world(tmp_path)
    host.failing[("stop", "conduit-1")] = ConduitctlError("docker: stop conduit-1: timeout")
    with pytest.raises(MigrationStopped):
        run(s, runtime, host)
    assert host.boxes["conduit-1"].policy == "on-failure"
    assert not any(c[0] == "start" for c in runtime.calls)


def test_a_migration_killed_half_way_is_picked_up_by_the_next_run(tmp_path: Path) -> None:
    s, runtime, host = world(tmp_path)
    # What a kill right after the rename leaves: set aside, restart "no", ours not started.
    host.boxes["conduit-1-pre-conduitctl"] = host.boxes.pop("conduit-1")
    host.boxes["conduit-1-pre-conduitctl"].policy = "no"
    host.boxes["conduit-1-pre-conduitctl"].running = False
    files = StateDir(s.state_dir)
    files.migration.parent.mkdir(parents=True, exist_ok=True)
    files.migration.write_text(
        '{"stations": [{"container": "conduit-1", "state": "legacy stopped", '
        '"restart_policy": "always", "running": true, "touched": true}]}'
    )
    runtime.failing_starts["conduit-1"] = ConduitctlError("no image")
    with pytest.raises(MigrationStopped):
        run(s, runtime, host)
    box = host.boxes["conduit-1"]  # back under its own name, with the policy it had first
    assert (box.running, box.policy) == (True, "always")


def moved_already(tmp_path: Path) -> tuple[Settings, FakeRuntime, FakeManagerHost]:
    """A kill after ours came up: the station aside and stopped, ours on its key."""
    s, runtime, host = world(tmp_path)
    host.boxes["conduit-1-pre-conduitctl"] = host.boxes.pop("conduit-1")
    host.boxes["conduit-1-pre-conduitctl"].running = False
    runtime.seed(launch_specs(s)[0])
    runtime.keys["conduit-1"] = fake_key("s1")  # ours runs on the station's own key
    return s, runtime, host


def live(settings: Settings, backends: list, timeout: float) -> list[str]:
    return []


def test_a_station_ours_already_runs_on_live_is_only_removed(tmp_path: Path) -> None:
    s, runtime, host = moved_already(tmp_path)
    host.failing[("remove", "conduit-1-pre-conduitctl")] = ConduitctlError("docker: busy")
    files = StateDir(s.state_dir)
    surveyed = survey(s, runtime, host)
    assert [step.done for step in surveyed.plan.steps] == [True]
    done = hand_over(s, runtime, host, surveyed, files, progress=lambda _: None, ready=live)
    assert done.moved == ["conduit-1"] and done.removed == []
    assert done.left[0].endswith("docker rm conduit-1-pre-conduitctl")
    assert not any(c[0] == "start" for c in runtime.calls)


def test_ours_on_the_key_but_not_live_gives_the_station_back_not_removed(
    tmp_path: Path,
) -> None:
    s, runtime, host = moved_already(tmp_path)
    surveyed = survey(s, runtime, host)
    with pytest.raises(MigrationStopped):
        hand_over(s, runtime, host, surveyed, StateDir(s.state_dir), progress=lambda _: None,
                  ready_timeout=0.01)  # fmt: skip
    assert "conduit-1" not in runtime.containers  # ours gone first: one key, one process
    assert host.boxes["conduit-1"].running  # the station serves again, not deleted


def test_ours_restarting_on_the_key_is_never_taken_as_moved(tmp_path: Path) -> None:
    s, runtime, host = moved_already(tmp_path)
    runtime.containers["conduit-1"].state = State.RESTARTING
    assert [step.done for step in survey(s, runtime, host).plan.steps] == [False]


def test_the_station_s_own_container_under_our_name_is_never_removed(tmp_path: Path) -> None:
    """The cluster edition: conduit-1 is conduit-manager's and would be ours. A failure
    before our start must not remove it in ours's place."""
    s, runtime, host = world(tmp_path)
    removed: list[str] = []
    runtime.remove = lambda name, purge=False: removed.append(name)  # type: ignore[method-assign]
    host.failing[("stop", "conduit-1")] = ConduitctlError("docker: stop conduit-1: timeout")
    with pytest.raises(MigrationStopped):
        run(s, runtime, host)
    assert removed == []
    assert host.boxes["conduit-1"].running and host.boxes["conduit-1"].policy == "on-failure"


def test_a_raw_docker_error_at_our_start_still_puts_the_station_back(tmp_path: Path) -> None:
    s, runtime, host = world(tmp_path)
    runtime.failing_starts["conduit-1"] = RuntimeError("500 Server Error: dockerd")
    with pytest.raises(MigrationStopped, match="500 Server Error"):
        run(s, runtime, host)
    assert host.boxes["conduit-1"].running


def test_a_kill_during_the_stop_keeps_the_first_policy_for_the_next_run(tmp_path: Path) -> None:
    s, runtime, host = world(tmp_path)
    # The journal says it was touched; the container shows "no" and stopped, not aside.
    host.boxes["conduit-1"].policy, host.boxes["conduit-1"].running = "no", False
    files = StateDir(s.state_dir)
    files.migration.parent.mkdir(parents=True, exist_ok=True)
    files.migration.write_text(
        '{"stations": [{"container": "conduit-1", "state": "key placed", '
        '"restart_policy": "unless-stopped", "running": true, "touched": true}]}'
    )
    station = survey(s, runtime, host, journal=files.migration).plan.steps[0].station
    assert (station.restart_policy, station.ran, station.running) == ("unless-stopped", True, False)


def test_ours_restarting_beside_a_station_refuses_the_migration(tmp_path: Path) -> None:
    s, runtime, host = world(tmp_path)
    runtime.seed(launch_specs(s)[0], state=State.RESTARTING)
    runtime.keys["conduit-1"] = fake_key("s1")
    refusals = survey(s, runtime, host).plan.refusals
    assert refusals == ["conduit-1 (conduitctl's) runs beside conduit-1: stop it first "
                        "(conduitctl down), never two stations at once"]  # fmt: skip


def test_an_unreadable_key_refuses_in_one_line(tmp_path: Path) -> None:
    s, runtime, host = world(tmp_path)
    host.failing[("read_key", "conduit-1")] = ConduitctlError("conduit_key.json: Permission denied")
    assert survey(s, runtime, host).plan.refusals == [
        "conduit-1: conduit_key.json: Permission denied"
    ]


def journal_of(s: Settings, **entry: object) -> Path:
    files = StateDir(s.state_dir)
    files.migration.parent.mkdir(parents=True, exist_ok=True)
    doc = {"stations": [{"container": "conduit-1", "touched": True, "running": True, **entry}]}
    files.migration.write_text(json.dumps(doc))
    return files.migration


def test_a_kill_while_ours_came_up_resumes_as_moved_not_refused(tmp_path: Path) -> None:
    s, runtime, host = moved_already(tmp_path)
    journal = journal_of(s, state="legacy stopped", restart_policy="always")
    surveyed = survey(s, runtime, host, journal=journal)
    assert surveyed.plan.refusals == [] and [st.done for st in surveyed.plan.steps] == [True]
    assert surveyed.plan.steps[0].station.restart_policy == "always"


def test_the_first_policy_outlives_a_second_interrupted_run(tmp_path: Path) -> None:
    s, runtime, host = world(tmp_path)
    host.boxes["conduit-1"].policy, host.boxes["conduit-1"].running = "no", False
    journal = journal_of(s, state="legacy stopped", restart_policy="unless-stopped")
    surveyed = survey(s, runtime, host, journal=journal)
    Journal(journal, surveyed.plan)  # a second run starts, and is killed at once
    again = survey(s, runtime, host, journal=journal).plan.steps[0].station
    assert (again.restart_policy, again.ran) == ("unless-stopped", True)


def test_a_station_moved_then_put_back_gets_its_first_policy(tmp_path: Path) -> None:
    s, runtime, host = moved_already(tmp_path)
    journal = journal_of(s, state="moved", restart_policy="always")
    surveyed = survey(s, runtime, host, journal=journal)
    with pytest.raises(MigrationStopped):
        hand_over(s, runtime, host, surveyed, StateDir(s.state_dir), progress=lambda _: None,
                  ready_timeout=0.01)  # fmt: skip
    assert (host.boxes["conduit-1"].policy, host.boxes["conduit-1"].running) == ("always", True)
    assert json.loads(journal.read_text())["stations"][0]["touched"] is False  # put back

"""announce() against a real webhook on 127.0.0.1 (through apprise) and the real SQLite
history; and the rolling restart that aborts and alerts when a backend does not come back."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_helpers import PURGE, cli, cli_json, write_config

from conduitctl.events import EventKind
from conduitctl.front.base import NoFront
from conduitctl.ops.announce import announce
from conduitctl.ops.drain import RestartAborted, rolling_restart
from conduitctl.runtime import runtime_for
from conduitctl.settings import Settings, load_settings, settings_from_dict
from conduitctl.store import Store
from conduitctl.supervise.files import history_path
from conftest import find_free_port


@pytest.fixture
def silent() -> Iterator[str]:
    """A webhook URL whose server accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not done.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"json://127.0.0.1:{listener.getsockname()[1]}/hook"
    done.set()
    thread.join(5)
    for sock in accepted:
        sock.close()
    listener.close()


def dead_url() -> str:
    return f"json://127.0.0.1:{find_free_port()}/hook"  # nothing listens there


def settings_for(state_dir: Path, *notifiers: str) -> Settings:
    return settings_from_dict(
        {
            "cluster": {"name": "an", "state_dir": str(state_dir)},
            "alerts": {"notifiers": list(notifiers)},
        }
    )


def history(state_dir: Path, kind: EventKind) -> list[Any]:
    with Store(history_path(state_dir)) as store:
        return store.events(kinds={kind})


def test_recorded_and_sent_once_and_a_dead_notifier_is_reported(tmp_path, webhook):
    settings = settings_for(tmp_path, webhook.url(), dead_url())
    started = time.monotonic()
    outcome = announce(
        settings,
        EventKind.OPERATION_FAILED,
        "an-2",
        "rolling restart stopped at an-2: not ready",
        operation="rolling_restart",
        restarted=["an-1"],
        backoff_s=0.05,
    )
    took = time.monotonic() - started
    assert took < 5.5  # the deadline, whatever the dead one does

    # the live webhook got it exactly once, with the detail
    assert webhook.hits == 1
    [message] = webhook.bodies
    assert message["title"].startswith("an@") and message["title"].endswith(
        ": [CRITICAL] operation_failed an-2"
    )
    assert message["message"] == (
        "rolling restart stopped at an-2: not ready\n"
        "operation: rolling_restart\n"
        "restarted: ['an-1']"
    )
    assert message["type"] == "failure"
    # the dead one is reported in the result, retried (connection refused is retryable)
    ok, dead = outcome.deliveries
    assert ok.ok and ok.attempts == 1 and ok.target == "json://***"
    assert not dead.ok and dead.attempts == 3 and dead.error
    assert outcome.notified and outcome.recorded
    assert "alert sent to 1 of 2 notifiers" in outcome.summary()

    # the history holds the event, and the failed delivery as the daemon would record it
    [event] = history(tmp_path, EventKind.OPERATION_FAILED)
    assert event.backend == "an-2" and event.message.startswith("rolling restart stopped")
    assert event.data == {"operation": "rolling_restart", "restarted": ["an-1"]}
    [failed] = history(tmp_path, EventKind.NOTIFY_FAILED)
    assert failed.data == {"target": "json://***", "attempts": 3, "about": "operation_failed"}


def test_a_500_is_retried_and_the_message_arrives_once(tmp_path, webhook):
    webhook.script = [500]
    settings = settings_for(tmp_path, webhook.url())
    kind = EventKind.OPERATION_FAILED
    outcome = announce(
        settings, kind, None, "gate failed", level="warning", backoff_s=0.05, stage=2
    )
    [delivery] = outcome.deliveries
    assert delivery.ok and delivery.attempts == 2
    assert webhook.hits == 2 and len(webhook.bodies) == 1
    assert webhook.bodies[0]["type"] == "warning"
    assert webhook.bodies[0]["title"].endswith("[WARNING] operation_failed")  # no backend
    assert history(tmp_path, EventKind.NOTIFY_FAILED) == []


def test_a_notifier_that_never_answers_does_not_hold_the_caller(tmp_path, silent):
    started = time.monotonic()
    outcome = announce(
        settings_for(tmp_path, silent), EventKind.OPERATION_FAILED, None, "x", deadline_s=1.0
    )
    assert time.monotonic() - started < 2.0
    [delivery] = outcome.deliveries
    assert not delivery.ok and delivery.error == "no answer within 1s"
    assert outcome.recorded


def test_no_history_still_sends_and_never_raises(tmp_path, webhook):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    outcome = announce(
        settings_for(blocker / "state", webhook.url()), EventKind.OPERATION_FAILED, None, "x"
    )
    assert not outcome.recorded and outcome.record_error
    assert outcome.deliveries[0].ok and len(webhook.bodies) == 1
    assert outcome.summary().startswith("not recorded in the history (")


class NeverComesBack:
    """The real runtime, except that `victim` is not started again once stopped."""

    def __init__(self, inner: Any, victim: str) -> None:
        self.inner = inner
        self.victim = victim

    def start(self, spec: Any) -> Any:
        if spec.name == self.victim:
            return self.inner.status(spec.name)
        return self.inner.start(spec)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_rolling_restart_aborts_and_alerts_when_one_does_not_come_back(
    tmp_path, free_block, webhook
):
    base = free_block(140)
    extra = f'\n[alerts]\nnotifiers = ["{webhook.url()}"]\n'
    config = write_config(tmp_path, base, name="ab", containers=3, front="none", extra=extra)
    try:
        cli("up", "--no-daemon", "--config", str(config))
        settings = load_settings(config)
        before = {b["name"]: b for b in cli_json("status", "--config", str(config))["backends"]}
        said: list[str] = []
        runtime = NeverComesBack(runtime_for(settings), "ab-2")
        with pytest.raises(RestartAborted) as caught:
            rolling_restart(
                settings, runtime, NoFront(settings), progress=said.append, ready_timeout=1.5
            )
        error = caught.value
        assert error.name == "ab-2" and error.restarted == ["ab-1"]
        assert "rolling restart stopped at ab-2: ab-2 not ready 1.5s after its restart" in str(
            error
        )
        assert "1 of 3 restarted, not touched: ab-3" in str(error)
        assert error.announcement.notified and error.announcement.recorded
        assert said[-1] == "alert: recorded in the history, alert sent to 1 of 1 notifiers"

        after = {b["name"]: b for b in cli_json("status", "--config", str(config))["backends"]}
        assert after["ab-1"]["pid"] != before["ab-1"]["pid"]  # restarted
        assert after["ab-2"]["state"] != "running"  # the one that did not come back
        assert after["ab-3"]["pid"] == before["ab-3"]["pid"]  # not touched

        [message] = webhook.bodies  # alerted once
        assert message["title"].endswith("[CRITICAL] operation_failed ab-2")
        assert "not touched: ab-3" in message["message"]
        events = cli_json("events", "--kind", "operation_failed", "--config", str(config))
        [event] = events
        assert event["backend"] == "ab-2"
        assert event["data"]["operation"] == "rolling_restart"
        assert event["data"]["restarted"] == ["ab-1"]
        assert event["data"]["not_touched"] == ["ab-3"]
    finally:
        cli(*PURGE, "--config", str(config), check=False)

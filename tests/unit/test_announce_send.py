"""announce's delivery (`send_all`) and its one-line summary, with fake senders: retries,
the deadline, a sender that raises. The real webhook and SQLite are in
tests/integration/test_announce.py."""

from __future__ import annotations

import threading
import time

from conduitctl.events import Event, EventKind
from conduitctl.notify import SendResult
from conduitctl.ops.announce import Announcement, Delivery, send_all


class Scripted:
    """Answers with the scripted results in turn (then ok), counting calls."""

    def __init__(self, name: str, *script: SendResult) -> None:
        self.name = name
        self.script = list(script)
        self.calls: list[tuple[str, str, str]] = []

    def send(self, title: str, body: str, severity: str = "info") -> SendResult:
        self.calls.append((title, body, severity))
        if self.script:
            return self.script.pop(0)
        return SendResult(True, False, None, self.name)


class Stuck:
    name = "stuck://***"

    def __init__(self) -> None:
        self.release = threading.Event()

    def send(self, title: str, body: str, severity: str = "info") -> SendResult:
        self.release.wait(10)
        return SendResult(True, False, None, self.name)


class Raises:
    name = "raises://***"

    def send(self, title: str, body: str, severity: str = "info") -> SendResult:
        raise RuntimeError("boom")


def failure(retryable: bool, error: str = "HTTP 500") -> SendResult:
    return SendResult(False, retryable, error, "x://***")


def test_each_sender_gets_the_message_once():
    a, b = Scripted("a://***"), Scripted("b://***")
    deliveries = send_all([a, b], "title", "body", "critical", backoff_s=0.01)
    assert deliveries == [Delivery("a://***", True, 1), Delivery("b://***", True, 1)]
    assert a.calls == b.calls == [("title", "body", "critical")]


def test_a_retryable_failure_is_retried_then_delivered():
    sender = Scripted("a://***", failure(True), failure(True))
    [delivery] = send_all([sender], "t", "b", attempts=3, backoff_s=0.01)
    assert delivery.ok and delivery.attempts == 3 and len(sender.calls) == 3


def test_retries_stop_at_the_attempt_limit():
    sender = Scripted("a://***", *[failure(True)] * 5)
    [delivery] = send_all([sender], "t", "b", attempts=2, backoff_s=0.01)
    assert not delivery.ok and delivery.attempts == 2 and delivery.error == "HTTP 500"


def test_a_permanent_failure_is_not_retried():
    sender = Scripted("a://***", failure(False, "HTTP 404"))
    [delivery] = send_all([sender], "t", "b", attempts=5, backoff_s=0.01)
    assert not delivery.ok and delivery.attempts == 1 and delivery.error == "HTTP 404"


def test_no_retry_that_could_not_start_before_the_deadline():
    sender = Scripted("a://***", *[failure(True)] * 5)
    started = time.monotonic()
    [delivery] = send_all([sender], "t", "b", attempts=5, backoff_s=1.0, deadline_s=0.5)
    assert time.monotonic() - started < 0.4  # no pointless wait for a retry past the deadline
    assert not delivery.ok and delivery.attempts == 1


def test_a_stuck_sender_is_given_up_at_the_deadline_without_delaying_others():
    stuck, fine = Stuck(), Scripted("fine://***")
    try:
        started = time.monotonic()
        slow, ok = send_all([stuck, fine], "t", "b", deadline_s=0.3)
        assert time.monotonic() - started < 1.0
    finally:
        stuck.release.set()
    assert ok.ok
    assert not slow.ok and slow.target == "stuck://***"
    assert slow.error == "no answer within 0.3s"


def test_a_sender_that_raises_is_a_failure_not_an_exception():
    [delivery] = send_all([Raises()], "t", "b", attempts=2, backoff_s=0.01)
    assert not delivery.ok and delivery.attempts == 2
    assert delivery.error == "RuntimeError: boom"


def test_no_senders_no_deliveries():
    assert send_all([], "t", "b") == []


def test_summary():
    event = Event(1.0, EventKind.OPERATION_FAILED, "c-2", "stopped")
    ok, bad = Delivery("a://***", True, 1), Delivery("b://***", False, 3, "refused")
    assert (
        Announcement(event, True, None, (ok, bad)).summary()
        == "recorded in the history, alert sent to 1 of 2 notifiers (b://***: refused)"
    )
    assert (
        Announcement(event, False, "disk full", ()).summary()
        == "not recorded in the history (disk full), no notifier configured (alerts.notifiers)"
    )
    both = Announcement(event, True, None, (ok,))
    assert both.notified and not both.failures
    assert both.to_dict()["deliveries"] == [
        {"target": "a://***", "ok": True, "attempts": 1, "error": None}
    ]

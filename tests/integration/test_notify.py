"""Real delivery through apprise to loopback receivers: a webhook (fleet_helpers.Webhook) and an
SMTP server (aiosmtpd). Nothing but 127.0.0.1 is ever contacted; every wait is bounded."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from fleet_helpers import Webhook

from conduitctl.alerts import Notification, NotifyReason, RuleName, Severity
from conduitctl.notify import Dispatcher, Notifier, SendResult, send_test
from conftest import find_free_port

WAIT_S = 10.0  # upper bound for any delivery to show up


# --- receivers --------------------------------------------------------------------------------


@dataclass
class Mailbox:
    port: int
    messages: list[tuple[str, list[str], Message]] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)


def smtp_server(require_login: bool) -> tuple[Any, Mailbox]:
    controller_mod = pytest.importorskip("aiosmtpd.controller")
    smtp_mod = pytest.importorskip("aiosmtpd.smtp")
    box = Mailbox(port=find_free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            box.messages.append(
                (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
            )
            return "250 OK"

    kwargs: dict[str, Any] = {}
    if require_login:

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any):
            box.logins.append((auth.login, auth.password))
            ok = (auth.login, auth.password) == (b"ops", b"pw")
            return smtp_mod.AuthResult(success=ok, handled=False)  # aiosmtpd answers 535

        # plain-text AUTH is only for this loopback test server
        kwargs = {"authenticator": authenticator, "auth_require_tls": False}
    controller = controller_mod.Controller(
        Handler(), hostname="127.0.0.1", port=box.port, ready_timeout=5.0, **kwargs
    )
    controller.start()
    return controller, box


def notification(title: str = "[FIRING:1] backend_down (warning)") -> Notification:
    return Notification(
        rule=RuleName.BACKEND_DOWN,
        severity=Severity.WARNING,
        reason=NotifyReason.FIRST,
        title=title,
        body="Firing:\n- backend c-1 is down: not running",
        firing=frozenset({"backend_down{backend=c-1}"}),
        resolved=frozenset(),
        ts=1000.0,
    )


class Results:
    """on_result, collected; `wait_for` bounds every wait."""

    def __init__(self) -> None:
        self.items: list[tuple[Notification, SendResult, int]] = []
        self._cond = threading.Condition()

    def __call__(self, n: Notification, result: SendResult, attempts: int) -> None:
        with self._cond:
            self.items.append((n, result, attempts))
            self._cond.notify_all()

    def wait_for(
        self, count: int, timeout: float = WAIT_S
    ) -> list[tuple[Notification, SendResult, int]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.items) >= count, timeout)
        assert len(self.items) >= count, f"{len(self.items)} of {count} results"
        return self.items


# --- Notifier ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["json", "form"])
def test_webhook_receives_title_and_body(webhook: Webhook, scheme: str) -> None:
    result = Notifier(webhook.url(scheme)).send("disk on fire", "line one\nline two", "critical")
    assert result.ok, result.error
    assert result.target == f"{scheme}://***"
    [req] = webhook.wait_for(1)
    assert req["path"] == "/hook"
    assert req["body"]["title"] == "disk on fire"
    assert req["body"]["message"] == "line one\nline two"
    assert req["body"]["type"] == "failure"  # critical -> apprise FAILURE


def test_smtp_receives_the_title_as_subject() -> None:
    controller, box = smtp_server(require_login=False)
    try:
        # mailto:// (not mailtos://) is plain SMTP: no TLS, no STARTTLS
        url = f"mailto://127.0.0.1:{box.port}?from=alerts@example.com&to=ops@example.com"
        result = Notifier(url).send("[FIRING:2] backend_down", "c-1 and c-2 are down", "warning")
        assert result.ok, result.error
        [(sender, rcpts, msg)] = box.messages
        assert sender == "alerts@example.com" and rcpts == ["ops@example.com"]
        assert msg["Subject"] == "[FIRING:2] backend_down"
        assert "c-1 and c-2 are down" in msg.get_payload(decode=False)
    finally:
        controller.stop()


def test_smtp_with_login_and_mode_insecure() -> None:
    controller, box = smtp_server(require_login=True)
    try:
        base = f"127.0.0.1:{box.port}?from=alerts@example.com&to=ops@example.com&mode=insecure"
        assert Notifier(f"mailto://ops:pw@{base}").send("hello", "body").ok
        assert box.logins[-1] == (b"ops", b"pw")
        assert box.messages[-1][2]["Subject"] == "hello"

        bad = Notifier(f"mailto://ops:wr0ngpass@{base}").send("hello", "body")
        assert not bad.ok and bad.retryable
        assert bad.error and "wr0ngpass" not in bad.error
        assert len(box.messages) == 1
    finally:
        controller.stop()


def test_send_test_one_result_per_url(webhook: Webhook) -> None:
    dead = f"json://127.0.0.1:{find_free_port()}/hook"
    ok, down = send_test([webhook.url(), dead], hostname="vps1")
    assert ok.ok and not down.ok and down.error
    [req] = webhook.wait_for(1)
    assert req["body"]["title"] == "conduitctl test alert from vps1"


def test_an_unusable_url_is_reported_not_raised() -> None:
    result = Notifier("nosuchservice://user:hunter22@example.invalid/x").send("t", "b")
    assert not result.ok and not result.retryable
    assert result.error and "hunter22" not in result.error
    assert result.target == "nosuchservice://***"


def test_a_4xx_answer_is_not_retryable(webhook: Webhook) -> None:
    webhook.script = [404]
    result = Notifier(webhook.url()).send("t", "b")
    assert not result.ok and not result.retryable
    assert result.error and "404" in result.error


# --- Dispatcher -------------------------------------------------------------------------------


def test_dispatcher_retries_500s_then_delivers(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.script = [500, 500]
    results = Results()
    dispatcher = Dispatcher(
        [Notifier(webhook.url())], results, max_attempts=5, backoff_s=0.05, backoff_max_s=0.2
    )
    with caplog.at_level(logging.WARNING, logger="conduitctl.notify"):
        assert dispatcher.submit(notification())
        [(n, result, attempts)] = results.wait_for(1)
    assert dispatcher.close(timeout=5)
    assert result.ok and attempts == 3 and webhook.hits == 3
    assert webhook.requests[0]["body"]["title"] == n.title
    stats = dispatcher.stats
    assert (stats.delivered, stats.retries, stats.failed, stats.dropped) == (1, 2, 0, 0)
    ours = [r for r in caplog.records if r.name == "conduitctl.notify"]
    # once, not per retry; why, as a key=value field of the line (logs.py)
    assert len(ours) == 1 and "500" in str(ours[0].__dict__.get("error"))


def test_dispatcher_with_a_dead_receiver_never_blocks_and_reports(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = find_free_port()  # nothing listens there
    url = f"json://alerts:s3cretpw@127.0.0.1:{port}/hook/t0ps3cret"
    results = Results()
    dispatcher = Dispatcher([Notifier(url)], results, max_attempts=3, backoff_s=0.05)
    with caplog.at_level(logging.DEBUG):
        started = time.monotonic()
        assert dispatcher.submit(notification())
        assert time.monotonic() - started < 0.1  # the caller is never held up
        [(_, result, attempts)] = results.wait_for(1)
        assert dispatcher.close(timeout=5)
    assert not result.ok and result.retryable and attempts == 3
    assert result.target == "json://***"
    assert result.error and "s3cretpw" not in result.error and "t0ps3cret" not in result.error
    stats = dispatcher.stats
    assert (stats.delivered, stats.failed, stats.retries) == (0, 1, 2)
    ours = [r.getMessage() for r in caplog.records if r.name == "conduitctl.notify"]
    assert len(ours) == 1
    everything = caplog.text  # apprise's own lines too, with the root logger at DEBUG
    assert "s3cretpw" not in everything and "t0ps3cret" not in everything


def test_one_dead_notifier_does_not_delay_another(webhook: Webhook) -> None:
    dead = Notifier(f"json://127.0.0.1:{find_free_port()}/hook")
    results = Results()
    dispatcher = Dispatcher([dead, Notifier(webhook.url())], results, max_attempts=3, backoff_s=2)
    try:
        dispatcher.submit(notification())
        [(_, result, attempts)] = results.wait_for(1, timeout=1.5)  # before the 2 s backoff
        assert result.ok and attempts == 1 and result.target == "json://***"
    finally:
        assert not dispatcher.close(timeout=0.2)  # the dead one is mid-backoff: given up
    [_, (_, failed, _)] = results.wait_for(2, timeout=2)
    assert not failed.ok


def test_close_drains_the_queue(webhook: Webhook) -> None:
    results = Results()
    dispatcher = Dispatcher([Notifier(webhook.url())], results)
    for i in range(5):
        assert dispatcher.submit(notification(title=f"message {i}"))
    assert dispatcher.close(timeout=WAIT_S)
    assert [r["body"]["title"] for r in webhook.requests] == [f"message {i}" for i in range(5)]
    assert len(results.items) == 5 and all(r.ok for _, r, _ in results.items)
    assert not dispatcher.submit(notification())  # closed: dropped, reported
    assert results.items[-1][1].error == "not sent: dispatcher closed"


class Stuck:
    """A Sender that blocks until released: fills the queue behind it."""

    name = "stuck://***"

    def __init__(self) -> None:
        self.release = threading.Event()

    def send(self, title: str, body: str, severity: str = "info") -> SendResult:
        self.release.wait(WAIT_S)
        return SendResult(True, False, None, self.name)


def test_a_full_queue_drops_without_blocking() -> None:
    stuck = Stuck()
    results = Results()
    dispatcher = Dispatcher([stuck], results, queue_size=2)
    try:
        accepted = [dispatcher.submit(notification(title=f"m{i}")) for i in range(6)]
        # one in the worker's hands, two queued, the rest dropped (the worker may not have
        # taken the first yet, so allow one more drop)
        assert accepted[:2] == [True, True] and accepted.count(False) >= 3
        assert dispatcher.stats.dropped == accepted.count(False)
        dropped = [r for _, r, attempts in results.items if attempts == 0]
        assert dropped and all(r.error == "not sent: queue full" for r in dropped)
    finally:
        stuck.release.set()
        assert dispatcher.close(timeout=WAIT_S)

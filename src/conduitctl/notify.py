"""Delivery of alert notifications through Apprise URLs (the edge of the alert pipeline).

- `Notifier`: one or more apprise URLs; `send()` returns a `SendResult`, never raises, and
  never returns or logs a URL's secrets (targets are shown as `scheme://***`; error texts
  have every part of the URLs scrubbed out).
- `Dispatcher`: background delivery so a dead or slow notifier never blocks the daemon's
  loop: one worker thread and one bounded queue per notifier (a slow channel does not delay
  another), each message retried with exponential backoff, each distinct failure logged
  once, every outcome reported through `on_result`.
- `send_test(urls)`: `conduitctl alerts test`, synchronous, one result per URL.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise

from conduitctl.alerts import Notification
from conduitctl.settings import redact_url

log = logging.getLogger(__name__)

# Notification level -> apprise notify type (it picks the icon/colour where a service has one).
_NOTIFY_TYPES = {
    "critical": apprise.NotifyType.FAILURE,
    "warning": apprise.NotifyType.WARNING,
    "resolved": apprise.NotifyType.SUCCESS,
    "info": apprise.NotifyType.INFO,
}
# HTTP statuses that say "do not send that again": the request itself is wrong.
_RETRYABLE_4XX = frozenset({408, 425, 429})
_STATUS_RE = re.compile(r"error=(\d{3})\b")
_MIN_SECRET_LEN = 3  # shorter URL parts (ports like 25) would scrub too much of a message


@dataclass(frozen=True)
class SendResult:
    ok: bool
    retryable: bool  # worth trying again later (network, 5xx, timeout); False: fix the URL
    error: str | None = None  # one line, secrets scrubbed
    target: str = ""  # the notifier, redacted: "tgram://***"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "retryable": self.retryable,
            "error": self.error,
            "target": self.target,
        }


class Sender(Protocol):
    """What the Dispatcher delivers through (a Notifier, or a fake in tests)."""

    @property
    def name(self) -> str: ...

    def send(self, title: str, body: str, severity: str = "info") -> SendResult: ...


class Notifier:
    """Apprise over `urls`. Build one per URL (`notifiers_from_urls`) when retries must go
    only to the channel that failed; one Notifier over several URLs succeeds only if all do."""

    def __init__(self, urls: Sequence[str] | str) -> None:
        _quiet_apprise_debug()
        self._urls = [urls] if isinstance(urls, str) else list(urls)
        self._name = ", ".join(redact_url(u) for u in self._urls) or "(no notifier)"
        self._secrets = _secret_parts(self._urls)
        self._apprise: apprise.Apprise | None = None
        self._load_error: str | None = None
        try:
            app = apprise.Apprise()
            rejected = [redact_url(u) for u in self._urls if not app.add(u)]
            if rejected:
                self._load_error = (
                    f"apprise cannot use {', '.join(rejected)}: check the URL's syntax "
                    "against the apprise wiki for that service"
                )
            elif not self._urls:
                self._load_error = "no notifier URL given"
            self._apprise = app
        except Exception as exc:  # apprise must never take the daemon down
            self._load_error = f"apprise failed to load: {self._scrub(str(exc))}"

    @property
    def name(self) -> str:
        return self._name

    def send(self, title: str, body: str, severity: str = "info") -> SendResult:
        """Deliver one message to every URL. Blocks for as long as apprise does (its own
        connect/read timeouts apply). Never raises."""
        if self._load_error is not None or self._apprise is None:
            return SendResult(False, False, self._load_error, self._name)
        try:
            outcome = self._apprise.notify(
                title=title,
                body=body,
                notify_type=_NOTIFY_TYPES.get(severity, apprise.NotifyType.INFO),
                body_format=apprise.NotifyFormat.TEXT,
            )
        except Exception as exc:
            error = f"apprise raised {type(exc).__name__}: {self._scrub(str(exc))}"
            return SendResult(False, True, error, self._name)
        ok = bool(outcome)
        messages = [] if ok else [self._scrub(m) for m in _failure_messages(outcome)]
        close = getattr(outcome, "close", None)  # apprise >= 2: may hold temp log storage
        if callable(close):
            with contextlib.suppress(Exception):
                close()
        if ok:
            return SendResult(True, False, None, self._name)
        error = "; ".join(dict.fromkeys(messages)) or "delivery failed (apprise gave no detail)"
        return SendResult(False, _retryable(messages), error, self._name)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())


def _quiet_apprise_debug() -> None:
    """apprise's DEBUG lines carry request URLs (a Telegram bot token is in the path): keep its
    logger at WARNING even when the daemon logs at DEBUG, unless someone set it on purpose."""
    apprise_log = logging.getLogger("apprise")
    if apprise_log.level == logging.NOTSET:
        apprise_log.setLevel(logging.WARNING)


def notifiers_from_urls(urls: Iterable[str]) -> list[Notifier]:
    """One Notifier per URL, so a retry goes only to the channel that failed."""
    return [Notifier(url) for url in urls]


def _failure_messages(outcome: object) -> list[str]:
    """WARNING/ERROR lines apprise (>= 2.0) captured during the call; none from apprise 1.x,
    whose notify() returns a bare bool."""
    logs = getattr(outcome, "logs", None)
    if not callable(logs):
        return []
    try:
        return [
            str(entry.message)
            for entry in logs()
            if getattr(entry, "level", "") in ("WARNING", "ERROR", "CRITICAL")
            and "no service(s) to notify" not in str(entry.message)
        ]
    except Exception:
        return []


def _retryable(messages: list[str]) -> bool:
    """A 4xx answer (other than timeout/too-early/rate-limited) will not improve by itself;
    anything else (connection errors, 5xx, timeouts, unknown) is worth another try."""
    codes = [int(m) for text in messages for m in _STATUS_RE.findall(text)]
    permanent = bool(codes) and all(400 <= c < 500 and c not in _RETRYABLE_4XX for c in codes)
    return not permanent


def _secret_parts(urls: Iterable[str]) -> list[str]:
    """Every part of the URLs after the scheme (user, password, host, path, query values),
    raw and percent-decoded, longest first: what must never appear in an error text."""
    parts: set[str] = set()
    for url in urls:
        _, sep, rest = url.partition("://")
        if not sep:
            parts.add(url)
            continue
        pieces: list[str] = []
        try:
            split = urlsplit(f"x://{rest}")
            pieces += [split.username or "", split.password or "", split.hostname or ""]
            pieces += split.path.split("/")
            pieces += [value for _, value in parse_qsl(split.query)]
            pieces += [split.fragment]
        except ValueError:
            pass
        pieces += re.split(r"[/:@?&=#]", rest)  # malformed URLs too, and whatever urlsplit missed
        for piece in pieces:
            for variant in (piece, unquote(piece)):
                if len(variant) >= _MIN_SECRET_LEN:
                    parts.add(variant)
    return sorted(parts, key=len, reverse=True)


def send_test(urls: Sequence[str], hostname: str | None = None) -> list[SendResult]:
    """`conduitctl alerts test`: one test message through each URL, synchronously."""
    host = hostname or socket.gethostname()
    title = f"conduitctl test alert from {host}"
    body = (
        f"This is a test notification from conduitctl on {host}. "
        "If you can read it, alerts will reach you here."
    )
    return [Notifier(url).send(title, body, "info") for url in urls]


# --- background delivery ----------------------------------------------------------------------


OnResult = Callable[[Notification, SendResult, int], None]


@dataclass(frozen=True)
class DispatchStats:
    delivered: int = 0  # notifications that reached a notifier
    failed: int = 0  # given up after the last attempt (or not retryable)
    retries: int = 0  # attempts beyond the first
    dropped: int = 0  # never attempted: queue full or dispatcher closed


_IDLE_POLL_S = 0.5  # how often an idle worker checks whether the dispatcher closed


class _Stop:
    """Wakes an idle worker at close()."""


_STOP = _Stop()


class Dispatcher:
    """Delivers notifications in the background, one worker thread per notifier.

    `submit()` never blocks. A failed send is retried after `backoff_s`, then twice that,
    and so on up to `backoff_max_s`, for at most `max_attempts` attempts (a non-retryable
    failure stops at once). Every final outcome - delivered, given up, dropped - is passed
    to `on_result(notification, result, attempts)`, from a worker thread (or from the
    caller's thread for a drop): an asyncio daemon should hop back with
    `loop.call_soon_threadsafe`. An exception in `on_result` is logged and ignored.
    """

    def __init__(
        self,
        notifiers: Sequence[Sender],
        on_result: OnResult | None = None,
        *,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        queue_size: int = 100,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._notifiers = list(notifiers)
        self._on_result = on_result
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._queues: list[queue.Queue[Notification | _Stop]] = [
            queue.Queue(maxsize=queue_size) for _ in self._notifiers
        ]
        self._abort = threading.Event()  # close() ran out of time: stop waiting, drop the rest
        self._closed = False
        self._lock = threading.Lock()
        self._stats = DispatchStats()
        self._last_error: dict[int, str | None] = {}
        self._last_drop: dict[str, str] = {}
        self._threads = [
            threading.Thread(
                target=self._work, args=(i,), name=f"conduitctl-notify-{i}", daemon=True
            )
            for i in range(len(self._notifiers))
        ]
        for thread in self._threads:
            thread.start()

    @property
    def stats(self) -> DispatchStats:
        with self._lock:
            return self._stats

    def submit(self, notification: Notification) -> bool:
        """Queue `notification` for every notifier. Never blocks. False if any notifier's
        queue was full (that copy is dropped and reported to on_result) or the dispatcher
        is closed."""
        dropped: list[tuple[Sender, str]] = []
        with self._lock:
            for sender, q in zip(self._notifiers, self._queues, strict=True):
                if self._closed:
                    dropped.append((sender, "dispatcher closed"))
                    continue
                try:
                    q.put_nowait(notification)
                except queue.Full:
                    dropped.append((sender, "queue full"))
        for sender, why in dropped:
            self._drop(notification, sender, why)
        return not dropped

    def close(self, timeout: float = 10.0) -> bool:
        """Stop taking notifications, deliver what is queued (retries included) for up to
        `timeout` seconds, then give up on the rest (reported as dropped). True if
        everything was drained. A send in progress cannot be interrupted; its thread is a
        daemon thread and will not hold the process."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
        for q in self._queues:
            with contextlib.suppress(queue.Full):  # a full queue's worker is busy anyway
                q.put_nowait(_STOP)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        drained = not any(t.is_alive() for t in self._threads)
        if not drained:
            self._abort.set()  # backoff waits end now; what is still queued is dropped
            for thread in self._threads:
                thread.join(0.2)
        return drained

    # --- worker side ---

    def _work(self, index: int) -> None:
        sender = self._notifiers[index]
        q = self._queues[index]
        while True:
            try:
                item = q.get(timeout=_IDLE_POLL_S)
            except queue.Empty:
                if self._closed:
                    return
                continue
            if isinstance(item, _Stop):  # queued under the lock after closing: nothing follows
                return
            if self._abort.is_set():
                self._drop(item, sender, "dispatcher closed before delivery")
                continue
            self._deliver(index, sender, item)

    def _deliver(self, index: int, sender: Sender, n: Notification) -> None:
        attempt = 0
        while True:
            attempt += 1
            result = _safe_send(sender, n)
            if result.ok:
                self._count(delivered=1)
                if self._last_error.get(index):
                    log.info(
                        "notifier recovered", extra={"target": sender.name, "rule": n.rule.value}
                    )
                self._last_error[index] = None
                self._report(n, result, attempt)
                return
            self._note_failure(index, result)
            if not result.retryable or attempt >= self._max_attempts or self._abort.is_set():
                self._count(failed=1)
                self._report(n, result, attempt)
                return
            delay = min(self._backoff_s * 2 ** (attempt - 1), self._backoff_max_s)
            self._count(retries=1)
            if self._abort.wait(delay):
                self._count(failed=1)
                self._report(n, result, attempt)
                return

    def _note_failure(self, index: int, result: SendResult) -> None:
        """Log a failure once per distinct error, not on every retry."""
        if result.error != self._last_error.get(index):
            self._last_error[index] = result.error
            log.warning(
                "notification failed",
                extra={"target": result.target, "retryable": result.retryable,
                       "error": result.error},
            )  # fmt: skip

    def _drop(self, n: Notification, sender: Sender, why: str) -> None:
        self._count(dropped=1)
        if self._last_drop.get(sender.name) != why:  # once per reason, not per message
            self._last_drop[sender.name] = why
            log.warning(
                "notification dropped",
                extra={"target": sender.name, "rule": n.rule.value, "reason": why},
            )
        self._report(n, SendResult(False, False, f"not sent: {why}", sender.name), 0)

    def _count(
        self, delivered: int = 0, failed: int = 0, retries: int = 0, dropped: int = 0
    ) -> None:
        with self._lock:
            s = self._stats
            self._stats = DispatchStats(
                s.delivered + delivered, s.failed + failed, s.retries + retries, s.dropped + dropped
            )

    def _report(self, n: Notification, result: SendResult, attempts: int) -> None:
        if self._on_result is None:
            return
        try:
            self._on_result(n, result, attempts)
        except Exception:
            log.exception("on_result callback failed", extra={"rule": n.rule.value})


def _safe_send(sender: Sender, n: Notification) -> SendResult:
    try:
        return sender.send(n.title, n.body, n.level)
    except Exception as exc:  # a Sender other than Notifier may raise; the worker must live
        return SendResult(False, True, f"{type(exc).__name__}: {exc}", sender.name)

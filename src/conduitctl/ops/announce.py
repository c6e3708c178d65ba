"""Announce: an operator command tells the history and the people on call that something
went wrong (a rolling restart stopped at a backend that did not come back, a rollout gate
failed).

One call does two things, in this order:

1. records one `Event` in the history store (STATE_DIR/history.db), so `conduitctl events`
   shows it beside what the supervisor saw;
2. sends it once to every notifier in `alerts.notifiers`, each in its own thread, retrying
   a retryable failure with backoff, all within one deadline (`deadline_s`, a few seconds):
   the caller is never held up longer than that, even by a notifier that never answers.

It never raises: a history that cannot be written and a notifier that fails are reported in
the returned `Announcement` (and each failed notifier as a NOTIFY_FAILED event, as the
daemon does). Unlike the daemon's alerts there is no grouping, dedup or repeat: one call,
one message.

Usage::

    outcome = announce(settings, EventKind.OPERATION_FAILED, "conduit-3",
                       "rolling restart stopped at conduit-3: not ready after restart",
                       operation="rolling_restart", restarted=["conduit-1", "conduit-2"])
    progress(outcome.summary())
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from conduitctl.events import Event, EventKind
from conduitctl.notify import Sender, SendResult, notifiers_from_urls
from conduitctl.settings import Settings
from conduitctl.store import Store

log = logging.getLogger(__name__)

Level = Literal["critical", "warning", "info"]

DEADLINE_S = 5.0  # the whole announcement, every notifier and every retry included
ATTEMPTS = 3  # per notifier, a retryable failure only
BACKOFF_S = 0.5  # before the second attempt; doubled for each next one


@dataclass(frozen=True)
class Delivery:
    """What became of the message at one notifier (its target redacted: "tgram://***")."""

    target: str
    ok: bool
    attempts: int
    error: str | None = None  # one line, secrets scrubbed

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "ok": self.ok,
            "attempts": self.attempts,
            "error": self.error,
        }


@dataclass(frozen=True)
class Announcement:
    """The outcome of `announce`: the event, whether the history holds it, one `Delivery`
    per configured notifier (empty: none configured)."""

    event: Event
    recorded: bool
    record_error: str | None = None
    deliveries: tuple[Delivery, ...] = field(default_factory=tuple)

    @property
    def failures(self) -> list[Delivery]:
        return [d for d in self.deliveries if not d.ok]

    @property
    def notified(self) -> bool:
        """At least one notifier took the message."""
        return any(d.ok for d in self.deliveries)

    def summary(self) -> str:
        """One line for the operator: where the announcement went, and what failed."""
        recorded = "recorded in the history"
        parts = [
            recorded if self.recorded else f"not recorded in the history ({self.record_error})"
        ]
        if not self.deliveries:
            parts.append("no notifier configured (alerts.notifiers)")
        else:
            sent = len(self.deliveries) - len(self.failures)
            text = f"alert sent to {sent} of {len(self.deliveries)} notifiers"
            if self.failures:
                text += " (" + "; ".join(f"{d.target}: {d.error}" for d in self.failures) + ")"
            parts.append(text)
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event.to_dict(),
            "recorded": self.recorded,
            "record_error": self.record_error,
            "deliveries": [d.to_dict() for d in self.deliveries],
        }


def announce(
    settings: Settings,
    kind: EventKind,
    name: str | None,
    message: str,
    *,
    level: Level = "critical",
    senders: Sequence[Sender] | None = None,
    deadline_s: float = DEADLINE_S,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
    clock: Callable[[], float] = time.time,
    **detail: Any,
) -> Announcement:
    """Record `message` as a `kind` event about backend `name` (None: the fleet) and send it
    once to the configured notifiers. Returns within about `deadline_s` seconds; never raises.

    `detail` becomes the event's data (JSON; what JSON cannot hold is stored as its str())
    and the message's last lines: keep it small and free of secrets. Its keys must not be
    one of this function's own keyword names. `level`: critical | warning | info (the
    notifier's colour or icon where it has one). `senders` replaces the notifiers built from
    `alerts.notifiers` (tests, or a caller holding its own).
    """
    event = Event(ts=clock(), kind=kind, backend=name, message=message, data=dict(detail))
    store, record_error = _open_store(settings)
    if store is not None:
        record_error = _record(store, event)
    log.warning(message, extra={"event": kind.value, "backend": name or "-"})
    try:
        targets = (
            list(senders) if senders is not None else notifiers_from_urls(settings.alerts.notifiers)
        )
        origin = f"{settings.cluster.name}@{socket.gethostname()}"
        title = f"{origin}: [{level.upper()}] {kind.value}" + (f" {name}" if name else "")
        body = "\n".join([message, *(f"{k}: {v}" for k, v in detail.items())])
        deliveries = send_all(
            targets,
            title,
            body,
            level,
            deadline_s=deadline_s,
            attempts=attempts,
            backoff_s=backoff_s,
        )
    except Exception as exc:  # the contract is "never raises"
        log.exception("announce: sending failed", extra={"event": kind.value})
        deliveries = [Delivery("(notifiers)", False, 0, f"{type(exc).__name__}: {exc}")]
    for failed in (d for d in deliveries if not d.ok):
        log.warning(
            "announce: notifier failed",
            extra={"target": failed.target, "attempts": failed.attempts, "error": failed.error},
        )
        if store is not None:
            failure = Event(
                ts=clock(),
                kind=EventKind.NOTIFY_FAILED,
                backend=name,
                message=f"notification failed after {failed.attempts} attempts: {failed.error}",
                data={"target": failed.target, "attempts": failed.attempts, "about": kind.value},
            )
            _record(store, failure)
    if store is not None:
        try:
            store.close()
        except Exception:
            log.debug("announce: closing the history failed", exc_info=True)
    return Announcement(event, record_error is None, record_error, tuple(deliveries))


def send_all(
    senders: Sequence[Sender],
    title: str,
    body: str,
    level: str = "critical",
    *,
    deadline_s: float = DEADLINE_S,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
) -> list[Delivery]:
    """Send one message through every sender at once (a thread each), a retryable failure
    retried after `backoff_s`, then twice that, up to `attempts` tries, as long as the next
    try can start before the deadline. Returns one `Delivery` per sender, in order, after at
    most about `deadline_s` seconds: a sender still busy then is reported as failed (its
    daemon thread is left to finish on its own and cannot hold the process). Never raises."""
    deadline = time.monotonic() + deadline_s
    workers = [_Worker(s, title, body, level, attempts, backoff_s, deadline) for s in senders]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    return [w.outcome(deadline_s) for w in workers]


class _Worker(threading.Thread):
    def __init__(
        self,
        sender: Sender,
        title: str,
        body: str,
        level: str,
        attempts: int,
        backoff_s: float,
        deadline: float,
    ) -> None:
        super().__init__(name="conduitctl-announce", daemon=True)
        self.sender = sender
        self.target = _target(sender)
        self.message = (title, body, level)
        self.max_attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.deadline = deadline
        self.attempts = 0
        self.last: SendResult | None = None
        self.result: Delivery | None = None

    def run(self) -> None:
        while True:
            self.attempts += 1
            result = self.last = _safe_send(self.sender, *self.message)
            if result.ok:
                self.result = Delivery(self.target, True, self.attempts)
                return
            delay = self.backoff_s * 2 ** (self.attempts - 1)
            if (
                not result.retryable
                or self.attempts >= self.max_attempts
                or time.monotonic() + delay >= self.deadline
            ):
                self.result = Delivery(self.target, False, self.attempts, result.error)
                return
            time.sleep(delay)

    def outcome(self, deadline_s: float) -> Delivery:
        if self.result is not None:
            return self.result
        last = f" (last: {self.last.error})" if self.last is not None and self.last.error else ""
        return Delivery(
            self.target, False, self.attempts, f"no answer within {deadline_s:g}s{last}"
        )


def _safe_send(sender: Sender, title: str, body: str, level: str) -> SendResult:
    try:
        return sender.send(title, body, level)
    except Exception as exc:  # a Sender other than Notifier may raise
        return SendResult(False, True, f"{type(exc).__name__}: {exc}", _target(sender))


def _target(sender: Sender) -> str:
    try:
        return str(sender.name)
    except Exception:
        return "(unnamed notifier)"


def _open_store(settings: Settings) -> tuple[Store | None, str | None]:
    """The history store, or None and why not (never raises)."""
    try:
        from conduitctl.supervise.files import history_path

        return Store(history_path(settings.state_dir)), None
    except Exception as exc:
        log.warning("announce: history not available", extra={"error": str(exc)})
        return None, str(exc)


def _record(store: Store, event: Event) -> str | None:
    """None when recorded, else why not (never raises)."""
    try:
        store.record(event)
        return None
    except Exception as exc:
        log.warning(
            "announce: event not recorded", extra={"event": event.kind.value, "error": str(exc)}
        )
        return str(exc)

"""Structured logging for the daemon: key=value lines (logfmt) or one JSON object per line.

Context goes in `extra`, never into the message text:

    log.info("restarted", extra={"backend": "conduit-3", "attempt": 2})
    ts=2026-11-26T19:47:36.123Z level=info logger=conduitctl.daemon msg=restarted \
backend=conduit-3 attempt=2

One record is always one line: newlines in messages and tracebacks are escaped, so grep,
logrotate's copytruncate and `parse_logfmt` all see whole records.
"""

from __future__ import annotations

import io
import json as jsonlib
import logging
import logging.handlers
import os
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from conduitctl.errors import BadInput

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FILE_MODE = 0o640  # the adm group (or the operator's) may read; the world may not
MAX_BYTES = 10 * 1024**2
BACKUPS = 5

# Everything a LogRecord carries by itself; any other attribute came from `extra`.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_UNQUOTED = re.compile(r"[A-Za-z0-9_.:/@+,\-]+")
_KEY_BAD = re.compile(r"[^A-Za-z0-9_.\-]")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def _ts(created: float) -> str:
    """RFC 3339 UTC with milliseconds: 2026-11-26T19:47:36.123Z."""
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def _fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    """The record as ordered fields: ts, level, logger, msg, extras, then exc and stack."""
    out: dict[str, Any] = {
        "ts": _ts(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in record.__dict__.items():
        if key not in _RECORD_ATTRS and not key.startswith("_"):
            out.setdefault(key, value)  # an extra named like a field above cannot replace it
    if record.exc_info:
        out["exc"] = formatter.formatException(record.exc_info)
    elif record.exc_text:
        out["exc"] = record.exc_text
    if record.stack_info:
        out["stack"] = formatter.formatStack(record.stack_info)
    return out


def _escape(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    return f"\\u{ord(ch):04x}" if ch < " " else ch


def logfmt_value(value: object) -> str:
    """One value as logfmt: bare when it is a plain token, else double-quoted and escaped."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if _UNQUOTED.fullmatch(text):
        return text
    return '"' + "".join(map(_escape, text)) + '"'


class KeyValueFormatter(logging.Formatter):
    """`ts=... level=info logger=... msg="..." key=value ...`, one record per line."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(
            f"{_KEY_BAD.sub('_', key)}={logfmt_value(value)}"
            for key, value in _fields(record, self).items()
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line; values JSON cannot hold are written as their str()."""

    def format(self, record: logging.LogRecord) -> str:
        return jsonlib.dumps(_fields(record, self), default=str, ensure_ascii=False)


def parse_logfmt(line: str) -> dict[str, str]:
    """The fields of one key=value line (the inverse of KeyValueFormatter, values as text).

    Raises ValueError on text that is not logfmt.
    """
    out: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        if line[i] == " ":
            i += 1
            continue
        eq = line.find("=", i)
        if eq < 0 or " " in line[i:eq]:
            raise ValueError(f"no key=value at column {i}: {line[i : i + 20]!r}")
        key, i = line[i:eq], eq + 1
        if i < n and line[i] == '"':
            chars: list[str] = []
            i += 1
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n:
                    nxt = line[i + 1]
                    if nxt == "u":
                        chars.append(chr(int(line[i + 2 : i + 6], 16)))
                        i += 6
                        continue
                    chars.append(_UNESCAPES.get(nxt, nxt))
                    i += 2
                    continue
                chars.append(line[i])
                i += 1
            if i >= n:
                raise ValueError(f"unterminated quote in value of {key!r}")
            out[key] = "".join(chars)
            i += 1
        else:
            end = line.find(" ", i)
            end = n if end < 0 else end
            out[key] = line[i:end]
            i = end
    return out


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler whose files (the first and every one after a rollover) are 0640."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # an existing file, or a umask that would widen it
        return open(fd, "a", encoding=self.encoding, errors=self.errors)


# Libraries that log request lines (urllib3: "POST /bot<TOKEN>/sendMessage") or their own
# chatter at debug: pinned to WARNING whatever the daemon's level.
QUIET_LOGGERS = ("urllib3", "requests", "apprise", "docker", "asyncio", "markdown")
SECRET_MIN = 6  # shorter URL pieces (a port, "api", "v2") are not worth hiding


def url_secrets(urls: Iterable[str]) -> set[str]:
    """What of each notifier URL must never reach a log: everything after the scheme, and
    each piece of it (user, password, host, path segment, query value) long enough to be
    a token."""
    found: set[str] = set()
    for url in urls:
        _, sep, rest = url.partition("://")
        rest = rest if sep else url
        if len(rest) >= SECRET_MIN:
            found.add(rest)
        found.update(p for p in re.split(r"[/?&=@:#]", rest) if len(p) >= SECRET_MIN)
    return found


class RedactSecrets(logging.Filter):
    """Replaces every known secret in a record (its message, its arguments, its extras, its
    traceback) with ***, before any handler formats it."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()

    def set(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(sorted(set(secrets), key=len, reverse=True))  # longest first

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        record.msg, record.args = self.scrub(record.getMessage()), None
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_ATTRS and isinstance(value, str):
                setattr(record, key, self.scrub(value))
        if record.exc_info:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


REDACT = RedactSecrets()  # one per process: `set_secrets` swaps what it hides (SIGHUP)


def set_secrets(urls: Iterable[str]) -> None:
    """The notifier URLs whose secrets the log handlers hide from now on."""
    REDACT.set(url_secrets(urls))


def add_secrets(urls: Iterable[str]) -> None:
    """Hide these URLs' secrets too, besides those already hidden (a process that reads
    several versions of the settings: a rollback, a rollout, a snapshot diff)."""
    REDACT.set(set(REDACT.secrets) | url_secrets(urls))


def setup_logging(
    level: str = "info",
    json: bool = False,
    file: Path | None = None,
    max_bytes: int = MAX_BYTES,
    backups: int = BACKUPS,
    stream: TextIO | None = None,
    secret_urls: Iterable[str] = (),
) -> None:
    """Configure the root logger: one handler on `stream` (default: sys.stderr at call time)
    and, with `file`, a rotating file (mode 0640, parent created) that rolls over at
    `max_bytes` keeping `backups` old files (max_bytes=0: never; logrotate may own it).

    Idempotent: handlers installed by an earlier call are closed and replaced, others kept.
    Raises BadInput for an unknown level, or a file that cannot be opened.
    """
    try:
        numeric = LEVELS[level.lower()]
    except KeyError:
        raise BadInput(
            f"log level {level!r} is not one of {', '.join(sorted(set(LEVELS) - {'warn'}))}"
        ) from None
    formatter: logging.Formatter = JsonFormatter() if json else KeyValueFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if file is not None:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(
                _PrivateRotatingFileHandler(
                    file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
                )
            )
        except OSError as exc:
            raise BadInput(
                f"log file {file}: cannot open ({exc.strerror or exc}); fix its directory's "
                "permissions or choose another path"
            ) from None
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_conduitctl", False)]:
        root.removeHandler(old)
        old.close()
    set_secrets(secret_urls)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(REDACT)
        handler._conduitctl = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(numeric)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))

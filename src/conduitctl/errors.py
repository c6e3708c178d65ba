"""One error tree for conduitctl.

Core code raises these; only the CLI turns them into one line and an exit code.
"""

from __future__ import annotations


class ConduitctlError(Exception):
    """Root of every error conduitctl raises on purpose. Exit code 1 unless a subclass says."""

    exit_code = 1


class BadInput(ConduitctlError):
    """Bad config, arguments or input file: the message names the key, the value and the fix."""

    exit_code = 2


class ConfigError(BadInput):
    """conduit.toml (or an imported settings file) is invalid or missing."""


class MissingDependency(BadInput):
    """A tool conduitctl needs (nginx, haproxy, docker, debootstrap...) is not installed."""


class ValidationFailed(ConduitctlError):
    """A rendered config was rejected by its own tool (nginx -t, haproxy -c...)."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class CheckFailed(ConduitctlError):
    """A check (preflight, audit, loadtest threshold) did not pass."""


class Busy(ConduitctlError):
    """Another conduitctl command is changing the fleet right now (the operator lock)."""

    exit_code = 1


class Refused(BadInput):
    """A change refused whole, before any step: one of its steps would fail."""


LONG_WORD = 80  # a value longer than this is shortened in a message
LONG_PATH = 300  # a path may be long and still be the operator's own: only this is too long


def shorten(message: str) -> str:
    """Each overlong word of a message (a 5,000-digit index, a pasted blob) as its start,
    its end and its length, so the one line stays one readable line."""
    out = []
    for word in message.split(" "):
        limit = LONG_PATH if "/" in word else LONG_WORD
        if len(word) > limit:
            tail = word[-1] if word[-1] in ";,.:" else ""  # the sentence's, not the value's
            value = word[: len(word) - len(tail)]
            word = f"{value[:30]}...{value[-10:]} ({len(value)} characters){tail}"
        out.append(word)
    return " ".join(out)


def not_utf8(source: str, data: bytes, exc: UnicodeDecodeError) -> str:
    """The one line for a file that is not UTF-8 text: where, never what (it may be a secret)."""
    line = data.count(b"\n", 0, exc.start) + 1
    return (
        f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); save it as UTF-8"
    )

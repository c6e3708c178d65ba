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

"""The state directory: every file name under STATE_DIR, and the one way files there are written.

A newcomer looking for "where does conduitctl keep X" reads this module and nothing else. Every
write goes through `write_atomic`: a temp file in the same directory, fsync of the file, rename,
fsync of the directory, so a crash or a full disk leaves the old file or the new one, never half
of one. The mode comes from what the file holds: 0600 for a secret or a key, 0644 otherwise.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

PRIVATE = 0o600
PUBLIC = 0o644


@dataclass(frozen=True)
class StateDir:
    """The names of conduitctl's files under one state directory (resolved once, absolute)."""

    root: Path

    # --- the supervisor ---------------------------------------------------------------------
    @property
    def daemon_pid(self) -> Path:
        return self.root / "daemon.pid"

    @property
    def daemon_identity(self) -> Path:
        """The daemon's pid, start time and executable (conduitctl.procid)."""
        return self.root / "daemon.identity.json"

    @property
    def daemon_lock(self) -> Path:
        """Held (flock) by the running daemon for its whole life: two cannot start."""
        return self.root / "daemon.lock"

    @property
    def daemon_state(self) -> Path:
        """What the daemon keeps across its own restarts (backends it holds down, raised)."""
        return self.root / "daemon-state.json"

    @property
    def history_db(self) -> Path:
        return self.root / "history.db"

    @property
    def alerts(self) -> Path:
        return self.root / "alerts.json"

    @property
    def status_socket(self) -> Path:
        """Where the supervisor answers `status` (0600; linked from /run/conduitctl,
        conduitctl.status_wire)."""
        return self.root / "status.sock"

    @property
    def history_live(self) -> Path:
        """Present while someone (a chaos drill) reads the history as it is written."""
        return self.root / "history.live"

    # --- operator intent --------------------------------------------------------------------
    @property
    def holds(self) -> Path:
        """One file per backend an operator command is working on, holding its expiry."""
        return self.root / "hold"

    @property
    def lock(self) -> Path:
        """The operator lock: one mutating command at a time."""
        return self.root / "operator.lock"

    @property
    def drained(self) -> Path:
        return self.root / "drained.json"

    # --- change history ---------------------------------------------------------------------
    @property
    def applied(self) -> Path:
        """A copy of the conduit.toml the fleet was last converged to."""
        return self.root / "applied.toml"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def rollout(self) -> Path:
        return self.root / "rollout"

    @property
    def rollout_state(self) -> Path:
        return self.rollout / "state.json"

    @property
    def rollout_base(self) -> Path:
        """The settings the rollout started from (what a roll back returns to)."""
        return self.rollout / "base.toml"

    @property
    def rollout_target(self) -> Path:
        return self.rollout / "target.toml"

    @property
    def rollout_rejected(self) -> Path:
        """The conduit.toml a failed rollout rolled back from, kept for the operator."""
        return self.rollout / "rejected.toml"

    @property
    def legacy(self) -> Path:
        """Present while the fleet runs in conduit-manager's layout (`rollback --legacy`)."""
        return self.root / "legacy.json"

    @property
    def cli_versions(self) -> Path:
        """The Conduit CLI version each image (by id) printed: asked once per image."""
        return self.root / "cli-versions.json"

    @property
    def migration(self) -> Path:
        """`migrate`'s journal: each conduit-manager station, and how far its hand-over got."""
        return self.root / "migration.json"

    # --- data -------------------------------------------------------------------------------
    @property
    def key_backups(self) -> Path:
        return self.root / "keys"

    @property
    def processes(self) -> Path:
        """The process runtime's per-backend directories (data dir, pid, log)."""
        return self.root / "process"

    @property
    def front(self) -> Path:
        """The front's installed config and its runtime files."""
        return self.root / "front"

    @property
    def logrotate_state(self) -> Path:
        return self.root / "logrotate.state"

    def log_dir(self) -> Path:
        return self.root / "log"

    def run_dir(self) -> Path:
        return self.root / "run"


def resolve_state_dir(configured: Path | None, config_path: Path | None, default: Path) -> Path:
    """The state dir, absolute. A relative one is taken against the config file's directory,
    so the systemd unit, the daemon and the CLI (each with its own cwd) agree on it."""
    if configured is None:
        return default.absolute()
    if configured.is_absolute() or config_path is None:
        return configured.absolute()
    return (config_path.absolute().parent / configured).absolute()


def flock_within(fd: int, wait_s: float, every: float = 0.05) -> bool:
    """Take an exclusive flock on `fd`, trying until `wait_s` has passed; False if it never
    came free (the caller says who holds it and what to do). Released when `fd` closes."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(every)


def write_atomic(
    path: Path,
    data: str | bytes,
    *,
    secret: bool,
    owner: tuple[int, int] | None = None,
    durable: bool = True,
) -> None:
    """Replace `path` with `data`: a temp file beside it, fsynced, renamed, directory fsynced.

    The file is created 0600 when `secret` (a key, a token, a config holding either), else 0644;
    the mode (and `owner`, uid and gid) is set before the data is written, so a secret is
    never readable by others, not even for a moment. `durable=False` skips both fsyncs, for a
    file rewritten every second whose loss in a crash costs nothing (readers still see the
    old file or the new one, never half of one).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, PRIVATE if secret else PUBLIC)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def config_holds_secrets(text: str) -> bool:
    """Whether a conduit.toml's text carries a secret (notifier URLs hold tokens).

    Unreadable text counts as secret: when in doubt, private.
    """
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError):  # ValueError: an integer of 4,300+ digits
        return True
    alerts = data.get("alerts", {})
    return not isinstance(alerts, dict) or bool(alerts.get("notifiers"))


def write_config_copy(text: str, path: Path) -> None:
    """Keep a copy of a conduit.toml (applied, snapshot, rollout): private when it holds secrets."""
    write_atomic(path, text, secret=config_holds_secrets(text))

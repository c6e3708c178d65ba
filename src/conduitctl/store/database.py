"""The history file and its one SQLite connection: created 0600, WAL, migrated on open,
explicit transactions, and every `sqlite3.Error` turned into a `StoreError` naming the file.

A file from a newer conduitctl, another program's database or a file that is not SQLite at
all is refused with a `StoreError`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conduitctl.errors import ConduitctlError
from conduitctl.store.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)


class StoreError(ConduitctlError):
    """The history database cannot be opened, read or written; the message names the file
    and, where there is one, the fix."""


class Database:
    """The connection to the history at `path`, created (mode 0600, parent directories
    included) and migrated on open. Not locked: the `Store` serializes every call.

    Raises `StoreError` when the file cannot be created, opened or migrated.
    """

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        self._backend_ids: dict[str, int] = {}
        self._create_file()
        try:
            self.conn = sqlite3.connect(
                self.path,
                timeout=busy_timeout,
                isolation_level=None,  # autocommit; transactions are explicit
                check_same_thread=False,  # the Store's lock serializes calls instead
            )
        except sqlite3.Error as exc:
            raise self.error("open", exc) from exc
        try:
            self._configure(busy_timeout)
            self._migrate()
        except BaseException as exc:
            self.conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self.error("open", exc) from exc
            raise

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE (take the write lock up front, so no upgrade can fail midway)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self._backend_ids.clear()  # ids inserted in the rolled-back transaction are gone
            raise

    @contextmanager
    def guard(self, doing: str) -> Iterator[None]:
        """Turn an `sqlite3.Error` into a `StoreError`: "cannot {doing} {path}: ..."."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self.error(doing, exc) from exc

    def error(self, doing: str, exc: sqlite3.Error) -> StoreError:
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF  # the primary code
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            return StoreError(
                f"{self.path} is not a usable conduitctl history database ({exc}); move it "
                f"aside (mv {self.path} {self.path}.broken) and conduitctl starts a new one"
            )
        return StoreError(f"cannot {doing} {self.path}: {exc}")

    def backend_id(self, name: str) -> int:
        """The id of backend `name` in the `backends` table, inserted on first sight."""
        cached = self._backend_ids.get(name)
        if cached is not None:
            return cached
        self.conn.execute("INSERT OR IGNORE INTO backends (name) VALUES (?)", (name,))
        row = self.conn.execute("SELECT id FROM backends WHERE name = ?", (name,)).fetchone()
        self._backend_ids[name] = int(row[0])
        return int(row[0])

    # -- opening

    def _create_file(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                info = self.path.stat()
                if info.st_mode & 0o077 and info.st_uid == os.getuid():
                    os.chmod(self.path, 0o600)
            else:
                os.fchmod(fd, 0o600)  # whatever the umask
                os.close(fd)
        except OSError as exc:
            raise StoreError(
                f"cannot create {self.path}: {exc.strerror or exc}; "
                "check the state directory's owner and permissions"
            ) from exc

    def _configure(self, busy_timeout: float) -> None:
        conn = self.conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            log.warning("not in WAL mode: readers may block",
                        extra={"journal_mode": mode, "path": str(self.path)})  # fmt: skip
        conn.execute("PRAGMA synchronous = NORMAL")

    def _migrate(self) -> None:
        conn = self.conn
        if self._versions() == (APPLICATION_ID, SCHEMA_VERSION):
            return  # the common case, and the only one for readers: no write lock
        with self.transaction():
            app_id, version = self._versions()  # again, under the write lock
            if app_id not in (0, APPLICATION_ID) or (version == 0 and self._has_tables()):
                raise StoreError(
                    f"{self.path} is an SQLite database of another program, not a conduitctl "
                    "history; point conduitctl at another file or move this one aside"
                )
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer conduitctl (schema {version}, this "
                    f"one knows {SCHEMA_VERSION}); upgrade conduitctl or move the file aside"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
                log.info("history schema migrated",
                         extra={"to": step + 1, "path": str(self.path)})  # fmt: skip
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _versions(self) -> tuple[int, int]:
        app_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        return int(app_id), int(version)

    def _has_tables(self) -> bool:
        row = self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return bool(row[0])

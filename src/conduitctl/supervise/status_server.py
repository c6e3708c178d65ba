"""The supervisor's status socket: a plain `conduitctl status` is answered here, so the
command need not import the settings, the runtime or rich (conduitctl.fast_status). The
answer is built by the same code `status --direct` runs (conduitctl.app.status), in a
worker thread, when asked: it costs nothing while nobody asks.

It answers root or the supervisor's own user only, one request line of bounded size each,
two at a time (a third is told BUSY at once), each within ANSWER_S; and only while its
settings came from the config file as it is now, byte for byte (status_wire): otherwise
STALE, and the command reads the fleet itself."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import io
import json
import logging
import os
import socket
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

from conduitctl import status_wire as wire
from conduitctl.app.context import Fleet
from conduitctl.observe.model import Tick, cpu_readings
from conduitctl.settings import Settings

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 1.0
ANSWER_S = 2.5  # under the client's 3 s: a late answer is not built for nobody
AT_ONCE = 2  # answers being built at the same time; a third is told BUSY

Fingerprint = tuple[str, str]  # (status_wire.config_identity, sha256 of the bytes)


def fingerprint(path: Path) -> Fingerprint | None:
    """The config file's identity (stat first) and the hash of its bytes; None: unreadable."""
    identity = wire.config_identity(str(path))
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return None if identity is None else (identity, hashlib.sha256(data).hexdigest())


def read_settings(
    path: Path, load: Callable[[Path], Settings]
) -> tuple[Settings, Fingerprint | None]:
    """`load(path)`, and the fingerprint of the file it read: None when the file changed
    while it was read (then nothing is answered until the next reload)."""
    before = fingerprint(path)
    settings = load(path)
    return settings, before if before is not None and fingerprint(path) == before else None


class StatusServer:
    def __init__(
        self, socket_path: Path, config_path: Path, last_tick: Callable[[], Tick | None]
    ) -> None:
        self.socket_path = socket_path
        self.config_path = config_path
        self.last_tick = last_tick  # each backend's CPU rate: no 100 ms sample of its own
        self.settings: Settings | None = None
        self.fingerprint: Fingerprint | None = None
        self.fleet: Fleet | None = None
        self.link: str | None = None
        self.server: asyncio.AbstractServer | None = None
        self.turns = asyncio.Semaphore(AT_ONCE)

    def serve_settings(self, settings: Settings, read: Fingerprint | None) -> None:
        """Answer for `settings`, read from the config file as `read` (read_settings) says;
        None: never answer (say STALE) until the next reload."""
        self.settings, self.fingerprint, self.fleet = settings, read, None
        self._link()

    async def start(self) -> None:
        self.socket_path.unlink(missing_ok=True)  # a dead supervisor's
        self.server = await asyncio.start_unix_server(
            self.handle, path=str(self.socket_path), limit=wire.MAX_REQUEST
        )
        if not stat.S_ISSOCK(os.lstat(self.socket_path).st_mode):  # never chmod a planted link
            raise OSError(f"{self.socket_path} is not the socket just bound")
        os.chmod(self.socket_path, 0o600)
        self._link()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self._unlink()
        self.socket_path.unlink(missing_ok=True)

    # --- the link in RUN_DIR ----------------------------------------------------------------

    def _link(self) -> None:
        """Point RUN_DIR's link for this config file at our socket (only once it listens)."""
        self._unlink()
        if self.fingerprint is None or self.server is None:
            return
        identity = self.fingerprint[0]
        try:
            os.makedirs(wire.RUN_DIR, mode=0o700, exist_ok=True)
            if not wire.run_dir_trusted(os.geteuid()):
                log.warning("status socket not linked", extra={"reason": f"{wire.RUN_DIR} is "
                            "not root's or ours alone"})  # fmt: skip
                return
            _prune_dead_links()
            link = wire.link_for(identity)
            temp = f"{link}.{os.getpid()}.tmp"
            os.symlink(self.socket_path, temp)
            os.replace(temp, link)
            self.link = link
        except OSError as exc:  # the fast path is an optimisation: status still works
            log.warning("status socket not linked", extra={"error": str(exc)})

    def _unlink(self) -> None:
        if self.link is None:
            return
        try:
            if os.readlink(self.link) == str(self.socket_path):
                os.unlink(self.link)
        except OSError:
            pass
        self.link = None

    # --- answering --------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await self._reply(reader, writer)
            writer.write(reply)
            await writer.drain()
        except (TimeoutError, OSError, ValueError) as exc:  # UnicodeError is a ValueError
            log.debug("status request dropped", extra={"error": str(exc)})
        finally:
            writer.close()

    async def _reply(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        sock = writer.get_extra_info("socket")
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        if int.from_bytes(creds[4:8], sys.byteorder) not in (0, os.geteuid()):
            raise ValueError("a status request from another user")
        line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
        request = wire.decode_request(line)
        settings, read = self.settings, self.fingerprint
        if settings is None or read is None or request["identity"] != read[0]:
            return wire.STALE + b"\n"
        if fingerprint(self.config_path) != read:
            return wire.STALE + b"\n"  # changed since we read it, before any reload
        if self.turns.locked():
            return wire.BUSY + b"\n"  # the command reads the fleet itself, at once
        async with self.turns:
            text = await asyncio.wait_for(asyncio.to_thread(self.answer, settings, request),
                                          ANSWER_S)  # fmt: skip
        try:  # what the full command could not print, it would fail on: let it
            payload = text.encode(_codec(str(request["encoding"])), "strict")
        except UnicodeEncodeError:
            return wire.STALE + b"\n"
        return wire.OK + f" {len(payload)}\n".encode() + payload

    def answer(self, settings: Settings, request: dict[str, object]) -> str:
        """The output `status` (or `status --json`) would print, for this terminal."""
        from conduitctl.app import status as shown

        fleet = self.fleet
        if fleet is None or fleet.settings is not settings:
            fleet = self.fleet = Fleet.of(settings, self.config_path)
        max_age = shown.STALE_TICKS * settings.health.interval
        recent = cpu_readings(self.last_tick(), time.time(), max_age)
        if request["json"]:
            document = shown.document(fleet, "supervisor", recent)
            return json.dumps(document, indent=2, default=str) + "\n"
        from rich.console import Console

        buffer = _Output(str(request["encoding"]), bool(request["tty"]))
        console = Console(  # rich decides colour here as it would in the command
            file=buffer,
            width=int(str(request["width"])),
            force_interactive=False,
            _environ=dict(request["env"]),  # type: ignore[call-overload]
        )
        console.print(shown.render(fleet, recent))
        return buffer.getvalue()


class _Output(io.StringIO):
    """A string buffer that is the caller's stdout as rich sees it: its encoding (rich draws
    what it can show) and whether it is a terminal (rich decides colour)."""

    def __init__(self, encoding: str, tty: bool) -> None:
        super().__init__()
        self._encoding = encoding
        self._tty = tty

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding

    def isatty(self) -> bool:
        return self._tty


def _codec(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return "utf-8"


def _prune_dead_links() -> None:
    """Links left by supervisors that died without closing (a kill -9, a reboot): to a
    socket that is gone, or that nobody listens on any more."""
    try:
        names = os.listdir(wire.RUN_DIR)
    except OSError:
        return
    for name in names:
        path = os.path.join(wire.RUN_DIR, name)
        if name.startswith("status-") and os.path.islink(path) and not _listening(path):
            with contextlib.suppress(OSError):
                os.unlink(path)


def _listening(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        probe.setblocking(False)
        try:
            probe.connect(path)
        except BlockingIOError:
            return True  # a full backlog: someone listens
        except OSError:
            return False
        return True

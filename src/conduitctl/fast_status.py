"""`conduitctl status` in a few milliseconds: while the supervisor runs, it reads the fleet
(the same code as `status --direct`, conduitctl.app.status) and sends back the finished
output; this side only finds it and prints what it says. Loading the settings, Typer, rich
and pydantic costs twenty times a bare Python start; this imports `os` and `_socket`.

Anything it cannot do exactly as the full command would (another option, no supervisor,
a supervisor on another version of conduit.toml, a socket that is not ours, a slow answer)
returns None, and the full command runs instead: the fast path is never the only path."""

from __future__ import annotations

import os
import sys

from conduitctl import status_wire as wire
from conduitctl.config_locate import locate

TIMEOUT_S = 3.0  # a supervisor this slow to answer: read the fleet here instead
MAX_REPLY = 16 * 1024 * 1024
NOT_A_TTY_WIDTH = 160  # as the full command's console (cli/common.py)


def parse(argv: list[str]) -> tuple[str | None, bool] | None:
    """(--config value or None, --json) for `status [-c PATH] [--json]`; None for any other
    command line, which the full CLI parses (and explains, if wrong)."""
    if not argv or argv[0] != "status":
        return None
    config: str | None = None
    as_json = False
    rest = argv[1:]
    while rest:
        arg = rest.pop(0)
        if arg == "--json" and not as_json:
            as_json = True
        elif arg in ("-c", "--config") and rest and config is None:
            config = rest.pop(0)
        elif arg.startswith("--config=") and config is None:
            config = arg.removeprefix("--config=")
        else:
            return None
        if config is not None and (not config or config.startswith("-")):
            return None
    return config, as_json


def terminal_width(tty: bool) -> int:
    """The width rich would pick: $COLUMNS, else the terminal's, else 80; 160 into a pipe."""
    if not tty:
        return NOT_A_TTY_WIDTH
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        return int(columns)
    try:
        return os.get_terminal_size(1).columns
    except OSError:
        return 80


def ask(link: str, request: bytes) -> bytes | None:
    """The supervisor's whole reply; None when it is not there, not ours, busy or slower
    than TIMEOUT_S in all."""
    import _socket
    import time

    deadline = time.monotonic() + TIMEOUT_S
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.connect(link)  # a full backlog (BlockingIOError): read the fleet here instead
        sock.setblocking(True)
        creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        peer_uid = int.from_bytes(creds[4:8], sys.byteorder)
        if peer_uid not in (0, os.geteuid()):
            return None  # a stranger's socket: never print what it says
        sock.settimeout(TIMEOUT_S)
        sock.sendall(request)
        chunks: list[bytes] = []
        size = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REPLY:
                return None
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        sock.close()


def run(argv: list[str], out_fd: int = 1) -> int | None:
    """Print the supervisor's `status` and return 0; None: run the full command instead."""
    parsed = parse(argv)
    if parsed is None:
        return None
    config, as_json = parsed
    identity = wire.config_identity(locate(config))
    if identity is None or not wire.run_dir_trusted(os.geteuid()):
        return None
    tty = os.isatty(out_fd)
    env = {k: os.environ[k] for k in wire.PASSED_ENV if k in os.environ}
    encoding = (getattr(sys.stdout, "encoding", None) or "utf-8").lower()
    request = wire.encode_request(
        identity, as_json=as_json, tty=tty, width=terminal_width(tty), encoding=encoding, env=env
    )
    if request is None:
        return None
    reply = ask(wire.link_for(identity), request)
    payload = None if reply is None else wire.payload_of(reply)
    if payload is None:
        return None
    view = memoryview(payload)
    while view:
        view = view[os.write(out_fd, view) :]
    return 0

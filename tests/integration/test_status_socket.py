"""`status` while the supervisor runs is answered by it, over its status socket: the same
document and table as `status --direct`, in a fraction of the time (benchmarks/
bench_status.py). It is believed only from a socket of root's, for the config file as it
is now; anything else and the command reads the fleet itself."""

from __future__ import annotations

import os
import pty
import signal
import socket
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest
from fleet_helpers import CONDUITCTL, FAST_HEALTH, PURGE, cli, cli_json, wait_for, write_config

from conduitctl import fast_status
from conduitctl import status_wire as wire

NOBODY = 65534
# nobody cannot run the venv's Python (under /root); the system's runs these stdlib scripts.
SYSTEM_PYTHON = "/usr/bin/python3"
STABLE = ("name", "index", "state", "health", "pid", "listen", "metrics", "restarts")


def fast_text(config: Path) -> str | None:
    """What the fast path prints for `status -c CONFIG` (None: it let the full CLI run)."""
    read, write = os.pipe()
    try:
        code = fast_status.run(["status", "-c", str(config)], out_fd=write)
    finally:
        os.close(write)
    with os.fdopen(read, "rb") as pipe:
        text = pipe.read().decode()
    return None if code is None else text


def on_a_terminal(config: Path, env: dict[str, str], *extra: str) -> str:
    """`status` printed on a pseudo-terminal, as an operator's shell would see it."""
    main, side = pty.openpty()
    try:
        try:
            subprocess.run(
                [CONDUITCTL, "status", "--config", str(config), *extra],
                stdout=side, stderr=subprocess.DEVNULL, timeout=30, check=True,
                env={**os.environ, "CONDUITCTL_CONFIG": "", "COLUMNS": "120", **env},
            )  # fmt: skip
        finally:
            os.close(side)
        chunks = []
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the terminal's other side is closed, all was read
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")
    finally:
        os.close(main)


def source(config: Path) -> str:
    return cli_json("status", "--config", str(config))["source"]


def as_nobody() -> None:
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_the_supervisor_answers_status_as_the_command_would(tmp_path, free_block):
    config = write_config(tmp_path, free_block(140), name="sts", containers=2, extra=FAST_HEALTH)
    try:
        cli("up", "--config", str(config))
        wait_for(lambda: cli_json("status", "--config", str(config))["totals"]["healthy"] == 2,
                 30, "2 healthy backends")  # fmt: skip
        served = cli_json("status", "--config", str(config))
        direct = cli_json("status", "--direct", "--config", str(config))
        assert (served["source"], direct["source"]) == ("supervisor", "direct")
        assert served.keys() == direct.keys()
        for mine, theirs in zip(served["backends"], direct["backends"], strict=True):
            assert {k: mine[k] for k in STABLE} == {k: theirs[k] for k in STABLE}
        assert served["front"] == direct["front"]
        assert served["supervisor"] == direct["supervisor"] and served["supervisor"]["pid"]
        for key in ("backends", "running", "healthy", "restarts"):
            assert served["totals"][key] == direct["totals"][key]

        text = fast_text(config)
        plain = cli("status", "--direct", "--config", str(config)).stdout
        assert text is not None, "the supervisor did not answer"
        assert [ln for ln in text.splitlines() if ln.startswith(("front:", "supervisor:"))] == [
            ln for ln in plain.splitlines() if ln.startswith(("front:", "supervisor:"))
        ]
        for name in ("sts-1", "sts-2", "total"):
            assert f"│ {name}" in text
        assert "\x1b[" not in text  # into a pipe: no colours, as the full command
        for env in ({"TERM": "xterm-256color"}, {"NO_COLOR": "1"}, {"TTY_COMPATIBLE": "0"}):
            fast, slow = on_a_terminal(config, env), on_a_terminal(config, env, "--direct")
            assert ("\x1b[" in fast) == ("\x1b[" in slow), env  # rich decides alike
            assert "\x1b[" in fast or "TERM" not in env, env  # a terminal gets styles

        state_socket = config.parent / "state" / "status.sock"
        assert state_socket.stat().st_mode & 0o777 == 0o600
        identity = wire.config_identity(str(config))
        assert identity is not None
        link = wire.link_for(identity)
        assert os.readlink(link) == str(state_socket)

        # Another user cannot even connect; a malformed request gets nothing back, and the
        # supervisor answers the next one.
        probe = f"import socket; socket.socket(socket.AF_UNIX).connect({str(state_socket)!r})"
        denied = subprocess.run([SYSTEM_PYTHON, "-c", probe], preexec_fn=as_nobody,
                                capture_output=True, text=True)  # fmt: skip
        assert denied.returncode != 0 and "PermissionError" in denied.stderr
        with socket.socket(socket.AF_UNIX) as raw:
            raw.settimeout(5)
            raw.connect(str(state_socket))
            raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert raw.recv(100) == b""
        assert source(config) == "supervisor"

        # An edit the supervisor has not read: the command reads the fleet itself until a
        # reload (SIGHUP) has the supervisor on the file as it is.
        with config.open("a") as handle:
            handle.write("# an operator's note\n")
        assert source(config) == "direct"
        os.kill(served["supervisor"]["pid"], signal.SIGHUP)
        wait_for(lambda: source(config) == "supervisor", 15, "the reloaded supervisor to answer")

        # scale replaces conduit.toml (a new inode) and tells the supervisor: status shows
        # the three at once, whoever answers, and the supervisor again after its reload.
        cli("scale", "3", "--config", str(config))
        assert len(cli_json("status", "--config", str(config))["backends"]) == 3
        wait_for(lambda: source(config) == "supervisor", 15, "the supervisor after scale")
        assert not os.path.lexists(link)  # the old file's link went with its reload
        new_link = wire.link_for(wire.config_identity(str(config)) or "")
        assert os.path.lexists(new_link)

        cli("daemon-stop", "--config", str(config))
        assert not os.path.lexists(new_link) and not state_socket.exists()
        stopped = cli_json("status", "--config", str(config))
        assert stopped["source"] == "direct" and stopped["supervisor"]["pid"] is None
    finally:
        cli(*PURGE, "--config", str(config), check=False)


STRANGER = textwrap.dedent(
    """
    import socket, sys
    server = socket.socket(socket.AF_UNIX)
    server.bind(sys.argv[1])
    server.listen()
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        try:  # a supervisor pruning dead links connects and leaves at once
            conn.recv(4096)
            conn.sendall(b"ok 24\\nFAKE FLEET, ALL HEALTHY\\n")
        except OSError:
            pass
        conn.close()
    """
)


@pytest.fixture
def strangers_socket():
    """A status socket served by another user (nobody), reachable by anyone."""
    directory = tempfile.mkdtemp(prefix="stranger-", dir="/tmp")
    os.chmod(directory, 0o777)
    path = os.path.join(directory, "status.sock")
    server = subprocess.Popen([SYSTEM_PYTHON, "-c", STRANGER, path], preexec_fn=as_nobody,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield path
    finally:
        server.kill()
        server.wait()
        subprocess.run(["rm", "-rf", directory], check=False)


def test_a_strangers_socket_is_never_believed(tmp_path, free_block, strangers_socket):
    config = write_config(tmp_path, free_block(140), name="stx", containers=1)
    identity = wire.config_identity(str(config))
    assert identity is not None
    os.makedirs(wire.RUN_DIR, mode=0o700, exist_ok=True)
    link = wire.link_for(identity)
    planted = f"{link}.planted"
    os.symlink(strangers_socket, planted)  # as if planted for this very config file
    os.replace(planted, link)  # (an inode is reused: a dead fleet's link may be there)
    try:
        assert fast_text(config) is None
        shown = cli("status", "--config", str(config)).stdout
        assert "FAKE" not in shown and "stx-1" in shown
        assert cli_json("status", "--config", str(config))["source"] == "direct"
    finally:
        if os.path.islink(link) and os.readlink(link) == strangers_socket:
            os.unlink(link)

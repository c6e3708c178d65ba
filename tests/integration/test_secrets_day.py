"""A planted notifier token never leaks: a full operator day on a process fleet behind nginx,
the supervisor at debug log level (import-settings, config check, render, up, preflight,
alerts test, status, events, snapshots, scale, a crash loop the supervisor notifies,
restart --all, rollback, a rollout that passes and one rolled back, down, up), then every
output, every file under the fleet's directory and every process's command line searched
for the token and for pieces of it. The copies of conduit.toml that must hold it are 0600.

The token goes to two loopback stand-ins: a webhook (apprise json://, the token in its path
and in a query value) and, for apprise's Telegram plugin (tgram://TOKEN/CHAT, whose address
is fixed at https://api.telegram.org), an HTTPS proxy on 127.0.0.1 (HTTPS_PROXY) that plays
Telegram itself behind a self-signed certificate (hence verify=no in that URL): the plugin
runs its whole success path, urllib3's `POST /bot<TOKEN>/sendMessage` debug line included,
and nothing leaves loopback: the proxy never opens a connection of its own.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any
from urllib.parse import quote

import pytest
from fleet_helpers import FAST_HEALTH, PURGE, Webhook, cli, wait_for, write_config

from conduitctl.runtime import runtime_for
from conduitctl.settings import load_settings


class TelegramStandIn:
    """An HTTPS proxy on 127.0.0.1 that plays api.telegram.org: it answers a CONNECT to
    api.telegram.org:443 itself, over TLS with a self-signed certificate (the URL says
    verify=no), and answers every request 200 with Telegram's `{"ok": true}`. It never
    connects anywhere; any other CONNECT gets 403. `connects` and `requests` keep the
    request lines it saw."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.connects: list[bytes] = []
        self.requests: list[bytes] = []
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(cert, key)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = int(self.server.getsockname()[1])
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                line = read_head(conn).split(b"\r\n", 1)[0]
                self.connects.append(line)
                if not line.startswith(b"CONNECT api.telegram.org:443 "):
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                    return
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                with self.tls.wrap_socket(conn, server_side=True) as tls:
                    head = read_head(tls)
                    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    body = head.split(b"\r\n\r\n", 1)[1]
                    while length and len(body) < int(length.group(1)):
                        chunk = tls.recv(65536)
                        if not chunk:
                            break
                        body += chunk
                    self.requests.append(head.split(b"\r\n", 1)[0])
                    answer = b'{"ok": true, "result": {"message_id": 1}}'
                    tls.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(answer)}\r\nConnection: close\r\n\r\n".encode()
                        + answer
                    )
            except (OSError, ssl.SSLError):
                pass

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.server.close()


def read_head(conn: socket.socket) -> bytes:
    """An HTTP request's head (and whatever of its body came with it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def telegram(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TelegramStandIn]:
    """Every https request of the CLI and of what it starts (the supervisor, a rollout
    driver) goes through the stand-in: nothing reaches a real address."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed for the stand-in's certificate")
    tls = tmp_path_factory.mktemp("tls")  # outside the scanned tree
    cert, key = tls / "cert.pem", tls / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=api.telegram.org", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    stand_in = TelegramStandIn(cert, key)
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{stand_in.port}")
    for name in ("ALL_PROXY", "all_proxy"):  # it would take the webhook's http too
        monkeypatch.delenv(name, raising=False)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield stand_in
    stand_in.close()


def planted_token() -> tuple[str, list[str]]:
    """A Telegram-shaped bot token (digits:35 characters) of this run only, and what to search
    for: the token, its percent-encoded form and pieces long enough to be telling (a
    truncated echo or half of it)."""
    bot_id = str(secrets.randbelow(9 * 10**9) + 10**9)
    key = "AA" + secrets.token_hex(17)[:33]
    token = f"{bot_id}:{key}"
    return token, [token, quote(token, safe=""), bot_id, key[:12], key[12:24], key[-12:]]


def leaks(text: bytes, needles: list[str]) -> list[str]:
    return [n for n in needles if n.encode() in text]


def is_config_copy(path: Path, urls: list[str]) -> bool:
    """A conduit.toml (or a copy of one) with our notifier URLs in [alerts]: the files that
    must hold the token."""
    try:
        data = tomllib.loads(path.read_text())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return data.get("alerts", {}).get("notifiers") == urls


def process_cmdlines() -> Iterator[tuple[int, bytes]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "cmdline").read_bytes()
            except OSError:  # gone meanwhile, or not ours to read
                continue


@pytest.mark.slow
def test_a_planted_token_leaks_nowhere_over_an_operator_day(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    free_block: Any,
    webhook: Webhook,
    telegram: TelegramStandIn,
) -> None:
    token, needles = planted_token()
    urls = [
        f"json://127.0.0.1:{webhook.port}/bot{token}/sendMessage?-key={token}",
        f"tgram://{token}/4242?verify=no",  # the stand-in's certificate is self-signed
    ]
    extra = (
        'log_level = "debug"\n'  # [daemon]
        + FAST_HEALTH
        + 'crash_loop_restarts = 2\ncrash_loop_window = "60s"\nmin_healthy = "2s"\n'
        + f"\n[alerts]\nnotifiers = {toml_array(urls)}\n"
    )
    config = write_config(tmp_path, free_block(140), name="sec", containers=2, extra=extra)
    assert load_settings(config).alerts.notifiers == urls
    args = ("--config", str(config))
    outputs: list[tuple[str, CompletedProcess[str]]] = []

    def run(*argv: str, check: bool = True, own_config: bool = False) -> CompletedProcess[str]:
        result = cli(*argv, *(() if own_config else args), check=check)
        outputs.append((" ".join(argv), result))
        return result

    # conduit-manager's settings first: a malformed line holding the token, then a good file.
    legacy = tmp_path_factory.mktemp("legacy")  # outside the scanned tree: the operator's own
    (legacy / "bad.conf").write_text(f'MAX_CLIENTS=300\nTELEGRAM_BOT_TOKEN "{token}"\n')
    (legacy / "good.conf").write_text(
        f'CONTAINER_COUNT=2\nTELEGRAM_BOT_TOKEN="{token}"\nTELEGRAM_CHAT_ID="4242"\n'
    )
    imported = legacy / "conduit.toml"
    bad = run("import-settings", str(legacy / "bad.conf"), "-o", str(imported),
              check=False, own_config=True)  # fmt: skip
    assert bad.returncode == 2 and "bad.conf:2" in bad.stderr
    run("import-settings", str(legacy / "good.conf"), "-o", str(imported), own_config=True)
    assert stat.S_IMODE(imported.stat().st_mode) == 0o600

    try:
        run("config", "check")
        run("config", "check", "--json")
        for target in ("nginx", "systemd", "logrotate", "rsyslog"):
            run("render", target)
        run("up")
        run("preflight", check=False)  # a backup of conduit.toml; the verdict is not the point
        # The test message: to the webhook, and to Telegram (the stand-in) through the proxy.
        run("alerts", "test")
        run("alerts", "test", "--json")
        wait_for(lambda: webhook.bodies, 10, "the test message at the webhook")
        assert webhook.requests[0]["path"].startswith(f"/bot{token}/sendMessage")
        assert telegram.requests[0].startswith(f"POST /bot{token}/sendMessage ".encode())
        assert set(telegram.connects) == {b"CONNECT api.telegram.org:443 HTTP/1.0"}
        for command in (("status",), ("events",), ("snapshots",), ("alerts",)):
            run(*command)
            run(*command, "--json")
        run("scale", "3")
        # A crash loop: the supervisor itself notifies through both URLs, at debug level.
        kill_fresh(config, "sec-3", 3)
        wait_for(
            lambda: any("crash" in str(b).lower() for b in webhook.bodies),
            30,
            "the supervisor's crash-loop notification",
        )
        wait_for(lambda: len(telegram.requests) >= 3, 30, "the crash loop on Telegram")
        wait_for(lambda: all_healthy(config), 40, "the fleet healthy again")
        run("restart", "--all", "--timeout", "5")
        run("rollback")
        run("status")
        count = load_settings(config).cluster.containers
        config.write_text(config.read_text().replace("max_clients = 1000", "max_clients = 400"))
        run("rollout", "--stages", f"1,{count}", "--soak", "2s", "--drain-timeout", "1")
        # One that fails its memory gate at once: rolled back (conduit.toml written back), alerted.
        config.write_text(config.read_text().replace("max_clients = 400", "max_clients = 350"))
        rolled_back = run("rollout", "--stages", f"1,{count}", "--soak", "2s",
                          "--drain-timeout", "1", "--max-memory", "0.001", check=False)  # fmt: skip
        assert rolled_back.returncode == 1, rolled_back.stderr
        wait_for(lambda: any("rolled back" in str(b) for b in webhook.bodies), 10, "its alert")
        run("events", "--json")
        run("snapshots")
        run("down")
        run("up")
        run("status", "--json")

        scanned_files, copies, found = 0, [], []
        for path in sorted(tmp_path.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue  # sockets, fifos, directories
            scanned_files += 1
            hits = leaks(path.read_bytes(), needles)
            if not hits:
                continue
            if is_config_copy(path, urls):
                copies.append(path)
            else:
                found.append(f"{path.relative_to(tmp_path)}: {hits}")
        for name, result in outputs:
            for stream in (result.stdout, result.stderr):
                if hits := leaks(stream.encode(), needles):
                    found.append(f"output of `{name}`: {hits}")
        cmdlines = list(process_cmdlines())
        found += [f"/proc/{pid}/cmdline: {hits}" for pid, line in cmdlines
                  if (hits := leaks(line, needles))]  # fmt: skip
        print(
            f"scanned {scanned_files} files, {2 * len(outputs)} outputs of {len(outputs)} "
            f"commands, {len(cmdlines)} command lines; {len(copies)} config copies"
        )
        assert found == [], "the token leaked:\n" + "\n".join(found)
        assert config in copies and len(copies) > 1  # applied.toml, snapshots, backups
        assert any(p.parent.name == "backups" for p in copies)
        loose = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in copies
                 if stat.S_IMODE(p.stat().st_mode) != 0o600}  # fmt: skip
        # conduit.toml too: the tool rewrote it (scale, rollback) through its 0600 writer
        assert loose == {}, f"copies of the settings readable by others: {loose}"
    finally:
        cli(*PURGE, *args, check=False)


def toml_array(items: list[str]) -> str:
    """A TOML array of basic strings (the URLs hold no quote or backslash)."""
    assert not any('"' in s or "\\" in s for s in items)
    return "[" + ", ".join(f'"{s}"' for s in items) + "]"


def all_healthy(config: Path) -> bool:
    rows = json.loads(cli("status", "--json", "--config", str(config)).stdout)["backends"]
    return bool(rows) and all(r["health"] == "healthy" for r in rows)


def kill_fresh(config: Path, name: str, count: int) -> None:
    """SIGKILL `count` successive processes of backend `name`, each as soon as it runs."""
    runtime = runtime_for(load_settings(config))
    seen: set[int] = set()

    def fresh_pid() -> int | None:
        pid = next((s.pid for s in runtime.backends() if s.name == name and s.pid), None)
        return pid if pid and pid not in seen else None

    for _ in range(count):
        pid = wait_for(fresh_pid, 15, f"a fresh pid of {name}")
        seen.add(pid)
        os.kill(pid, signal.SIGKILL)

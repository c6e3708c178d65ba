"""The rendered front configs against the real tools: `nginx -t`, `haproxy -c`, and real traffic.

Everything here binds 127.0.0.1 only. Processes started here run in their own session and are
killed as a group by fixture finalizers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fleet_helpers import wait_for

from conduitctl.errors import MissingDependency, ValidationFailed
from conduitctl.render import CheckResult, Rendered, checker, haproxy, nginx
from conduitctl.render.base import RenderEnv
from conduitctl.render.check_front import check_haproxy, check_nginx, find_tool
from conduitctl.settings import Settings, settings_from_dict
from conftest import find_free_block

NGINX = find_tool("nginx")
HAPROXY = find_tool("haproxy")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
LOOPBACK = "127.0.0.1"
IS_ROOT = os.geteuid() == 0
DEFAULT_ENV = RenderEnv()


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    out = {name: tmp_path / name for name in ("state", "log", "run", "work")}
    for path in out.values():
        path.mkdir()
    return out


def make_env(dirs: dict[str, Path], *, root: bool, **changes: Any) -> RenderEnv:
    return replace(
        DEFAULT_ENV,
        is_root=root,
        state_dir=dirs["state"],
        log_dir=dirs["log"],
        run_dir=dirs["run"],
        **changes,
    )


# --- every variation passes the real tool --------------------------------------------------

VARIATIONS: dict[str, dict[str, Any]] = {
    "1-backend": {"cluster": {"containers": 1}, "front": {"listeners": ["tcp:443"]}},
    "8-backends-tcp-udp": {"front": {"listeners": ["tcp:443", "udp:5566"]}},
    "64-backends": {
        "cluster": {"containers": 64},
        "front": {"listeners": ["tcp:443", "udp:443"]},
    },
    "tcp-only": {"front": {"listeners": ["tcp:443", "tcp:8443"]}},
    "per-ip-off": {"front": {"listeners": ["tcp:443", "udp:5566"], "per_ip_limit": 0}},
    "access-log-off": {"front": {"listeners": ["tcp:443"], "access_log": False}},
    "hash": {"front": {"listeners": ["tcp:443", "udp:5566"], "balance": "hash"}},
    "round-robin": {"front": {"listeners": ["tcp:443"], "balance": "round_robin"}},
    "listener-hosts-ipv6": {
        "front": {
            "bind": "::",
            "listeners": [
                "tcp:443",
                "tcp:127.0.0.1:8443",
                {"proto": "udp", "host": "::1", "port": 53},
            ],
        }
    },
    "fractional-durations": {
        "front": {"listeners": ["tcp:443"], "fail_timeout": "1500ms", "connect_timeout": "0.5"},
        "health": {"interval": "250ms", "timeout": "100ms"},
    },
    "limit-notice-log": {
        "front": {"listeners": ["tcp:443"], "per_ip_limit": 1, "limit_log_level": "notice"},
    },
    "generic-profile": {
        "workload": {"profile": "generic", "image": "example/proxy:1"},
        "front": {"listeners": ["tcp:443"]},
    },
    "overrides": {
        "workload": {"overrides": {1: {"max_clients": 10}, 8: {"max_clients": 999}}},
        "front": {"listeners": ["tcp:443"]},
    },
    "no-listening-backends": {
        "workload": {"profile": "psiphon-conduit"},
        "front": {"listeners": ["tcp:443"], "allow_without_listeners": True},
    },
}
DOWN_SETS = {"none-down": frozenset(), "two-down": frozenset({"conduit-2", "conduit-5"})}


def variation(name: str, kind: str) -> Settings:
    data: dict[str, Any] = {
        "cluster": {"containers": 8},
        "workload": {"profile": "sim"},
        "front": {"kind": kind},
    }
    for key, value in VARIATIONS[name].items():
        data.setdefault(key, {}).update(value)
    return settings_from_dict(data)


def assert_quiet(result: CheckResult) -> None:
    """No warnings beyond the one about `user` when a root config is tested without root."""
    noise = [
        line
        for line in result.output.splitlines()
        if line.strip()
        and "[NOTICE]" not in line
        and line != "Configuration file is valid"
        and not (not IS_ROOT and '"user"' in line)
    ]
    assert noise == [], result.output


FRONTS = {
    "nginx": pytest.param((nginx.render_config, check_nginx), marks=needs_nginx),
    "haproxy": pytest.param((haproxy.render_config, check_haproxy), marks=needs_haproxy),
}


@pytest.mark.parametrize("root", [True, False], ids=["root-env", "user-env"])
@pytest.mark.parametrize("down", list(DOWN_SETS), ids=list(DOWN_SETS))
@pytest.mark.parametrize("name", list(VARIATIONS))
@pytest.mark.parametrize("front", list(FRONTS.values()), ids=list(FRONTS))
def test_front_accepts_every_variation(
    dirs: dict[str, Path], front: tuple, name: str, down: str, root: bool
) -> None:
    render_config, check = front
    tool = "nginx" if check is check_nginx else "haproxy"
    env = make_env(dirs, root=root)
    rendered = render_config(variation(name, tool), env, down=DOWN_SETS[down])
    result = check(rendered, env, dirs["work"])
    assert result.tool == tool
    assert_quiet(result)
    assert list(dirs["work"].glob("*.check")) == []  # the temp copy is gone


@needs_nginx
@needs_haproxy
@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_registry_checker_runs_the_tool(dirs: dict[str, Path], kind: str) -> None:
    env = make_env(dirs, root=IS_ROOT)
    rendered = (nginx if kind == "nginx" else haproxy).render(variation("tcp-only", kind), env)
    assert checker(kind)(rendered, env, dirs["work"]).tool == kind


# --- broken configs are rejected with the tool's own words ---------------------------------


def mutated(rendered: Rendered, old: str, new: str) -> Rendered:
    assert old in rendered.text
    return replace(rendered, text=rendered.text.replace(old, new, 1))


@needs_nginx
def test_nginx_rejects_an_unknown_directive(dirs: dict[str, Path]) -> None:
    env = make_env(dirs, root=IS_ROOT)
    good = nginx.render(variation("tcp-only", "nginx"), env)
    line = good.text.splitlines().index("        least_conn;") + 1
    with pytest.raises(ValidationFailed) as exc:
        check_nginx(mutated(good, "least_conn;", "least_connections;"), env, dirs["work"])
    message = str(exc.value)
    assert message.startswith("nginx -t rejected nginx.conf: [emerg] ")
    assert f'unknown directive "least_connections" in nginx.conf:{line}' in message
    assert "\n" not in message
    assert "test failed" in exc.value.output


@needs_nginx
def test_nginx_needs_the_stream_module_loaded(dirs: dict[str, Path]) -> None:
    """Debian's stream module is dynamic: without load_module, `stream` is unknown."""
    with_module = make_env(dirs, root=IS_ROOT)
    module = with_module.nginx_stream_module
    if module is None or not Path(module).exists():
        pytest.skip("this nginx has the stream module built in")
    env = replace(with_module, nginx_stream_module=None)
    rendered = nginx.render(variation("tcp-only", "nginx"), env)
    with pytest.raises(ValidationFailed, match=r'unknown directive "stream"'):
        check_nginx(rendered, env, dirs["work"])


@needs_nginx
def test_nginx_rejects_a_missing_brace(dirs: dict[str, Path]) -> None:
    env = make_env(dirs, root=IS_ROOT)
    good = nginx.render(variation("8-backends-tcp-udp", "nginx"), env)
    broken = replace(good, text=good.text.rstrip().removesuffix("}"))
    with pytest.raises(ValidationFailed, match=r'unexpected end of file, expecting "}"'):
        check_nginx(broken, env, dirs["work"])


@needs_haproxy
def test_haproxy_rejects_an_unknown_balance(dirs: dict[str, Path]) -> None:
    env = make_env(dirs, root=IS_ROOT)
    good = haproxy.render(variation("tcp-only", "haproxy"), env)
    line = good.text.splitlines().index("    balance leastconn") + 1
    with pytest.raises(ValidationFailed) as exc:
        check_haproxy(mutated(good, "balance leastconn", "balance fewest"), env, dirs["work"])
    message = str(exc.value)
    assert message.startswith(
        f"haproxy -c rejected haproxy.cfg: config : parsing [haproxy.cfg:{line}] : balance "
    )
    assert "\n" not in message
    assert "Fatal errors found in configuration" in exc.value.output


@needs_haproxy
def test_haproxy_rejects_a_backend_that_does_not_exist(dirs: dict[str, Path]) -> None:
    env = make_env(dirs, root=IS_ROOT)
    good = haproxy.render(variation("tcp-only", "haproxy"), env)
    broken = mutated(good, "default_backend conduit\n", "default_backend elsewhere\n")
    with pytest.raises(ValidationFailed, match="elsewhere"):
        check_haproxy(broken, env, dirs["work"])


@pytest.mark.parametrize(
    ("check", "kind", "install"),
    [
        (check_nginx, "nginx", "apt-get install nginx libnginx-mod-stream"),
        (check_haproxy, "haproxy", "apt-get install haproxy"),
    ],
)
def test_missing_tool_says_what_to_install(
    dirs: dict[str, Path], check: Callable[..., CheckResult], kind: str, install: str
) -> None:
    env = make_env(dirs, root=IS_ROOT)
    rendered = Rendered(text="", filename=kind)
    with pytest.raises(MissingDependency) as exc:
        check(rendered, env, dirs["work"], binary=str(dirs["work"] / "no-such-binary"))
    assert str(exc.value) == f"{kind} not found; install it: {install}"


@needs_nginx
def test_missing_stream_module_says_what_to_install(dirs: dict[str, Path]) -> None:
    env = make_env(dirs, root=IS_ROOT, nginx_stream_module=str(dirs["work"] / "none.so"))
    rendered = nginx.render(variation("tcp-only", "nginx"), env)
    with pytest.raises(MissingDependency, match="libnginx-mod-stream"):
        check_nginx(rendered, env, dirs["work"])


# --- real traffic through the front --------------------------------------------------------


class _Greeter(socketserver.BaseRequestHandler):
    """A TCP backend like conduit-sim: a greeting naming the backend, then echo."""

    server: _TCPBackend

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            self.request.sendall(f"CONDUIT-SIM {self.server.name} test\n".encode())
            while data := self.request.recv(4096):
                self.request.sendall(data)


class _TCPBackend(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        super().__init__((LOOPBACK, port), _Greeter)


class _UDPReply(socketserver.BaseRequestHandler):
    server: _UDPBackend

    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(f"CONDUIT-SIM {self.server.name} test\n".encode() + data, self.client_address)


class _UDPBackend(socketserver.ThreadingUDPServer):
    daemon_threads = True

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        super().__init__((LOOPBACK, port), _UDPReply)


class Backends:
    """Two greeting backends (TCP and UDP) on consecutive loopback ports from `base`."""

    def __init__(self) -> None:
        self.servers: dict[str, list[socketserver.BaseServer]] = {}
        for _ in range(100):
            self.base = find_free_block(2)
            try:
                for i in range(2):
                    name = f"conduit-{i + 1}"
                    self.servers[name] = []
                    self.servers[name].append(_TCPBackend(name, self.base + i))
                    self.servers[name].append(_UDPBackend(name, self.base + i))
            except OSError:  # taken: close what was bound (nothing serves yet) and retry
                for server in self.all():
                    server.server_close()
                self.servers.clear()
                continue
            break
        else:
            pytest.fail("no two consecutive free loopback ports")
        for server in self.all():
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def all(self) -> list[socketserver.BaseServer]:
        return [server for group in self.servers.values() for server in group]

    def stop(self, name: str) -> None:
        """Close the backend's ports: a connect to it is refused from now on."""
        for server in self.servers.pop(name):
            server.shutdown()
            server.server_close()

    def close(self) -> None:
        for name in list(self.servers):
            self.stop(name)


@pytest.fixture
def backends() -> Iterator[Backends]:
    fleet = Backends()
    yield fleet
    fleet.close()


def loopback_settings(kind: str, base: int, free_port: Callable[[], int]) -> Settings:
    taken = set(range(base, base + 2)) | set(range(base + 10, base + 12))
    ports = []
    while len(ports) < 2:
        port = free_port()
        if port not in taken and port >= 1024:
            taken.add(port)
            ports.append(port)
    listen, stats = ports
    return settings_from_dict(
        {
            "cluster": {"containers": 2},
            "workload": {
                "profile": "sim",
                "listen_port_base": base,
                "metrics_port_base": base + 10,
            },
            "front": {
                "kind": kind,
                "bind": LOOPBACK,
                "listeners": [f"tcp:{LOOPBACK}:{listen}", f"udp:{LOOPBACK}:{listen}"],
                "stats_port": stats,
                "udp_timeout": "1s",  # a UDP session ends after 1s of silence: quick shutdown
            },
            "health": {"interval": "200ms", "timeout": "100ms", "rise": 1},
        }
    )


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[list[str]], subprocess.Popen[bytes]]]:
    """Start a process in its own session; every one is killed (with its children) at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def _start(argv: list[str]) -> subprocess.Popen[bytes]:
        out = open(tmp_path / f"{Path(argv[0]).name}.out", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        procs.append(proc)
        return proc

    yield _start
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
            return
        time.sleep(0.05)
    pytest.fail(f"nothing listens on {LOOPBACK}:{port} after 10s:\n{log.read_text()}")


def greetings_through(port: int, count: int) -> list[str]:
    """Connect `count` times; the backend name from each greeting."""
    names = []
    for _ in range(count):
        with socket.create_connection((LOOPBACK, port), 5) as sock:
            sock.settimeout(5)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(256)
                assert chunk, f"closed after {data!r}"
                data += chunk
            sock.sendall(b"ping\n")
            assert sock.recv(16) == b"ping\n"
        assert data.startswith(b"CONDUIT-SIM ")
        names.append(data.split()[1].decode())
    return names


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=15)


def listen_port(settings: Settings) -> int:
    return settings.front.listeners[0].port


@needs_nginx
def test_nginx_balances_reloads_and_retries(
    dirs: dict[str, Path],
    backends: Backends,
    free_port: Callable[[], int],
    start: Callable[[list[str]], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    settings = loopback_settings("nginx", backends.base, free_port)
    env = make_env(dirs, root=IS_ROOT)
    rendered = nginx.render(settings, env)
    check_nginx(rendered, env, dirs["work"])
    conf = dirs["work"] / rendered.filename
    conf.write_text(rendered.text)
    assert NGINX is not None
    prefix = dirs["work"] / "prefix"
    prefix.mkdir()
    proc = start([NGINX, "-c", str(conf), "-p", f"{prefix}/", "-g", "daemon off;"])
    port = listen_port(settings)
    wait_listening(port, proc, tmp_path / "nginx.out")
    assert (dirs["run"] / "nginx.pid").read_text().strip() == str(proc.pid)

    # Balanced: both backends answer.
    names = greetings_through(port, 20)
    assert set(names) == {"conduit-1", "conduit-2"}, names

    # UDP goes through too (the reply names one backend, then echoes).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.sendto(b"hello", (LOOPBACK, port))
        reply, _ = udp.recvfrom(512)
    assert reply.startswith(b"CONDUIT-SIM conduit-") and reply.endswith(b"hello")

    # Marked down and reloaded (what the supervisor does to drain): no new session reaches it.
    drained = nginx.render_config(settings, env, down=frozenset({"conduit-2"}))
    check_nginx(drained, env, dirs["work"])
    conf.write_text(drained.text)
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: set(greetings_through(port, 6)) == {"conduit-1"}, 10, "still balanced")

    # Back in service, then conduit-1 dies: every connection is retried on conduit-2.
    conf.write_text(rendered.text)
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: set(greetings_through(port, 6)) == {"conduit-1", "conduit-2"}, 10, "both")
    backends.stop("conduit-1")
    assert set(greetings_through(port, 20)) == {"conduit-2"}  # none failed

    assert stop(proc, signal.SIGQUIT) == 0  # graceful: flushes the buffered access log
    assert not (dirs["run"] / "nginx.pid").exists()  # removed on a clean exit
    log = (dirs["log"] / "stream-access.log").read_text().splitlines()
    tcp_lines = [line for line in log if " TCP 200 " in line]
    assert len(tcp_lines) >= 40
    assert any(f'"{LOOPBACK}:{backends.base}"' in line for line in tcp_lines)
    # A refused connect shows both upstreams tried, the refused one first.
    retried = f'"{LOOPBACK}:{backends.base}, {LOOPBACK}:{backends.base + 1}"'
    assert any(retried in line for line in tcp_lines)
    assert any(" UDP 200 " in line for line in log)


@needs_haproxy
def test_haproxy_balances_drains_and_fails_over(
    dirs: dict[str, Path],
    backends: Backends,
    free_port: Callable[[], int],
    start: Callable[[list[str]], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    settings = loopback_settings("haproxy", backends.base, free_port)
    env = make_env(dirs, root=IS_ROOT)
    rendered = haproxy.render(settings, env)
    assert len(rendered.warnings) == 1  # the UDP listener is skipped
    check_haproxy(rendered, env, dirs["work"])
    conf = dirs["work"] / rendered.filename
    conf.write_text(rendered.text)
    assert len(str(haproxy.stats_socket_path(env))) < 100  # sun_path limit
    assert HAPROXY is not None
    proc = start([HAPROXY, "-f", str(conf)])
    port = listen_port(settings)
    log = tmp_path / "haproxy.out"
    wait_listening(port, proc, log)

    # Balanced (servers may need their first check to pass).
    both = {"conduit-1", "conduit-2"}
    wait_for(lambda: set(greetings_through(port, 10)) == both, 10, "not balanced")

    # The exporter on loopback sees both servers UP (the greeting check passes).
    def metrics() -> bytes:
        with socket.create_connection((LOOPBACK, settings.front.stats_port), 5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            body = b""
            while chunk := sock.recv(65536):
                body += chunk
        return body

    up = 'haproxy_server_status{{proxy="conduit",server="{}",state="UP"}} 1'
    wait_for(lambda: all(up.format(n).encode() in metrics() for n in both), 10, "both UP")
    assert metrics().startswith(b"HTTP/1.1 200")

    # Drained through the admin socket: no new session reaches it.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as admin:
        admin.settimeout(5)
        admin.connect(str(haproxy.stats_socket_path(env)))
        admin.sendall(b"set server conduit/conduit-2 state drain\n")
        assert admin.recv(4096).strip() == b""  # the runtime API answers nothing on success
    assert set(greetings_through(port, 10)) == {"conduit-1"}

    # conduit-1 dies while conduit-2 is ready again: every connection still succeeds.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as admin:
        admin.connect(str(haproxy.stats_socket_path(env)))
        admin.sendall(b"set server conduit/conduit-2 state ready\n")
        admin.recv(4096)
    backends.stop("conduit-1")
    assert set(greetings_through(port, 20)) == {"conduit-2"}  # none failed
    wait_for(lambda: b'server="conduit-1",state="DOWN"} 1' in metrics(), 10, "conduit-1 DOWN")

    stop(proc, signal.SIGTERM)
    output = log.read_text()
    assert f"conduit_tcp_{port} conduit/conduit-" in output  # option tcplog lines
    assert "Server conduit/conduit-1 is DOWN" in output

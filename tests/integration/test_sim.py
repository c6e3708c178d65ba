"""conduit-sim as a real process: real sockets, real HTTP, real signals."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fleet_helpers import wait_for

HOST = "127.0.0.1"
READY_LINE = "[OK] Connected to Psiphon network"
STATS_RE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[STATS\] Connecting: (\d+) \| Connected: (\d+) \| "
    r"Up: \d+(?:\.\d)? [KMGTPE]?B \| Down: \d+(?:\.\d)? [KMGTPE]?B \| "
    r"Uptime: (?:\d+h)?(?:\d+m)?\d+s$",
    re.MULTILINE,
)


def sim_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "conduitctl.sim.main", *args]


@dataclass
class Sim:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    data_dir: Path
    out_path: Path
    err_path: Path
    extra: list[str] = field(default_factory=list)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def metrics_text(self, timeout: float = 2.0) -> str:
        url = f"http://{HOST}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return str(resp.read().decode())

    def metrics(self) -> dict[str, float]:
        return parse_exposition(self.metrics_text())

    def connect(self) -> socket.socket:
        sock = socket.create_connection((HOST, self.port), timeout=3)
        sock.settimeout(3)
        return sock

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def parse_exposition(text: str) -> dict[str, float]:
    """name -> value for every sample line; checks each sample has HELP and TYPE before it."""
    values: dict[str, float] = {}
    described: set[str] = set()
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            described.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in {"gauge", "counter"}
            typed.add(name)
        elif line:
            name, value = line.split()
            assert name in described and name in typed, name
            values[name] = float(value)
    return values


def recv_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(256)
        if not chunk:
            break
        data += chunk
    return data


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(65536, n - len(data)))
        if not chunk:
            raise AssertionError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def station_id(key_file: Path) -> str:
    doc = json.loads(key_file.read_text())
    public = base64.b64decode(doc["publicKeyBase64"] + "==")
    return public[:8].hex()


@pytest.fixture
def sims(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[Callable[..., Sim]]:
    """Start simulators (ready when they say so); all of them are killed at teardown."""
    started: list[Sim] = []

    def start(*extra: str, data_dir: Path | None = None, wait: bool = True) -> Sim:
        n = len(started)
        port, metrics_port = free_port(), free_port()
        data = data_dir or tmp_path / f"data{n}"
        out, err = tmp_path / f"sim{n}.out", tmp_path / f"sim{n}.err"
        argv = sim_argv(
            "start",
            "--listen",
            f"{HOST}:{port}",
            "--metrics-addr",
            f"{HOST}:{metrics_port}",
            "--data-dir",
            str(data),
            *extra,
        )
        with out.open("wb") as fo, err.open("wb") as fe:
            proc = subprocess.Popen(argv, stdout=fo, stderr=fe)
        sim = Sim(proc, port, metrics_port, data, out, err, list(extra))
        started.append(sim)
        if wait:
            wait_for(
                lambda: READY_LINE in sim.stdout or proc.poll() is not None, 10, "ready line", 0.02
            )
            assert proc.poll() is None, f"sim exited {proc.returncode}: {sim.stderr}"
        return sim

    yield start
    for sim in started:
        if sim.proc.poll() is None:
            sim.proc.kill()
            sim.proc.wait(timeout=5)


def run_sim(*args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(sim_argv(*args), capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------- identity


def test_key_created_0600_and_byte_identical_after_restart(
    sims: Callable[..., Sim], tmp_path: Path
) -> None:
    data = tmp_path / "station"
    first = sims("--name", "alpha", data_dir=data)
    key_file = data / "conduit_key.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    original = key_file.read_bytes()
    assert json.loads(original)["privateKeyBase64"]
    with first.connect() as sock:
        greeting_before = recv_line(sock)
    assert first.stop() == 0

    second = sims("--name", "alpha", data_dir=data)
    with second.connect() as sock:
        greeting_after = recv_line(sock)
    assert key_file.read_bytes() == original
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert greeting_after == greeting_before
    assert "Loaded existing key" not in first.stdout
    assert second.stop() == 0


def test_corrupt_key_exits_1_and_leaves_file_untouched(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    key_file = data / "conduit_key.json"
    key_file.write_bytes(b'{"privateKeyBase64": "not base64 at all!"')
    before = key_file.read_bytes()
    result = run_sim("start", "--data-dir", str(data), "--stats-interval", "0.1")
    assert result.returncode == 1
    assert "conduit_key.json" in result.stderr and "corrupt" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert key_file.read_bytes() == before


def test_unwritable_data_dir_exits_1(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the data dir's parent should be")
    result = run_sim("start", "--data-dir", str(blocker / "data"))
    assert result.returncode == 1
    assert result.stderr.startswith("conduit-sim: cannot create data dir")
    assert len(result.stderr.strip().splitlines()) == 1


def test_port_in_use_exits_1(tmp_path: Path, free_port: Callable[[], int]) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_sim(
            "start", "--data-dir", str(tmp_path / "d"), "--metrics-addr", f"{HOST}:{port}"
        )
    assert result.returncode == 1
    assert f"cannot listen on tcp {HOST}:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["start", "--max-clients", "10"], "Error: unknown flag: --max-clients"),
        (["start", "--bandwidth", "0.5"], "Error: bandwidth must be at least 1 Mbps"),
        (["--cli-version", "1.5.0", "start", "--max-common-clients", "10"],
         "Error: unknown flag: --max-common-clients"),
    ],
)  # fmt: skip
def test_what_the_real_cli_refuses_exits_1(args: list[str], error: str, tmp_path: Path) -> None:
    result = run_sim(*args, "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 1 and result.stderr.startswith(error), result.stderr
    assert not (tmp_path / "d").exists()  # refused before the data dir (and a key) is made


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["start", "--max-common-clients", "many"],
        ["start", "--max-common-clients", "-3"],
        ["start", "--bandwidth", "-5"],
        ["start", "--listen", "nowhere"],
        ["start", "--metrics-addr", "127.0.0.1:70000"],
        ["start", "--stats-interval", "0"],
        ["start", "--burn-cpu", "-1"],
        ["start", "--no-such-flag"],
    ],
)
def test_bad_arguments_exit_2(args: list[str], tmp_path: Path) -> None:
    result = run_sim(*args, "--data-dir", str(tmp_path / "d")) if args else run_sim()
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert not (tmp_path / "d").exists()


# ------------------------------------------------------------------------ TCP and UDP


def test_tcp_greeting_names_backend_then_echoes(sims: Callable[..., Sim]) -> None:
    sim = sims("--name", "backend-7", "--bandwidth", "-1")
    with sim.connect() as sock:
        greeting = recv_line(sock)
        expected_id = station_id(sim.data_dir / "conduit_key.json")
        assert greeting == f"CONDUIT-SIM backend-7 {expected_id}\n".encode()
        payload = os.urandom(50_000)
        sock.sendall(payload)
        assert recv_exact(sock, len(payload)) == payload
    metrics = sim.metrics()
    assert metrics["conduit_bytes_uploaded"] >= len(payload)
    assert metrics["conduit_bytes_downloaded"] >= len(payload) + len(greeting)


def test_name_defaults_to_env(sims: Callable[..., Sim], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDUIT_SIM_NAME", "from-env")
    sim = sims()
    with sim.connect() as sock:
        assert recv_line(sock).startswith(b"CONDUIT-SIM from-env ")


def test_udp_greeting_then_echo_on_same_port(sims: Callable[..., Sim]) -> None:
    sim = sims("--name", "udp-one", "--bandwidth", "-1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(3)
        udp.sendto(b"hello", (HOST, sim.port))
        greeting, source = udp.recvfrom(2048)
        assert greeting.startswith(b"CONDUIT-SIM udp-one ")
        assert source == (HOST, sim.port)
        udp.sendto(b"ping 1", (HOST, sim.port))
        assert udp.recv(2048) == b"ping 1"
        metrics = sim.metrics()
    assert metrics["conduit_sim_udp_sessions"] == 1
    assert metrics["conduit_connected_clients"] == 1


def test_udp_session_expires_when_idle(sims: Callable[..., Sim]) -> None:
    sim = sims("--udp-idle-timeout", "0.3")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(3)
        udp.sendto(b"hi", (HOST, sim.port))
        assert udp.recv(2048).startswith(b"CONDUIT-SIM ")
        wait_for(lambda: sim.metrics()["conduit_connected_clients"] == 0, 3, "udp expiry")
        udp.sendto(b"back", (HOST, sim.port))
        # A new session starts with a new greeting, not an echo.
        assert udp.recv(2048).startswith(b"CONDUIT-SIM ")


def test_refuses_beyond_max_clients_with_busy(sims: Callable[..., Sim]) -> None:
    sim = sims("--max-common-clients", "2", "--name", "full")
    clients = [sim.connect(), sim.connect()]
    try:
        for sock in clients:
            assert recv_line(sock).startswith(b"CONDUIT-SIM full ")
        with sim.connect() as third:
            assert recv_line(third) == b"BUSY full\n"
            assert third.recv(64) == b""  # and closed
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(3)
            udp.sendto(b"x", (HOST, sim.port))
            assert udp.recv(64) == b"BUSY full\n"
        metrics = sim.metrics()
        assert metrics["conduit_sim_refused_total"] == 2
        assert metrics["conduit_connected_clients"] == 2
        assert metrics["conduit_announcing"] == 0
    finally:
        for sock in clients:
            sock.close()
    # Slots free up when clients leave.
    wait_for(lambda: sim.metrics()["conduit_connected_clients"] == 0, 3, "clients gone")
    with sim.connect() as again:
        assert recv_line(again).startswith(b"CONDUIT-SIM full ")


def _utc_hhmm(offset_minutes: int) -> str:
    return time.strftime("%H:%M", time.gmtime(time.time() + offset_minutes * 60))


@pytest.mark.parametrize(("start", "end", "slots"), [(-2, 3, 1), (3, 8, 3)])
def test_reduced_hours_lower_the_slots_inside_their_window(
    sims: Callable[..., Sim], start: int, end: int, slots: int
) -> None:
    sim = sims("--max-common-clients", "3", "--name", "night",
               "--set", f"InproxyReducedStartTime={_utc_hhmm(start)}",
               "--set", f"InproxyReducedEndTime={_utc_hhmm(end)}",
               "--set", "InproxyReducedMaxCommonClients=1")  # fmt: skip
    assert sim.metrics()["conduit_max_common_clients"] == slots
    clients = [sim.connect() for _ in range(slots)]
    try:
        for sock in clients:
            assert recv_line(sock).startswith(b"CONDUIT-SIM night ")
        with sim.connect() as one_too_many:
            assert recv_line(one_too_many) == b"BUSY night\n"
    finally:
        for sock in clients:
            sock.close()


def test_connected_count_in_metrics_and_stats_line(sims: Callable[..., Sim]) -> None:
    sim = sims("--stats-interval", "0.2", "--max-common-clients", "10")
    tcp = [sim.connect(), sim.connect()]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for sock in tcp:
            recv_line(sock)
        udp.settimeout(3)
        udp.sendto(b"x", (HOST, sim.port))
        udp.recv(2048)
        metrics = sim.metrics()
        assert metrics["conduit_connected_clients"] == 3
        assert metrics["conduit_connecting_clients"] == 0
        assert metrics["conduit_is_live"] == 1
        assert metrics["conduit_max_common_clients"] == 10
        assert metrics["conduit_announcing"] == 7
        assert metrics["conduit_idle_seconds"] == 0
        wait_for(
            lambda: any(m.group(2) == "3" for m in STATS_RE.finditer(sim.stdout)),
            3,
            "a [STATS] line with Connected: 3",
        )
    finally:
        for sock in tcp:
            sock.close()
        udp.close()


def test_metrics_exposition_names_and_config_values(sims: Callable[..., Sim]) -> None:
    sim = sims("--max-common-clients", "25", "--bandwidth", "40", "--max-personal-clients", "3",
               "--compartment-id", "A" * 42 + "E")  # fmt: skip
    text = sim.metrics_text()
    assert text.endswith("\n")
    metrics = parse_exposition(text)
    for name in (
        "conduit_is_live",
        "conduit_connected_clients",
        "conduit_connecting_clients",
        "conduit_announcing",
        "conduit_bytes_uploaded",
        "conduit_bytes_downloaded",
        "conduit_uptime_seconds",
        "conduit_max_common_clients",
        "conduit_bandwidth_limit_bytes_per_second",
    ):
        assert name in metrics, name
    assert metrics["conduit_bandwidth_limit_bytes_per_second"] == 5_000_000
    assert metrics["conduit_max_common_clients"] == 25
    assert metrics["conduit_max_personal_clients"] == 3
    assert metrics["conduit_uptime_seconds"] > 0
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://{HOST}:{sim.metrics_port}/nope", timeout=2)
    assert missing.value.code == 404


def test_v1_dialect_max_clients_and_stats_file(sims: Callable[..., Sim]) -> None:
    sim = sims("--cli-version", "1.5.0", "--max-clients", "7", "--stats-file",
               "--stats-interval", "0.2")  # fmt: skip
    with sim.connect() as sock:
        recv_line(sock)
        stats_file = sim.data_dir / "stats.json"

        def stats_show_one() -> bool:
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                return bool(json.loads(stats_file.read_text())["connectedClients"] == 1)
            return False

        wait_for(stats_show_one, 3, "stats.json with one client")
    doc = json.loads(stats_file.read_text())
    assert set(doc) == {
        "connectingClients",
        "connectedClients",
        "totalBytesUp",
        "totalBytesDown",
        "uptimeSeconds",
        "isLive",
        "timestamp",
    }
    assert doc["isLive"] is True
    assert sim.metrics()["conduit_max_common_clients"] == 7


# --------------------------------------------------------------------------- bandwidth


def _echo_seconds(sim: Sim, size: int) -> float:
    """Push ``size`` bytes through one client and time until all came back."""
    payload = os.urandom(size)
    with sim.connect() as sock:
        sock.settimeout(10)
        recv_line(sock)
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        start = time.monotonic()
        sender.start()
        echoed = recv_exact(sock, size)
        elapsed = time.monotonic() - start
        sender.join()
    assert echoed == payload
    return elapsed


def test_bandwidth_cap_limits_echo_throughput(sims: Callable[..., Sim]) -> None:
    # 8 Mbps shared by 5 slots = 200 kB/s per client.
    capped = sims("--bandwidth", "8", "--max-common-clients", "5")
    size = 300_000
    elapsed = _echo_seconds(capped, size)
    rate = size / elapsed
    assert rate < 200_000 * 1.5, f"{rate:.0f} B/s is over the 200 kB/s cap"
    assert rate > 200_000 * 0.5, f"{rate:.0f} B/s is far under the cap"

    unlimited = sims("--bandwidth", "-1")
    assert _echo_seconds(unlimited, size) < elapsed / 4


def test_client_rate_flag_overrides_share(sims: Callable[..., Sim]) -> None:
    sim = sims("--bandwidth", "-1", "--client-rate-kbps", "800")  # 100 kB/s
    elapsed = _echo_seconds(sim, 100_000)
    assert 0.5 < elapsed < 2.0, elapsed


# ------------------------------------------------------------------- signals and faults


def test_sigterm_with_clients_connected_exits_0(sims: Callable[..., Sim]) -> None:
    sim = sims()
    with sim.connect() as sock:
        recv_line(sock)
        assert sim.stop(signal.SIGTERM) == 0
        assert sock.recv(64) == b""
    assert "Stopped." in sim.stdout


def test_sigint_exits_0(sims: Callable[..., Sim]) -> None:
    assert sims().stop(signal.SIGINT) == 0


def test_crash_after_exits_1(sims: Callable[..., Sim]) -> None:
    sim = sims("--crash-after", "0.3")
    assert sim.proc.wait(timeout=5) == 1
    assert "simulated crash" in sim.stderr


def test_hang_after_stays_alive_but_answers_nothing(sims: Callable[..., Sim]) -> None:
    sim = sims("--hang-after", "0.5", "--stats-interval", "0.1")
    early = sim.connect()
    try:
        recv_line(early)
        early.sendall(b"before")
        assert early.recv(64) == b"before"
        wait_for(lambda: "simulated hang" in sim.stderr, 5, "the hang")
        assert sim.proc.poll() is None

        with pytest.raises((TimeoutError, urllib.error.URLError)):
            sim.metrics_text(timeout=0.5)
        with socket.create_connection((HOST, sim.port), timeout=2) as late:
            late.settimeout(0.5)
            with pytest.raises(TimeoutError):
                late.recv(64)  # connected (kernel backlog) but never greeted
        early.settimeout(0.5)
        early.sendall(b"after")
        with pytest.raises(TimeoutError):
            early.recv(64)
        lines_at_hang = sim.stdout.count("[STATS]")
        time.sleep(0.3)
        assert sim.stdout.count("[STATS]") == lines_at_hang
        assert sim.proc.poll() is None
    finally:
        early.close()
    assert sim.stop() == 0


def test_sigusr1_hangs_and_sigusr2_resumes(sims: Callable[..., Sim]) -> None:
    sim = sims()
    sim.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "simulated hang" in sim.stderr, 3, "the hang")
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        sim.metrics_text(timeout=0.5)
    sim.proc.send_signal(signal.SIGUSR2)
    wait_for(lambda: "resuming" in sim.stderr, 3, "the resume")
    # The request queued during the hang is answered now, and new ones too.
    assert sim.metrics()["conduit_is_live"] == 1


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_leak_grows_rss(sims: Callable[..., Sim]) -> None:
    sim = sims("--leak-mb-per-s", "60")
    before = _rss_kb(sim.proc.pid)
    time.sleep(1.2)
    grown_mb = (_rss_kb(sim.proc.pid) - before) / 1024
    assert grown_mb > 40, grown_mb
    assert sim.metrics()["conduit_sim_leaked_bytes"] > 40 * 1024 * 1024


def test_session_mb_from_env_holds_memory_per_client_until_it_leaves(
    sims: Callable[..., Sim], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONDUIT_SIM_SESSION_MB", "16")  # as an image would carry it
    sim = sims("--udp-idle-timeout", "0.3")
    assert "[WARNING] fault injection on: --session-mb 16" in sim.stdout
    mib = 1024 * 1024
    before = _rss_kb(sim.proc.pid)
    clients = [sim.connect() for _ in range(3)]
    for sock in clients:
        assert recv_line(sock).startswith(b"CONDUIT-SIM ")
    assert sim.metrics()["conduit_sim_session_bytes"] == 3 * 16 * mib
    assert (_rss_kb(sim.proc.pid) - before) / 1024 > 3 * 15
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(3)
        udp.sendto(b"hello", (HOST, sim.port))
        assert udp.recv(256).startswith(b"CONDUIT-SIM ")
        assert sim.metrics()["conduit_sim_session_bytes"] == 4 * 16 * mib
    for sock in clients:
        sock.close()
    # TCP blocks go when the connection closes, the UDP one when its session expires.
    wait_for(lambda: sim.metrics()["conduit_sim_session_bytes"] == 0, 5, "memory released")
    assert (_rss_kb(sim.proc.pid) - before) / 1024 < 16  # unmapped, back to the OS


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Serial: it measures the CPU share the burner gets, which the other tests' load takes
# (0.1499 of the asked 0.5 with 6 xdist workers on 2 cores, against the 0.15 bound).
@pytest.mark.serial
def test_burn_cpu_uses_about_the_requested_fraction(sims: Callable[..., Sim]) -> None:
    sim = sims("--burn-cpu", "0.5")
    before, start = _cpu_seconds(sim.proc.pid), time.monotonic()
    time.sleep(1.0)
    used = (_cpu_seconds(sim.proc.pid) - before) / (time.monotonic() - start)
    # Wide bounds: the duty cycle is wall-clock based, so a busy test box lowers it.
    assert 0.15 < used < 0.9, used
    assert sim.metrics()["conduit_is_live"] == 1  # still serving while burning


# ------------------------------------------------------------------------------- scale


def _raise_own_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_holds_2000_concurrent_slow_echo_clients(sims: Callable[..., Sim]) -> None:
    clients = 2000
    _raise_own_fd_limit(clients + 200)
    sim = sims("--max-common-clients", str(clients), "--bandwidth", "100")

    async def session(
        i: int, connected: asyncio.Event, counter: list[int], release: asyncio.Event
    ) -> bool:
        reader, writer = await asyncio.open_connection(HOST, sim.port)
        try:
            greeting = await reader.readline()
            counter[0] += 1
            if counter[0] == clients:
                connected.set()
            await release.wait()
            message = f"client {i}\n".encode()
            writer.write(message)
            await writer.drain()
            return bool(greeting.startswith(b"CONDUIT-SIM ") and await reader.readline() == message)
        finally:
            writer.close()

    async def drive() -> tuple[list[bool], float]:
        connected, release, counter = asyncio.Event(), asyncio.Event(), [0]
        tasks = [
            asyncio.create_task(session(i, connected, counter, release)) for i in range(clients)
        ]
        await asyncio.wait_for(connected.wait(), 20)
        held = await asyncio.to_thread(lambda: sim.metrics()["conduit_connected_clients"])
        release.set()
        return await asyncio.wait_for(asyncio.gather(*tasks), 20), held

    results, held = asyncio.run(drive())
    assert held == clients
    assert all(results)
    assert sim.metrics()["conduit_sim_refused_total"] == 0


def test_a_full_station_is_still_healthy_to_the_probes(sims: Callable[..., Sim]) -> None:
    """A full station answers BUSY: it is alive and serving, so neither the supervisor's
    probe nor the readiness check may take it for a dead one (and restart it)."""
    import asyncio

    from conduitctl.fleet import BackendSpec
    from conduitctl.observe.probe import tcp_probe
    from conduitctl.supervise.probes import probe

    sim = sims("--max-common-clients", "1", "--name", "full")
    backend = BackendSpec(1, "full", HOST, sim.port, sim.metrics_port, 1, -1, 1.0, 0)
    with sim.connect() as only:
        assert recv_line(only).startswith(b"CONDUIT-SIM full ")
        outcome = asyncio.run(probe("sim", backend, 2.0))
        assert outcome.ok, outcome.reason
        assert tcp_probe(HOST, sim.port, 2.0, greeting=True).ok
    sim.proc.kill()
    sim.proc.wait(5)
    assert not asyncio.run(probe("sim", backend, 1.0)).ok  # a dead one still fails

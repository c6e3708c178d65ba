"""The load generator against real conduit-sim processes on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fleet_helpers import wait_for

from conduitctl.drills.loadtest import LoadReport, LoadSpec, Snapshot, run, run_load

HOST = "127.0.0.1"
READY_LINE = "[OK] Connected to Psiphon network"


@dataclass
class Sim:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    out_path: Path

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()


@pytest.fixture
def sims(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[Callable[..., Sim]]:
    """Start named simulators (unlimited bandwidth unless given); all killed at teardown."""
    started: list[Sim] = []

    def start(name: str, *extra: str, max_clients: int = 1000) -> Sim:
        port, metrics_port = free_port(), free_port()
        out = tmp_path / f"{name}.out"
        argv = [
            sys.executable,
            "-m",
            "conduitctl.sim.main",
            "start",
            "--max-common-clients",
            str(max_clients),
            "--bandwidth",
            "-1",
            "--listen",
            f"{HOST}:{port}",
            "--metrics-addr",
            f"{HOST}:{metrics_port}",
            "--data-dir",
            str(tmp_path / name),
            "--name",
            name,
            "--stats-interval",
            "0.5",
            *extra,
        ]
        with out.open("wb") as fo:
            proc = subprocess.Popen(argv, stdout=fo, stderr=subprocess.STDOUT)
        sim = Sim(name, port, proc, out)
        started.append(sim)
        wait_for(lambda: READY_LINE in sim.stdout or proc.poll() is not None, 10, "sim ready", 0.02)
        assert proc.poll() is None, sim.stdout
        return sim

    yield start
    for sim in started:
        if sim.proc.poll() is None:
            sim.proc.kill()
        sim.proc.wait(timeout=5)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _assert_clean(report: LoadReport) -> None:
    assert report.failed == 0, (report.failed_by_reason, report.error_examples)
    assert report.sessions_dropped == 0, (report.dropped_by_reason, report.error_examples)


# ------------------------------------------------------------------------------ direct


def test_direct_run_holds_every_client_and_echoes(sims: Callable[..., Sim]) -> None:
    sim = sims("sim-a")
    snaps: list[Snapshot] = []
    fds = _open_fds()
    spec = LoadSpec(HOST, sim.port, clients=200, duration_s=3, rate_kbps=32)
    report = run(spec, progress=snaps.append)

    _assert_clean(report)
    assert (report.attempted, report.connected, report.peak_open) == (200, 200, 200)
    assert report.per_backend == {"sim-a": 200}
    assert (report.backends, report.balance_ratio) == (1, 1.0)
    lat = report.latency
    assert lat.p50_ms is not None and lat.p95_ms is not None and lat.max_ms is not None
    assert 0 < lat.p50_ms <= lat.p95_ms <= lat.max_ms
    # 200 clients x 4 KB/s for ~3 s; allow for the ramp and the random first send.
    assert report.throughput.bytes_received > 200 * 4000
    assert report.throughput.bytes_received <= report.throughput.bytes_sent
    assert report.throughput.mbps > 0
    assert report.connections_per_second > 0
    assert 3 <= report.duration_s < 4.5
    assert not report.stopped_early
    assert len(snaps) >= 3 and snaps[-1].connected == 200 and max(s.open for s in snaps) == 200
    assert _open_fds() <= fds  # every socket closed
    doc = report.to_dict()
    assert doc["per_backend"] == {"sim-a": 200} and doc["latency_ms"]["p99"] > 0


def test_more_clients_than_slots_counts_busy(sims: Callable[..., Sim]) -> None:
    sim = sims("sim-small", max_clients=30)
    report = run(LoadSpec(HOST, sim.port, clients=60, duration_s=1.5, rate_kbps=8))
    assert report.connected == 30
    assert report.failed_by_reason["busy"] == 30 and report.failed == 30
    assert report.failed_ratio == pytest.approx(0.5)
    assert report.sessions_dropped == 0
    assert "sim-small" in report.error_examples["busy"]


def test_nothing_listening_is_a_report_of_refusals(free_port: Callable[[], int]) -> None:
    fds = _open_fds()
    started = time.monotonic()
    report = run(LoadSpec(HOST, free_port(), clients=100, duration_s=5))
    assert report.failed_by_reason["refused"] == 100
    assert (report.connected, report.failed_ratio) == (0, 1.0)
    assert report.latency.p50_ms is None and report.balance_ratio is None
    assert time.monotonic() - started < 2  # ends when every client has failed
    assert _open_fds() <= fds


def test_killed_sim_counts_dropped_sessions(sims: Callable[..., Sim]) -> None:
    sim = sims("sim-doomed")
    killer = threading.Timer(1.0, sim.proc.kill)
    killer.start()
    try:
        report = run(LoadSpec(HOST, sim.port, clients=100, duration_s=6, rate_kbps=16))
    finally:
        killer.cancel()
    assert report.connected == 100
    assert report.sessions_dropped == 100
    assert report.dropped_by_reason["eof"] + report.dropped_by_reason["reset"] == 100
    assert report.duration_s < 3  # nothing left to hold: the run ends early


def test_hung_sim_drops_on_echo_timeout(sims: Callable[..., Sim]) -> None:
    sim = sims("sim-hang", "--hang-after", "1")
    spec = LoadSpec(HOST, sim.port, clients=50, duration_s=3, rate_kbps=64, echo_timeout_s=0.5)
    report = run(spec)
    assert report.connected == 50
    assert report.dropped_by_reason["timeout"] == 50


def test_silent_target_times_out_within_the_bound(sims: Callable[..., Sim]) -> None:
    sim = sims("sim-mute", "--hang-after", "0")  # accepts in the kernel, never greets
    started = time.monotonic()
    spec = LoadSpec(HOST, sim.port, clients=20, duration_s=1, connect_timeout_s=1)
    report = run(spec)
    assert report.failed_by_reason["timeout"] == 20
    assert time.monotonic() - started < spec.duration_s + spec.grace_s


def test_stop_event_ends_early_with_a_partial_report(sims: Callable[..., Sim]) -> None:
    sim = sims("sim-stop")
    fds = _open_fds()

    async def drive() -> LoadReport:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.8, stop.set)
        spec = LoadSpec(HOST, sim.port, clients=100, duration_s=30, rate_kbps=8)
        return await run_load(spec, stop=stop)

    started = time.monotonic()
    report = asyncio.run(drive())
    assert time.monotonic() - started < 2
    assert report.stopped_early
    assert report.connected == 100 and report.sessions_dropped == 0
    assert report.attempted == report.connected + report.failed + report.cancelled
    assert _open_fds() <= fds


# ------------------------------------------------------------------------------- UDP


def test_udp_greetings_and_echo_without_loss(sims: Callable[..., Sim]) -> None:
    sim = sims("sim-udp")
    fds = _open_fds()
    report = run(LoadSpec(HOST, sim.port, clients=100, duration_s=2, rate_kbps=32, udp=True))
    _assert_clean(report)
    assert report.mode == "udp"
    assert report.per_backend == {"sim-udp": 100}
    assert report.udp is not None and report.udp.datagrams_received > 100
    assert report.udp.loss_ratio <= 0.01
    assert report.to_dict()["udp"]["datagrams_sent"] == report.udp.datagrams_sent
    assert _open_fds() <= fds


def test_udp_nothing_listening_is_refused(free_port: Callable[[], int]) -> None:
    report = run(LoadSpec(HOST, free_port(), clients=20, duration_s=2, udp=True))
    assert report.failed_by_reason["refused"] == 20


# ------------------------------------------------------------------ several backends


class RoundRobinProxy:
    """A tiny TCP balancer on loopback (its own loop in a thread): one backend per connect."""

    def __init__(self, backend_ports: list[int]) -> None:
        self._ports = itertools.cycle(backend_ports)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> RoundRobinProxy:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, HOST, 0, backlog=1024)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._server.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(asyncio.sleep(0.05))
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, next(self._ports))
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def test_per_backend_and_balance_through_a_round_robin_front(sims: Callable[..., Sim]) -> None:
    one, two = sims("sim-one"), sims("sim-two")
    with RoundRobinProxy([one.port, two.port]) as front:
        report = run(LoadSpec(HOST, front.port, clients=60, duration_s=2, rate_kbps=16))
    _assert_clean(report)
    assert report.per_backend == {"sim-one": 30, "sim-two": 30}
    assert (report.backends, report.balance_ratio) == (2, 1.0)


def test_per_backend_shows_imbalance(sims: Callable[..., Sim]) -> None:
    one, two = sims("sim-one"), sims("sim-two")
    with RoundRobinProxy([one.port, one.port, two.port]) as front:
        report = run(LoadSpec(HOST, front.port, clients=30, duration_s=1))
    assert report.per_backend == {"sim-one": 20, "sim-two": 10}
    assert report.balance_ratio == 2.0


# -------------------------------------------------------------------------------- scale


@pytest.mark.slow
def test_2000_clients_for_5s_against_two_sims(sims: Callable[..., Sim]) -> None:
    one, two = sims("sim-one", max_clients=1000), sims("sim-two", max_clients=1000)

    async def drive() -> list[LoadReport]:
        specs = [
            LoadSpec(HOST, s.port, clients=1000, duration_s=5, rate_kbps=8) for s in (one, two)
        ]
        return list(await asyncio.gather(*(run_load(spec) for spec in specs)))

    reports = asyncio.run(drive())
    for report, sim in zip(reports, (one, two), strict=True):
        _assert_clean(report)
        assert report.peak_open == 1000
        assert report.per_backend == {sim.name: 1000}
    assert sum(r.connected for r in reports) == 2000
    # The sims print a [STATS] line every 0.5 s: at some point each held all of its clients.
    for sim in (one, two):
        assert "Connected: 1000 " in sim.stdout

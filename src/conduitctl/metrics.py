"""The daemon's Prometheus exporter: one tick's observations as `conduitctl_*` metrics.

Its own `CollectorRegistry` (never the process-global one), fixed label sets, no container
ids. Label values come from settings (backend names, front listeners) and the alert rules;
an observation naming anything else is left out, so a scrape never grows new series.

Counters are yielded by a custom collector from the latest cumulative values, not built with
`Counter.inc(delta)`: a daemon restart simply starts them over from what the tick says (a
reset `rate()` understands), and nothing is lost between ticks. Conduit's own byte counters
restart at 0 with the backend; the exporter keeps them monotonic by adding the last value
before each decrease to a base (see `_Monotonic`).

Units are Prometheus base units: bytes, seconds, ratios (0..1, not percent), bytes per second
for rates (as Conduit's own `conduit_bandwidth_limit_bytes_per_second`, not Mbps or bits).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, generate_latest, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from conduitctl.errors import BadInput, ConduitctlError
from conduitctl.observe.model import BackendObservation, Tick

log = logging.getLogger(__name__)

PREFIX = "conduitctl_"
CLIENT_STATES = ("connected", "connecting")
BYTE_DIRECTIONS = ("uploaded", "downloaded")
NIC_DIRECTIONS = ("rx", "tx")
# A tick is probes, scrapes and a reconcile: milliseconds normally, up to the probe timeout
# (0.8 s by default) when a backend hangs; past 1 s the daemon misses its own interval.
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MBPS_TO_BYTES_PER_S = 1e6 / 8


class _Monotonic:
    """A counter that never decreases although its source restarts from 0.

    A value below the previous one means the source restarted (a backend's Conduit counters
    start again at 0 with the process): the previous value goes into `base`. A restart whose
    first reading already exceeds the last one before it goes unseen; that under-counts by
    at most what a process lived less than a tick or two had counted.
    """

    __slots__ = ("base", "last")

    def __init__(self) -> None:
        self.base = 0.0
        self.last = 0.0

    def update(self, value: float) -> None:
        if value < self.last:
            self.base += self.last
        self.last = value

    @property
    def value(self) -> float:
        return self.base + self.last


@dataclass
class _BackendCounters:
    restarts: _Monotonic = field(default_factory=_Monotonic)
    oom_kills: _Monotonic = field(default_factory=_Monotonic)
    uploaded: _Monotonic = field(default_factory=_Monotonic)
    downloaded: _Monotonic = field(default_factory=_Monotonic)


@dataclass(frozen=True)
class _State:
    """What one scrape shows; replaced whole by `update`, so a scrape never sees half a tick."""

    tick: Tick | None = None
    backends: Mapping[str, BackendObservation] = field(default_factory=dict)
    counters: Mapping[str, tuple[float, float, float, float]] = field(default_factory=dict)
    front_reloads: float = 0.0
    firing: Mapping[str, int] = field(default_factory=dict)
    ticks: int = 0


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))


def _counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, labels=list(labels))


def _add(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
    """A gauge sample, or none when the value is unknown: neither a fake 0 nor NaN, which
    would poison `sum()` over the fleet."""
    if value is not None:
        family.add_metric(labels, float(value))


class _TickCollector:
    """Yields every `conduitctl_*` family from the latest `_State` (a custom collector)."""

    def __init__(self, exporter: Exporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Metric]:
        ex = self._exporter
        state = ex._state  # one reference read: the whole tick or the previous one
        yield from self._backend_families(ex.backends, state)
        yield from self._front_families(ex.listeners, state)
        yield from self._host_families(state)
        firing = _gauge("alerts_firing", "Alerts firing now, by rule (0: none).", ["alert"])
        for alert in ex.alert_names:
            firing.add_metric([alert], float(state.firing.get(alert, 0)))
        yield firing
        ticks = _counter("ticks", "Supervisor ticks completed (observe, reconcile, act).")
        ticks.add_metric([], float(state.ticks))
        yield ticks
        last = _gauge(
            "last_tick_timestamp_seconds",
            "Unix time of the last completed tick; stale means the loop is stuck.",
        )
        _add(last, [], state.tick.ts if state.tick else None)
        yield last

    @staticmethod
    def _backend_families(names: Sequence[str], state: _State) -> Iterator[Metric]:
        b = ["backend"]
        up = _gauge("backend_up", "1 if the backend's process or container is running.", b)
        healthy = _gauge("backend_healthy", "1 if the backend passes its health check.", b)
        in_front = _gauge("backend_in_front", "1 if the front sends new clients to it.", b)
        looping = _gauge(
            "backend_crash_looping", "1 while crash-looping (restarts go on, slower).", b
        )
        clients = _gauge("backend_clients", "Clients by state.", ["backend", "state"])
        cpu = _gauge(
            "backend_cpu_ratio",
            "CPU seconds used per second (1 = one full core; above 1 on several cores).",
            b,
        )
        rss = _gauge("backend_memory_rss_bytes", "Resident memory (cgroup anon or RSS).", b)
        limit = _gauge("backend_memory_limit_bytes", "Memory limit of the backend.", b)
        max_clients = _gauge(
            "backend_max_clients", "Max clients it runs with now (degradation may raise it).", b
        )
        restarts = _counter("backend_restarts", "Restarts the supervisor made.", b)
        ooms = _counter("backend_oom_kills", "Kills by the OOM killer.", b)
        traffic = _counter(
            "backend_bytes",
            "Bytes relayed (Conduit's counters, kept monotonic across backend restarts).",
            ["backend", "direction"],
        )
        zero = (0.0, 0.0, 0.0, 0.0)
        for name in names:
            n_restarts, n_ooms, n_up, n_down = state.counters.get(name, zero)
            restarts.add_metric([name], n_restarts)
            ooms.add_metric([name], n_ooms)
            traffic.add_metric([name, "uploaded"], n_up)
            traffic.add_metric([name, "downloaded"], n_down)
            obs = state.backends.get(name)
            if obs is None:
                continue
            up.add_metric([name], float(obs.running))
            _add(healthy, [name], None if obs.healthy is None else float(obs.healthy))
            in_front.add_metric([name], float(obs.in_front))
            looping.add_metric([name], float(obs.crash_looping))
            _add(clients, [name, "connected"], obs.connected)
            _add(clients, [name, "connecting"], obs.connecting)
            _add(cpu, [name], None if obs.cpu_percent is None else obs.cpu_percent / 100)
            _add(rss, [name], obs.rss_bytes)
            _add(limit, [name], obs.memory_limit_bytes)
            _add(max_clients, [name], obs.max_clients)
        yield from (up, healthy, in_front, looping, clients, cpu, rss, limit, max_clients)
        yield from (restarts, ooms, traffic)

    @staticmethod
    def _front_families(listeners: Sequence[str], state: _State) -> Iterator[Metric]:
        up = _gauge("front_up", "1 if the front balancer (nginx, haproxy) is running.")
        listening = _gauge("front_listening", "1 if every front listener accepts.")
        queue = _gauge(
            "front_accept_queue",
            "Connections waiting in the listener's accept queue (summed over its sockets).",
            ["listener"],
        )
        backlog = _gauge(
            "front_accept_backlog", "Accept queue capacity (listen backlog).", ["listener"]
        )
        reloads = _counter("front_reloads", "Front configuration reloads.")
        reloads.add_metric([], state.front_reloads)
        tick = state.tick
        if tick is not None:
            up.add_metric([], float(tick.front.running))
            listening.add_metric([], float(tick.front.listening))
            for listener in listeners:
                _add(queue, [listener], tick.front.accept_queue.get(listener))
                _add(backlog, [listener], tick.front.accept_backlog.get(listener))
        yield from (up, listening, queue, backlog, reloads)

    @staticmethod
    def _host_families(state: _State) -> Iterator[Metric]:
        total = _gauge("host_memory_total_bytes", "Host memory.")
        available = _gauge("host_memory_available_bytes", "Host memory available (MemAvailable).")
        cpu = _gauge("host_cpu_ratio", "Busy fraction of all host CPUs (0..1).")
        nic = _gauge("host_nic_bytes_per_second", "Traffic on the host's NIC.", ["direction"])
        speed = _gauge("host_nic_speed_bytes_per_second", "NIC link speed, each way (when known).")
        tick = state.tick
        if tick is not None:
            host = tick.host
            total.add_metric([], float(host.mem_total_bytes))
            available.add_metric([], float(host.mem_available_bytes))
            cpu.add_metric([], host.cpu_percent / 100)
            for direction, mbps in (("rx", host.nic_rx_mbps), ("tx", host.nic_tx_mbps)):
                _add(nic, [direction], None if mbps is None else mbps * MBPS_TO_BYTES_PER_S)
            if host.nic_speed_mbps is not None:
                speed.add_metric([], host.nic_speed_mbps * MBPS_TO_BYTES_PER_S)
        yield from (total, available, cpu, nic, speed)


class MetricsServer:
    """A running /metrics endpoint (prometheus_client's WSGI server on a daemon thread)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host: str = str(server.server_address[0])
        self.port: int = int(server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Exporter:
    """The daemon's metrics: `update` once per tick, `render` or `serve` for Prometheus.

    `backends`, `listeners` (the front's, as in `FrontObservation.accept_queue`, e.g.
    "tcp:443") and `alert_names` fix the label values; counters and `alerts_firing` exist for
    each from the start at 0. Gauges appear with the first tick, and a value a tick does not
    know (None: not scraped, not running) is left out rather than reported as 0.

    `update` and `observe_tick_duration` are for the daemon's loop (one thread); scrapes may
    come from the server's threads at any time.
    """

    def __init__(
        self,
        backends: Iterable[str],
        alert_names: Iterable[str],
        *,
        listeners: Iterable[str] = (),
        process_metrics: bool = True,
    ) -> None:
        self.backends: tuple[str, ...] = tuple(dict.fromkeys(backends))
        self.alert_names: tuple[str, ...] = tuple(dict.fromkeys(alert_names))
        self.listeners: tuple[str, ...] = tuple(dict.fromkeys(listeners))
        self._counters = {name: _BackendCounters() for name in self.backends}
        self._front_reloads = _Monotonic()
        self._ignored: set[str] = set()
        self._lock = threading.Lock()
        self._state = _State()
        self.registry = CollectorRegistry()
        self.registry.register(_TickCollector(self))
        self._tick_duration = Histogram(
            PREFIX + "tick_duration_seconds",
            "Wall time of one supervisor tick.",
            buckets=TICK_BUCKETS,
            registry=self.registry,
        )
        if process_metrics:  # process_cpu_seconds_total, process_resident_memory_bytes...
            ProcessCollector(registry=self.registry)

    def update(self, tick: Tick, firing: Mapping[str, int]) -> None:
        """Take one tick's observations and the alerts firing now (rule -> firing count).

        Cheap (no I/O, nothing rendered): families are built at scrape time.
        """
        with self._lock:
            backends: dict[str, BackendObservation] = {}
            counters: dict[str, tuple[float, float, float, float]] = {}
            for obs in tick.backends:
                c = self._counters.get(obs.name)
                if c is None:
                    self._ignore("backend", obs.name)
                    continue
                backends[obs.name] = obs
                c.restarts.update(obs.restarts)
                c.oom_kills.update(obs.oom_kills)
                if obs.bytes_uploaded is not None and math.isfinite(obs.bytes_uploaded):
                    c.uploaded.update(obs.bytes_uploaded)
                if obs.bytes_downloaded is not None and math.isfinite(obs.bytes_downloaded):
                    c.downloaded.update(obs.bytes_downloaded)
            for name, c in self._counters.items():
                counters[name] = (
                    c.restarts.value,
                    c.oom_kills.value,
                    c.uploaded.value,
                    c.downloaded.value,
                )
            self._front_reloads.update(tick.front.reloads)
            for listener in tick.front.accept_queue:
                if listener not in self.listeners:
                    self._ignore("listener", listener)
            for alert in firing:
                if alert not in self.alert_names:
                    self._ignore("alert", alert)
            self._state = _State(
                tick=tick,
                backends=backends,
                counters=counters,
                front_reloads=self._front_reloads.value,
                firing=dict(firing),
                ticks=self._state.ticks + 1,
            )

    def observe_tick_duration(self, seconds: float) -> None:
        self._tick_duration.observe(seconds)

    def render(self) -> bytes:
        """The exposition text (Prometheus text format 0.0.4), as a scrape would get it."""
        return generate_latest(self.registry)

    def serve(
        self, host: str = "127.0.0.1", *, port: int, allow_remote: bool = False
    ) -> MetricsServer:
        """Serve /metrics on host:port (port 0: any free one; see the handle's `.port`).

        Raises BadInput for a non-loopback host unless `allow_remote` (the daemon's metrics
        tell anyone who can reach them how the fleet is doing), ConduitctlError if the port
        cannot be bound.
        """
        if not allow_remote and not is_loopback(host):
            raise BadInput(
                f"metrics address {host!r} is not loopback; bind 127.0.0.1 and scrape through "
                "a tunnel or proxy, or allow remote scrapes explicitly"
            )
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConduitctlError(
                f"metrics: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "pick another port or stop what holds it"
            ) from None
        return MetricsServer(server, thread)

    def _ignore(self, kind: str, name: str) -> None:
        key = f"{kind}:{name}"
        if key not in self._ignored:
            self._ignored.add(key)
            log.warning(
                "metrics: unknown %s left out (label values are fixed at start)",
                kind,
                extra={kind: name},
            )

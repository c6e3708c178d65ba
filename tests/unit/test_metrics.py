import dataclasses
import logging
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conduitctl.errors import BadInput
from conduitctl.metrics import Exporter, is_loopback
from conduitctl.observe.model import BackendObservation, FrontObservation, HostObservation, Tick

BACKENDS = [f"conduit-{i}" for i in range(1, 4)]
ALERTS = ["backend_down", "host_memory", "accept_queue"]
LISTENERS = ["tcp:443", "tcp:8443"]

# Every family's label names: fixed, whatever the tick says.
LABELS = {
    "conduitctl_backend_up": {"backend"},
    "conduitctl_backend_healthy": {"backend"},
    "conduitctl_backend_in_front": {"backend"},
    "conduitctl_backend_crash_looping": {"backend"},
    "conduitctl_backend_clients": {"backend", "state"},
    "conduitctl_backend_cpu_ratio": {"backend"},
    "conduitctl_backend_memory_rss_bytes": {"backend"},
    "conduitctl_backend_memory_limit_bytes": {"backend"},
    "conduitctl_backend_max_clients": {"backend"},
    "conduitctl_backend_restarts": {"backend"},
    "conduitctl_backend_oom_kills": {"backend"},
    "conduitctl_backend_bytes": {"backend", "direction"},
    "conduitctl_front_up": set(),
    "conduitctl_front_listening": set(),
    "conduitctl_front_accept_queue": {"listener"},
    "conduitctl_front_accept_backlog": {"listener"},
    "conduitctl_front_reloads": set(),
    "conduitctl_host_memory_total_bytes": set(),
    "conduitctl_host_memory_available_bytes": set(),
    "conduitctl_host_cpu_ratio": set(),
    "conduitctl_host_nic_bytes_per_second": {"direction"},
    "conduitctl_host_nic_speed_bytes_per_second": set(),
    "conduitctl_alerts_firing": {"alert"},
    "conduitctl_ticks": set(),
    "conduitctl_last_tick_timestamp_seconds": set(),
    "conduitctl_tick_duration_seconds": set(),
}
LABEL_VALUES = {
    "backend": set(BACKENDS),
    "state": {"connected", "connecting"},
    "direction": {"uploaded", "downloaded", "rx", "tx"},
    "listener": set(LISTENERS),
    "alert": set(ALERTS),
}


def backend(name: str, index: int, **changes: object) -> BackendObservation:
    obs = BackendObservation(
        name=name,
        index=index,
        running=True,
        healthy=True,
        in_front=True,
        restarts=0,
        oom_kills=0,
        connected=10,
        connecting=2,
        bytes_uploaded=1000.0,
        bytes_downloaded=5000.0,
        cpu_percent=25.0,
        rss_bytes=60 * 2**20,
        memory_limit_bytes=512 * 2**20,
        max_clients=250,
    )
    return dataclasses.replace(obs, **changes)


def tick(ts: float = 1000.0, **per_backend: dict[str, object]) -> Tick:
    backends = tuple(
        backend(name, i, **per_backend.get(name.replace("-", "_"), {}))
        for i, name in enumerate(BACKENDS, start=1)
    )
    return Tick(
        ts=ts,
        backends=backends,
        host=HostObservation(
            mem_total_bytes=4 * 2**30,
            mem_available_bytes=3 * 2**30,
            cpu_percent=40.0,
            nic="eth0",
            nic_rx_mbps=80.0,
            nic_tx_mbps=8.0,
            nic_speed_mbps=1000.0,
        ),
        front=FrontObservation(
            kind="nginx",
            running=True,
            listening=True,
            reloads=3,
            accept_queue={"tcp:443": 2, "tcp:8443": 0},
            accept_backlog={"tcp:443": 511, "tcp:8443": 511},
        ),
    )


def samples(exporter: Exporter) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(exporter.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(exporter: Exporter, name: str, **labels: str) -> float:
    return samples(exporter)[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def exporter() -> Exporter:
    return Exporter(BACKENDS, ALERTS, listeners=LISTENERS)


def promtool_check(text: bytes) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/setup-system.sh installs it)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == "", result.stdout.decode()  # no lint problems


def test_promtool_passes_before_and_after_ticks(exporter: Exporter):
    promtool_check(exporter.render())
    exporter.update(tick(), {"backend_down": 1})
    exporter.update(tick(conduit_2={"running": False, "connected": None, "rss_bytes": None}), {})
    exporter.observe_tick_duration(0.004)
    promtool_check(exporter.render())


def test_every_family_has_its_fixed_labels(exporter: Exporter):
    exporter.update(tick(), {"backend_down": 2, "not_a_rule": 1})
    families = {
        f.name: f
        for f in text_string_to_metric_families(exporter.render().decode())
        if f.name.startswith("conduitctl_") and not f.name.endswith("_created")
    }
    assert set(families) == set(LABELS)
    for name, family in families.items():
        for sample in family.samples:
            labels = set(sample.labels) - {"le"}
            assert labels == LABELS[name], (name, sample)
            for key in labels:
                assert sample.labels[key] in LABEL_VALUES[key], (name, sample)


def test_counters_and_alerts_start_at_zero_for_every_label_value(exporter: Exporter):
    before = samples(exporter)
    for name in BACKENDS:
        b = (("backend", name),)
        assert before[("conduitctl_backend_restarts_total", b)] == 0
        assert before[("conduitctl_backend_oom_kills_total", b)] == 0
        for direction in ("uploaded", "downloaded"):
            key = ("conduitctl_backend_bytes_total", (*b, ("direction", direction)))
            assert before[key] == 0
    for alert in ALERTS:
        assert before[("conduitctl_alerts_firing", (("alert", alert),))] == 0
    assert before[("conduitctl_front_reloads_total", ())] == 0
    assert before[("conduitctl_ticks_total", ())] == 0
    # No tick yet: no state gauge claims a value (up=0 would fire "backend down" alerts).
    assert not any(name == "conduitctl_backend_up" for name, _ in before)


def test_values_and_units(exporter: Exporter):
    exporter.update(tick(ts=1234.5), {"backend_down": 2})
    exporter.observe_tick_duration(0.02)
    s = samples(exporter)
    b1 = (("backend", "conduit-1"),)
    assert s[("conduitctl_backend_up", b1)] == 1
    assert s[("conduitctl_backend_clients", (*b1, ("state", "connected")))] == 10
    assert s[("conduitctl_backend_clients", (*b1, ("state", "connecting")))] == 2
    assert s[("conduitctl_backend_cpu_ratio", b1)] == 0.25  # 25 % of one core
    assert s[("conduitctl_backend_memory_rss_bytes", b1)] == 60 * 2**20
    assert s[("conduitctl_backend_memory_limit_bytes", b1)] == 512 * 2**20
    assert s[("conduitctl_backend_max_clients", b1)] == 250
    assert s[("conduitctl_backend_bytes_total", (*b1, ("direction", "downloaded")))] == 5000
    assert s[("conduitctl_host_cpu_ratio", ())] == 0.4
    assert s[("conduitctl_host_nic_bytes_per_second", (("direction", "rx"),))] == 10_000_000
    assert s[("conduitctl_host_nic_bytes_per_second", (("direction", "tx"),))] == 1_000_000
    assert s[("conduitctl_host_nic_speed_bytes_per_second", ())] == 125_000_000
    assert s[("conduitctl_front_accept_queue", (("listener", "tcp:443"),))] == 2
    assert s[("conduitctl_front_accept_backlog", (("listener", "tcp:443"),))] == 511
    assert s[("conduitctl_front_reloads_total", ())] == 3
    assert s[("conduitctl_alerts_firing", (("alert", "backend_down"),))] == 2
    assert s[("conduitctl_alerts_firing", (("alert", "host_memory"),))] == 0
    assert s[("conduitctl_ticks_total", ())] == 1
    assert s[("conduitctl_last_tick_timestamp_seconds", ())] == 1234.5
    assert s[("conduitctl_tick_duration_seconds_count", ())] == 1
    assert s[("conduitctl_tick_duration_seconds_bucket", (("le", "0.025"),))] == 1
    assert s[("process_resident_memory_bytes", ())] > 0


def test_unknown_values_are_left_out_not_zeroed(exporter: Exporter):
    exporter.update(
        tick(conduit_2={"running": False, "healthy": None, "connected": None, "cpu_percent": None}),
        {},
    )
    b2 = (("backend", "conduit-2"),)
    s = samples(exporter)
    assert s[("conduitctl_backend_up", b2)] == 0
    assert ("conduitctl_backend_healthy", b2) not in s
    assert ("conduitctl_backend_cpu_ratio", b2) not in s
    assert ("conduitctl_backend_clients", (*b2, ("state", "connected"))) not in s
    assert s[("conduitctl_backend_clients", (*b2, ("state", "connecting")))] == 2
    # sum() over the fleet still works: nothing is NaN.
    assert all(v == v for v in s.values())


def test_byte_counters_never_decrease_across_backend_restarts(exporter: Exporter):
    """Conduit's counters restart at 0 with the backend; the exporter's do not."""
    readings = [100.0, 500.0, 20.0, 300.0, None, 50.0, 60.0]
    expected = [100.0, 500.0, 520.0, 800.0, 800.0, 850.0, 860.0]
    seen = []
    for i, reading in enumerate(readings):
        exporter.update(tick(ts=1000.0 + i, conduit_1={"bytes_uploaded": reading}), {})
        seen.append(
            value(
                exporter,
                "conduitctl_backend_bytes_total",
                backend="conduit-1",
                direction="uploaded",
            )
        )
    assert seen == expected
    assert seen == sorted(seen)


def test_other_counters_are_monotonic_too(exporter: Exporter):
    for i, (restarts, reloads) in enumerate([(1, 3), (2, 4), (0, 1), (1, 2)]):
        t = tick(ts=float(i), conduit_3={"restarts": restarts, "oom_kills": restarts})
        t = dataclasses.replace(t, front=dataclasses.replace(t.front, reloads=reloads))
        exporter.update(t, {})
    assert value(exporter, "conduitctl_backend_restarts_total", backend="conduit-3") == 3
    assert value(exporter, "conduitctl_backend_oom_kills_total", backend="conduit-3") == 3
    assert value(exporter, "conduitctl_front_reloads_total") == 6


def test_unknown_label_values_are_left_out_and_logged_once(
    exporter: Exporter, caplog: pytest.LogCaptureFixture
):
    extra = backend("conduit-9", 9)
    t = tick()
    t = dataclasses.replace(t, backends=(*t.backends, extra))
    with caplog.at_level(logging.WARNING, logger="conduitctl.metrics"):
        exporter.update(t, {"no_such_rule": 1})
        exporter.update(t, {"no_such_rule": 1})
    assert not any(labels == (("backend", "conduit-9"),) for _, labels in samples(exporter))
    assert not any(("alert", "no_such_rule") in labels for _, labels in samples(exporter))
    warnings = [r for r in caplog.records if r.name == "conduitctl.metrics"]
    assert len(warnings) == 2  # the backend and the alert, once each
    assert {getattr(r, "backend", None) or getattr(r, "alert", None) for r in warnings} == {
        "conduit-9",
        "no_such_rule",
    }


def test_no_container_ids_or_dynamic_labels_with_any_input(exporter: Exporter):
    t = tick()
    front = dataclasses.replace(
        t.front, accept_queue={"tcp:443": 1, "abcdef123456": 5}, accept_backlog={}
    )
    exporter.update(dataclasses.replace(t, front=front), {})
    labels = {v for _, ls in samples(exporter) for _, v in ls}
    assert "abcdef123456" not in labels


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("198.51.100.5", False),  # TEST-NET-2: a non-loopback address, never dialled
        ("metrics.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool):
    assert is_loopback(host) is loopback


def test_serve_refuses_non_loopback_unless_allowed(exporter: Exporter):
    with pytest.raises(BadInput, match="not loopback"):
        exporter.serve("0.0.0.0", port=0)


def test_exporters_do_not_share_a_registry():
    a = Exporter(["a-1"], [], process_metrics=False)
    b = Exporter(["b-1"], [], process_metrics=False)
    assert a.registry is not b.registry
    assert b"b-1" not in a.render()
    assert b"process_" not in a.render()

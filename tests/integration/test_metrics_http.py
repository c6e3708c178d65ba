"""The exporter served over HTTP on loopback, scraped as Prometheus would."""

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conduitctl.errors import ConduitctlError
from conduitctl.metrics import Exporter
from conduitctl.observe.model import BackendObservation, FrontObservation, HostObservation, Tick

BACKENDS = [f"conduit-{i}" for i in range(1, 9)]


def _tick(ts: float) -> Tick:
    return Tick(
        ts=ts,
        backends=tuple(
            BackendObservation(
                name=name,
                index=i,
                running=True,
                healthy=True,
                in_front=True,
                connected=i,
                connecting=0,
                bytes_uploaded=1000.0 * i,
                bytes_downloaded=2000.0 * i,
            )
            for i, name in enumerate(BACKENDS, start=1)
        ),
        host=HostObservation(mem_total_bytes=2**32, mem_available_bytes=2**31, cpu_percent=5.0),
        front=FrontObservation(kind="none", running=False, listening=False),
    )


def _families(text: str) -> dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]]:
    return {
        f.name: {(s.name, tuple(sorted(s.labels.items()))) for s in f.samples}
        for f in text_string_to_metric_families(text)
    }


def _conduitctl_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        if f.name.startswith("conduitctl_")
        for s in f.samples
        if not s.name.endswith("_created")
    }


def _scrape(port: int, host: str = "127.0.0.1") -> tuple[str, str]:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        return response.headers.get("Content-Type", ""), response.read().decode()


def test_scrape_returns_the_rendered_families():
    exporter = Exporter(BACKENDS, ["backend_down"])
    exporter.update(_tick(1000.0), {"backend_down": 0})
    exporter.observe_tick_duration(0.003)
    with exporter.serve("127.0.0.1", port=0) as server:
        assert server.host == "127.0.0.1" and server.port > 0
        content_type, body = _scrape(server.port)
        rendered = exporter.render().decode()
    assert content_type.startswith("text/plain")
    # Same families and series; process_* values move between the two reads, ours do not.
    assert _families(body) == _families(rendered)
    assert _conduitctl_values(body) == _conduitctl_values(rendered)
    assert "conduitctl_backend_bytes_total" in body


def test_scrape_follows_updates():
    exporter = Exporter(BACKENDS, [])
    with exporter.serve(port=0) as server:
        exporter.update(_tick(1.0), {})
        first = _conduitctl_values(_scrape(server.port)[1])
        exporter.update(_tick(2.0), {})
        second = _conduitctl_values(_scrape(server.port)[1])
    assert first[("conduitctl_ticks_total", ())] == 1
    assert second[("conduitctl_ticks_total", ())] == 2
    assert second[("conduitctl_last_tick_timestamp_seconds", ())] == 2.0


def test_close_releases_the_port_and_a_taken_port_is_an_error():
    exporter = Exporter(["conduit-1"], [])
    server = exporter.serve(port=0)
    port = server.port
    with pytest.raises(ConduitctlError, match="cannot listen"):
        exporter.serve(port=port)
    server.close()
    server.close()  # idempotent
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    again = exporter.serve(port=port)  # the port is free again
    again.close()


def test_serves_on_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    exporter = Exporter(["conduit-1"], [])
    try:
        server = exporter.serve("::1", port=0)
    except ConduitctlError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with server:
        _, body = _scrape(server.port, "[::1]")
    assert "conduitctl_backend_restarts_total" in body

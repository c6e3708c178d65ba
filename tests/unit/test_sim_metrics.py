"""Prometheus exposition of a Snapshot, and the tiny HTTP responder."""

from __future__ import annotations

import re

import pytest

from conduitctl.sim.metrics import METRICS, format_value, http_response, render_metrics
from conduitctl.sim.stats import Snapshot

SNAP = Snapshot(
    is_live=True,
    connecting=1,
    connected=4,
    announcing=5,
    bytes_up=123,
    bytes_down=456,
    uptime_seconds=12.5,
    idle_seconds=0,
    max_clients=10,
    max_personal_clients=2,
    bandwidth_bps=625_000,
    refused=3,
    udp_sessions=1,
    session_bytes=16 * 1024 * 1024,
)
SAMPLE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]* -?[0-9.e+]+$")


def test_every_metric_has_help_type_and_one_sample_in_order() -> None:
    lines = render_metrics(SNAP).splitlines()
    assert len(lines) == 3 * len(METRICS)
    for spec, (help_line, type_line, sample) in zip(
        METRICS, zip(lines[0::3], lines[1::3], lines[2::3], strict=True), strict=True
    ):
        assert help_line == f"# HELP {spec.name} {spec.help}"
        assert type_line == f"# TYPE {spec.name} {spec.type}"
        assert SAMPLE.match(sample), sample
        assert sample.split()[0] == spec.name


def test_conduit_names_and_values() -> None:
    samples = dict(
        line.split() for line in render_metrics(SNAP).splitlines() if not line.startswith("#")
    )
    assert samples == {
        "conduit_announcing": "5",
        "conduit_connecting_clients": "1",
        "conduit_connected_clients": "4",
        "conduit_is_live": "1",
        "conduit_max_common_clients": "10",
        "conduit_max_personal_clients": "2",
        "conduit_bandwidth_limit_bytes_per_second": "625000",
        "conduit_bytes_uploaded": "123",
        "conduit_bytes_downloaded": "456",
        "conduit_uptime_seconds": "12.5",
        "conduit_idle_seconds": "0",
        "conduit_sim_refused_total": "3",
        "conduit_sim_udp_sessions": "1",
        "conduit_sim_udp_dropped_total": "0",
        "conduit_sim_leaked_bytes": "0",
        "conduit_sim_session_bytes": "16777216",
    }


def test_conduit_series_are_gauges_like_conduit_and_counters_end_in_total() -> None:
    for spec in METRICS:
        if spec.name.startswith("conduit_sim_") and spec.type == "counter":
            assert spec.name.endswith("_total")
        elif not spec.name.startswith("conduit_sim_"):
            assert spec.type == "gauge", spec.name


@pytest.mark.parametrize(
    ("value", "text"), [(0, "0"), (3.0, "3"), (0.25, "0.25"), (1e21, "1000000000000000000000")]
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value) == text


def _split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *header_lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return status, headers, body


def test_get_metrics() -> None:
    status, headers, body = _split(
        http_response(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", lambda: "a 1\n")
    )
    assert status == "HTTP/1.1 200 OK"
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert headers["Content-Length"] == "4"
    assert headers["Connection"] == "close"
    assert body == b"a 1\n"


def test_head_metrics_has_length_but_no_body() -> None:
    status, headers, body = _split(
        http_response(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", lambda: "a 1\n")
    )
    assert status == "HTTP/1.1 200 OK" and headers["Content-Length"] == "4" and body == b""


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"GET /other HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (b"POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"),
        (b"garbage\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK"),
    ],
)
def test_other_requests(request_head: bytes, status: str) -> None:
    rendered: list[bool] = []

    def render() -> str:
        rendered.append(True)
        return ""

    assert _split(http_response(request_head, render))[0] == status
    assert not rendered  # only /metrics pays for rendering

"""Prometheus text exposition (format 0.0.4) of a Snapshot, plus a tiny HTTP responder.

Names, help texts and types follow Conduit's ``cli/internal/metrics/metrics.go``: Conduit
registers every ``conduit_*`` series as a gauge (bytes too), so scrapers written for it see
the same thing here. The simulator's own extras use ``conduit_sim_*``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .stats import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MetricType = Literal["gauge", "counter"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: MetricType
    help: str
    value: Callable[[Snapshot], float]


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "conduit_announcing",
        "gauge",
        "Number of inproxy announcement requests in flight",
        lambda s: s.announcing,
    ),
    MetricSpec(
        "conduit_connecting_clients",
        "gauge",
        "Number of clients currently connecting to the proxy",
        lambda s: s.connecting,
    ),
    MetricSpec(
        "conduit_connected_clients",
        "gauge",
        "Number of clients currently connected to the proxy",
        lambda s: s.connected,
    ),
    MetricSpec(
        "conduit_is_live",
        "gauge",
        "Whether the service is connected to the Psiphon broker (1 = connected, 0 = disconnected)",
        lambda s: 1 if s.is_live else 0,
    ),
    MetricSpec(
        "conduit_max_common_clients",
        "gauge",
        "Maximum number of common proxy clients allowed",
        lambda s: s.max_clients,
    ),
    MetricSpec(
        "conduit_max_personal_clients",
        "gauge",
        "Maximum number of personal proxy clients allowed",
        lambda s: s.max_personal_clients,
    ),
    MetricSpec(
        "conduit_bandwidth_limit_bytes_per_second",
        "gauge",
        "Configured bandwidth limit in bytes per second (0 = unlimited)",
        lambda s: s.bandwidth_bps,
    ),
    MetricSpec(
        "conduit_bytes_uploaded",
        "gauge",
        "Total number of bytes uploaded through the proxy",
        lambda s: s.bytes_up,
    ),
    MetricSpec(
        "conduit_bytes_downloaded",
        "gauge",
        "Total number of bytes downloaded through the proxy",
        lambda s: s.bytes_down,
    ),
    MetricSpec(
        "conduit_uptime_seconds",
        "gauge",
        "Number of seconds since the service started",
        lambda s: s.uptime_seconds,
    ),
    MetricSpec(
        "conduit_idle_seconds",
        "gauge",
        "Number of seconds the proxy has been idle (0 connecting and 0 connected clients)",
        lambda s: s.idle_seconds,
    ),
    MetricSpec(
        "conduit_sim_refused_total",
        "counter",
        "Clients refused with BUSY because the station was full (simulator only)",
        lambda s: s.refused,
    ),
    MetricSpec(
        "conduit_sim_udp_sessions",
        "gauge",
        "UDP client sessions currently open, included in connected clients (simulator only)",
        lambda s: s.udp_sessions,
    ),
    MetricSpec(
        "conduit_sim_udp_dropped_total",
        "counter",
        "UDP datagrams dropped by the per-client bandwidth cap (simulator only)",
        lambda s: s.udp_dropped,
    ),
    MetricSpec(
        "conduit_sim_leaked_bytes",
        "gauge",
        "Memory held by --leak-mb-per-s fault injection (simulator only)",
        lambda s: s.leaked_bytes,
    ),
    MetricSpec(
        "conduit_sim_session_bytes",
        "gauge",
        "Memory held for open client sessions by --session-mb fault injection (simulator only)",
        lambda s: s.session_bytes,
    ),
)


def format_value(value: float) -> str:
    """Integers without a decimal point, other floats in Python's shortest repr."""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def render_metrics(snap: Snapshot) -> str:
    """The full exposition body: HELP, TYPE and one sample per metric, newline terminated."""
    lines: list[str] = []
    for spec in METRICS:
        lines.append(f"# HELP {spec.name} {spec.help}")
        lines.append(f"# TYPE {spec.name} {spec.type}")
        lines.append(f"{spec.name} {format_value(spec.value(snap))}")
    return "\n".join(lines) + "\n"


def http_response(request_head: bytes, render: Callable[[], str]) -> bytes:
    """Answer one HTTP/1.x request head (bytes up to the blank line); always Connection: close.

    ``GET``/``HEAD /metrics`` get the exposition, ``/`` a pointer to it, anything else 404/405.
    """
    request_line = request_head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return _response(400, "Bad Request", "bad request\n", head=False)
    method, target = parts[0], parts[1].split("?", 1)[0]
    head = method == "HEAD"
    if method not in ("GET", "HEAD"):
        return _response(405, "Method Not Allowed", "method not allowed\n", head=False)
    if target == "/metrics":
        return _response(200, "OK", render(), head=head, content_type=CONTENT_TYPE)
    if target == "/":
        return _response(200, "OK", "conduit-sim: metrics at /metrics\n", head=head)
    return _response(404, "Not Found", "not found\n", head=head)


def _response(
    code: int,
    reason: str,
    body: str,
    head: bool,
    content_type: str = "text/plain; charset=utf-8",
) -> bytes:
    payload = body.encode("utf-8")
    header = (
        f"HTTP/1.1 {code} {reason}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return header if head else header + payload

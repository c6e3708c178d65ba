"""Active probes, asyncio: /metrics over HTTP and TCP connect + greeting, bounded by a timeout."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from conduitctl.fleet import BackendSpec
from conduitctl.observe.probe import check_greeting
from conduitctl.observe.scrape import parse_metrics
from conduitctl.workloads import PROFILES, HealthSource

METRICS_LIMIT = 4 * 1024**2  # a /metrics page larger than this is not a station's
GREETING_LIMIT = 4096


@dataclass(frozen=True)
class ProbeOutcome:
    ok: bool
    reason: str = ""
    values: dict[str, float] = field(default_factory=dict)  # /metrics, when read


async def _connect(host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket connected to host:port, on the running loop (plain sockets:
    the stream machinery costs more than the probe itself, every second, per backend)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (host.strip("[]"), port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _read(sock: socket.socket, *, until: bytes | None, limit: int) -> bytes:
    """What the peer sends, up to `until` (included) or its end, at most `limit` bytes."""
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < limit:
        chunk = await loop.sock_recv(sock, min(65536, limit - len(data)))
        if not chunk:
            break
        data += chunk
        if until is not None and until in chunk:
            break
    return data


async def fetch_metrics(host: str, port: int, timeout: float) -> dict[str, float]:
    """GET /metrics; raises OSError/TimeoutError/ValueError on anything but a 200."""
    async with asyncio.timeout(timeout):  # not wait_for: no task per probe, every second
        sock = await _connect(host, port)
        try:
            request = f"GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
            await asyncio.get_running_loop().sock_sendall(sock, request)
            raw = await _read(sock, until=None, limit=METRICS_LIMIT)
        finally:
            sock.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        raise ValueError(f"HTTP {status[1].decode() if len(status) > 1 else '?'}")
    return parse_metrics(body.decode(errors="replace"))


async def greeting(
    host: str,
    port: int,
    timeout: float,
    prefix: str | None,
    busy: str | None = None,
    name: str | None = None,
) -> str:
    """Connect, and read the greeting line when the profile sends one; with `name`, the
    line must name that station (whoever answers on its port is not necessarily it)."""
    async with asyncio.timeout(timeout):
        sock = await _connect(host, port)
        try:
            if prefix is None:
                return ""
            raw = await _read(sock, until=b"\n", limit=GREETING_LIMIT)
        finally:
            sock.close()
    line = raw.split(b"\n", 1)[0].decode(errors="replace").strip()
    check_greeting(line, prefix, busy, name)
    return line


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__


async def probe(profile_name: str, backend: BackendSpec, timeout: float) -> ProbeOutcome:
    """One probe as the profile reads health: /metrics live, and the listener greets."""
    profile = PROFILES[profile_name]
    values: dict[str, float] = {}
    try:
        if profile.health == HealthSource.METRICS:
            values = await fetch_metrics(backend.host, backend.metrics_port, timeout)
            if values.get("conduit_is_live", 0) < 1:
                return ProbeOutcome(False, "conduit_is_live = 0", values)
        if backend.listen_port is not None:
            await greeting(backend.host, backend.listen_port, timeout, profile.greeting_prefix,
                           profile.busy_prefix, backend.name)  # fmt: skip
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
        return ProbeOutcome(False, _why(exc), values)
    return ProbeOutcome(True, "", values)


async def probe_all(
    profile_name: str, backends: list[BackendSpec], timeout: float
) -> dict[str, ProbeOutcome]:
    results = await asyncio.gather(*(probe(profile_name, b, timeout) for b in backends))
    return {b.name: r for b, r in zip(backends, results, strict=True)}

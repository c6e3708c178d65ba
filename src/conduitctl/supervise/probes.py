"""Active probes, asyncio: /metrics over HTTP and TCP connect + greeting, bounded by a timeout."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from conduitctl.fleet import BackendSpec
from conduitctl.observe.probe import check_greeting
from conduitctl.observe.scrape import parse_metrics
from conduitctl.workloads import PROFILES, HealthSource


@dataclass(frozen=True)
class ProbeOutcome:
    ok: bool
    reason: str = ""
    values: dict[str, float] = field(default_factory=dict)  # /metrics, when read


async def fetch_metrics(host: str, port: int, timeout: float) -> dict[str, float]:
    """GET /metrics; raises OSError/TimeoutError/ValueError on anything but a 200."""

    async def get() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()

    raw = await asyncio.wait_for(get(), timeout)
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

    async def talk() -> str:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            if prefix is None:
                return ""
            line = (await reader.readline()).decode(errors="replace").strip()
            check_greeting(line, prefix, busy, name)
            return line
        finally:
            writer.close()

    return await asyncio.wait_for(talk(), timeout)


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

"""Read a backend's Prometheus /metrics (Conduit's names) over HTTP, with a short timeout."""

from __future__ import annotations

import http.client
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

CONDUIT_METRICS = (
    "conduit_is_live",
    "conduit_connected_clients",
    "conduit_connecting_clients",
    "conduit_announcing",
    "conduit_bytes_uploaded",
    "conduit_bytes_downloaded",
    "conduit_uptime_seconds",
    "conduit_max_common_clients",
)


@dataclass(frozen=True)
class Scrape:
    ok: bool
    values: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def live(self) -> bool:
        return self.ok and self.values.get("conduit_is_live", 0) >= 1


def parse_metrics(text: str) -> dict[str, float]:
    """Sample name -> value, summing over labels (Conduit's gauges carry none)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def scrape(host: str, port: int, timeout: float = 0.5) -> Scrape:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        if response.status != 200:
            return Scrape(ok=False, error=f"HTTP {response.status}")
        return Scrape(ok=True, values=parse_metrics(body))
    except (OSError, http.client.HTTPException) as exc:
        return Scrape(ok=False, error=type(exc).__name__ if not str(exc) else str(exc))
    except ValueError as exc:  # not Prometheus text
        return Scrape(ok=False, error=f"bad metrics: {exc}")
    finally:
        conn.close()


def scrape_all(targets: dict[str, tuple[str, int]], timeout: float = 0.5) -> dict[str, Scrape]:
    """Every target at once: the slowest one bounds the wait, not the sum."""
    if not targets:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(targets), 32)) as pool:
        futures = {name: pool.submit(scrape, h, p, timeout) for name, (h, p) in targets.items()}
        return {name: future.result() for name, future in futures.items()}

"""Ready = serving: what every change waits for after it starts a backend."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from conduitctl.fleet import BackendSpec, desired_backends
from conduitctl.observe.probe import check_greeting, tcp_probe
from conduitctl.observe.scrape import scrape
from conduitctl.settings import Settings
from conduitctl.workloads import PROFILES, HealthSource

READY_TIMEOUT = 30.0


def is_ready(settings: Settings, backend: BackendSpec) -> bool:
    """Ready = serving: /metrics says live, or the listening port accepts (and greets, naming
    this station)."""
    profile = PROFILES[settings.workload.profile]
    metrics = profile.health == HealthSource.METRICS
    if metrics and not scrape(backend.host, backend.metrics_port, timeout=0.5).live:
        return False
    if backend.listen_port is None:
        return True
    probe = tcp_probe(backend.host, backend.listen_port, 0.5, greeting=profile.greeting)
    if not probe.ok:
        return False
    if profile.greeting_prefix is not None:  # ours, not whoever else answers on the port
        try:
            check_greeting(probe.detail or "", profile.greeting_prefix, profile.busy_prefix,
                           backend.name)  # fmt: skip
        except ValueError:
            return False
    return True


def wait_ready(settings: Settings, backends: list[BackendSpec], timeout: float) -> list[str]:
    """Wait until every backend is ready; the names still not ready after `timeout`."""
    pending = {b.name: b for b in backends}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name, backend in list(pending.items()):
            if is_ready(settings, backend):
                del pending[name]
        if pending:
            time.sleep(0.05)
    return sorted(pending)


def sessions(settings: Settings, name: str) -> int | None:
    """Connected + connecting clients from the backend's /metrics (None: unreadable)."""
    backend = next(b for b in desired_backends(settings) if b.name == name)
    result = scrape(backend.host, backend.metrics_port, timeout=1.0)
    if not result.ok:
        return None
    v = result.values
    return int(v.get("conduit_connected_clients", 0) + v.get("conduit_connecting_clients", 0))


@dataclass(frozen=True)
class Probes:
    """How a change reads its backends over the network: is one ready, wait until some are
    (the names still not ready after `timeout` s), how many sessions one serves. The real
    ones by default; unit tests pass in-memory ones."""

    ready: Callable[[Settings, BackendSpec], bool] = is_ready
    wait: Callable[[Settings, list[BackendSpec], float], list[str]] = wait_ready
    sessions: Callable[[Settings, str], int | None] = sessions


NETWORK = Probes()

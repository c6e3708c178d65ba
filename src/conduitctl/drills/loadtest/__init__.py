"""The load generator behind ``conduitctl loadtest``: thousands of sessions from one process.

Each simulated client connects to the target (TCP, or a UDP datagram socket with ``udp``),
waits for the station's greeting line (``CONDUIT-SIM <name> <id>``; ``BUSY <name>`` when the
station is full), then echoes traffic at a steady per-client rate until the run's duration
ends, verifying every byte that comes back. Connection starts are spread over a ramp so a
single-threaded client does not flood the target's accept backlog.

Scale: clients are asyncio Protocols driven by callbacks and timers (no task per client once
connected, no busy loops); one sweep every ``SWEEP_INTERVAL_S`` handles every timeout. One
process on 2 cores holds 10,000 low-rate TCP sessions. The client itself tops out at about
4,000-5,000 connects/s on one core: a ramp asking for more makes the measured latency include
the client's own queueing (the report's ``connections_per_second`` falls short of
clients / ramp when that happens).

The pure parts (``percentile``, ``balance_ratio``, ``classify_error``, ``parse_greeting``,
``echo_plan``, ``build_report``) are separate from the I/O so they can be tested as tables.

Modules: ``spec`` (what to run), ``report`` (results and the report), ``wire`` (greeting,
echo plan, payloads), ``session`` (one client's life, the run's shared state), ``clients``
(TCP and UDP), ``runner`` (``run_load``, ``run``, the fd limit). Import from this package.

Units: ``rate_kbps`` is kilobits per second per client (the unit of conduit-sim's
``--client-rate-kbps``: 32 kbps = 4 KB/s); report byte counts are payload bytes; ``mbps``
is megabits per second.
"""

from conduitctl.drills.loadtest.clients import (
    GREETING_LIMIT,
    JITTER,
    UDP_HELLO,
    UDP_HELLO_RETRY_S,
    TcpClient,
    UdpClient,
)
from conduitctl.drills.loadtest.report import (
    ClientResult,
    DropReason,
    FailureReason,
    LatencyStats,
    LoadReport,
    Outcome,
    Snapshot,
    Throughput,
    UdpStats,
    balance_ratio,
    build_report,
    max_failed_exceeded,
    percentile,
    percentiles,
)
from conduitctl.drills.loadtest.runner import (
    CLOSE_POLL_S,
    CLOSE_WAIT_S,
    FD_HEADROOM,
    LAUNCH_TICK_S,
    MAX_PENDING_CONNECTS,
    PROGRESS_INTERVAL_S,
    SWEEP_INTERVAL_S,
    ensure_fd_limit,
    run,
    run_load,
)
from conduitctl.drills.loadtest.session import UDP_LOSS_AFTER_S
from conduitctl.drills.loadtest.spec import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_ECHO_TIMEOUT_S,
    DEFAULT_GREETING_PREFIX,
    GRACE_EXTRA_S,
    RAMP_CONNECTS_PER_S,
    LoadSpec,
    default_ramp,
    front_target,
    parse_target,
)
from conduitctl.drills.loadtest.wire import (
    TCP_CHUNK,
    UDP_CHUNK,
    UDP_KEEPALIVE_S,
    GreetingKind,
    classify_error,
    echo_plan,
    parse_greeting,
)

__all__ = [
    "CLOSE_POLL_S",
    "CLOSE_WAIT_S",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_ECHO_TIMEOUT_S",
    "DEFAULT_GREETING_PREFIX",
    "FD_HEADROOM",
    "GRACE_EXTRA_S",
    "GREETING_LIMIT",
    "JITTER",
    "LAUNCH_TICK_S",
    "MAX_PENDING_CONNECTS",
    "PROGRESS_INTERVAL_S",
    "RAMP_CONNECTS_PER_S",
    "SWEEP_INTERVAL_S",
    "TCP_CHUNK",
    "UDP_CHUNK",
    "UDP_HELLO",
    "UDP_HELLO_RETRY_S",
    "UDP_KEEPALIVE_S",
    "UDP_LOSS_AFTER_S",
    "ClientResult",
    "DropReason",
    "FailureReason",
    "GreetingKind",
    "LatencyStats",
    "LoadReport",
    "LoadSpec",
    "Outcome",
    "Snapshot",
    "TcpClient",
    "Throughput",
    "UdpClient",
    "UdpStats",
    "balance_ratio",
    "build_report",
    "classify_error",
    "default_ramp",
    "echo_plan",
    "ensure_fd_limit",
    "front_target",
    "max_failed_exceeded",
    "parse_greeting",
    "parse_target",
    "percentile",
    "percentiles",
    "run",
    "run_load",
]

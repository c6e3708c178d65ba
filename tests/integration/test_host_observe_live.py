"""Host observers against this machine's kernel: real listeners, real /proc."""

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from conduitctl.observe import host
from conduitctl.observe.host import AcceptQueue, HostObserver, accept_queues


def _listener(
    stack: ExitStack, port: int = 0, backlog: int = 5, reuseport: bool = False
) -> socket.socket:
    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(backlog)
    return sock


def _connect(stack: ExitStack, port: int, count: int) -> None:
    for _ in range(count):
        stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=2))


def _wait_for(port: int, queued: int, proc: Path = host.PROC) -> dict[int, AcceptQueue]:
    """The handshake completes in the kernel right away; allow a moment all the same."""
    deadline = time.monotonic() + 2
    while True:
        found = accept_queues({port}, proc)
        if found.get(port, AcceptQueue(-1, None)).queued == queued or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def test_accept_queue_of_a_listener_nobody_accepts(stack: ExitStack):
    port = _listener(stack, backlog=5).getsockname()[1]
    assert accept_queues({port}) == {port: AcceptQueue(0, 5)}
    _connect(stack, port, 3)
    assert _wait_for(port, 3) == {port: AcceptQueue(queued=3, backlog=5)}


def test_reuseport_listeners_add_up(stack: ExitStack):
    first = _listener(stack, backlog=5, reuseport=True)
    port = first.getsockname()[1]
    _listener(stack, port=port, backlog=7, reuseport=True)
    _connect(stack, port, 4)
    found = _wait_for(port, 4)
    assert found == {port: AcceptQueue(4, 12)}


def test_proc_fallback_sees_the_same_queue_without_the_backlog(stack: ExitStack):
    port = _listener(stack, backlog=5).getsockname()[1]
    _connect(stack, port, 3)
    # /proc/self is this process's view of /proc: a path other than PROC forces the fallback.
    assert _wait_for(port, 3, Path("/proc/self")) == {port: AcceptQueue(3, None)}


def test_proc_fallback_finds_every_listener_netlink_finds(stack: ExitStack):
    """The early stop at the first connection row loses no listener on this kernel."""
    ports = [_listener(stack).getsockname()[1] for _ in range(3)]
    for port in ports:
        _connect(stack, port, 1)
    via_netlink = {(s.local_host, s.local_port) for s in host.listen_sockets()}
    via_proc = {(s.local_host, s.local_port) for s in host.listen_sockets(Path("/proc/self"))}
    assert {("127.0.0.1", p) for p in ports} <= via_netlink
    # Listeners can come and go between the two reads (other tests on this host): compare ours.
    assert {("127.0.0.1", p) for p in ports} <= via_proc


def test_a_port_nobody_listens_on_is_absent(stack: ExitStack):
    sock = stack.enter_context(socket.socket())
    sock.bind(("127.0.0.1", 0))  # bound, not listening
    assert accept_queues({sock.getsockname()[1]}) == {}


def test_host_observer_on_this_host():
    observer = HostObserver()
    first = observer.observe()
    assert 0 < first.mem_available_bytes <= first.mem_total_bytes
    assert 0.0 <= first.cpu_percent <= 100.0
    time.sleep(0.05)
    second = observer.observe()
    assert 0.0 <= second.cpu_percent <= 100.0
    if observer.nic is not None:
        assert second.nic_rx_mbps is not None and second.nic_rx_mbps >= 0
        assert second.nic_tx_mbps is not None and second.nic_tx_mbps >= 0


def test_the_kernel_keeps_only_the_ports_asked_for(stack: ExitStack):
    """The port-range bytecode runs in the kernel: listeners below, above and between the
    ports asked for are left out, and the answer matches the unfiltered dump's."""
    ports = sorted(_listener(stack).getsockname()[1] for _ in range(6))
    asked = {ports[1], ports[3]}  # ports[2] lies between them: in the range, not asked for
    filtered = host.listen_sockets(ports=asked)
    assert {s.local_port for s in filtered} == asked
    whole = [s for s in host.listen_sockets() if s.local_port in asked]
    assert sorted(filtered, key=repr) == sorted(whole, key=repr)


def test_one_kept_socket_answers_look_after_look(stack: ExitStack):
    port = _listener(stack, backlog=5).getsockname()[1]
    observer = HostObserver()
    assert observer.accept_queues({port}) == {port: AcceptQueue(0, 5)}
    _connect(stack, port, 2)
    deadline = time.monotonic() + 2
    while observer.accept_queues({port}) != {port: AcceptQueue(2, 5)}:
        assert time.monotonic() < deadline, observer.accept_queues({port})
        time.sleep(0.01)
    assert [observer.accept_queues({port}) for _ in range(50)] == [{port: AcceptQueue(2, 5)}] * 50

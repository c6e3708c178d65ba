import socket
import struct
import sys
from pathlib import Path

import pytest

from conduitctl.observe import host
from conduitctl.observe.host import (
    AcceptQueue,
    HostCpu,
    HostObserver,
    ListenSocket,
    NicRates,
    counter_delta,
    diag_request,
    parse_diag_messages,
    parse_meminfo,
    parse_proc_net_dev,
    parse_proc_net_tcp,
    parse_proc_stat_cpu,
    sum_accept_queues,
)

# Captured on a 6.18 kernel: listeners on 127.0.0.1:8080 (backlog 5, one queued) and
# 0.0.0.0:2024, then connections (ESTABLISHED 01, TIME_WAIT 06).
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 637 1 00000000ad4d1bd9 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 1819759 2 000000006f53bb9e 100 0 0 10 0
   2: 0100007F:71AD 0100007F:BB58 06 00000000:00000000 03:000009CF 00000000     0        0 0 3 00000000d438bff6
   3: 0100007F:8D9A 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 1819760 2 0000000098cc7068 20 0 0 10 -1
   4: 0100007F:1F90 0100007F:8D9A 01 00000000:00000000 00:00000000 00000000     0        0 0 1 00000000abfb5809 20 0 0 10 -1
"""  # noqa: E501

# [::1]:8443 listening with one connection queued, and both ends of that connection.
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:20FB 00000000000000000000000000000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 1819757 2 00000000a5fdea8c 100 0 0 10 0
   1: 00000000000000000000000001000000:D3FC 00000000000000000000000001000000:20FB 01 00000000:00000000 00:00000000 00000000     0        0 1819758 2 00000000daeb7b09 20 0 0 10 -1
"""  # noqa: E501

PROC_NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 73997494419 19269843    0    0    0     0          0         0 73997494419 19269843    0    0    0     0       0          0
  eth0: {rx} 7087    0    0    0     0          0         0   {tx}    4988    0    0    0     0       0          0
  eth1:123 1 0 0 0 0 0 0 456 1 0 0 0 0 0 0
"""  # noqa: E501

MEMINFO = """\
MemTotal:        4030000 kB
MemFree:          200000 kB
MemAvailable:    2500000 kB
Buffers:           10000 kB
Cached:           900000 kB
SwapTotal:             0 kB
"""

little_endian = pytest.mark.skipif(sys.byteorder != "little", reason="captured on x86")


# --- /proc/net/tcp ---------------------------------------------------------------------------


@little_endian
def test_parse_proc_net_tcp_reads_listeners_and_connections():
    rows = parse_proc_net_tcp(PROC_NET_TCP)
    assert len(rows) == 5
    first, second = rows[0], rows[1]
    assert (first.local_host, first.local_port, first.listening) == ("0.0.0.0", 2024, True)
    assert (second.local_host, second.local_port, second.rx_queue) == ("127.0.0.1", 8080, 1)
    # A listener's tx_queue is not its backlog on current kernels: hence sock_diag.
    assert second.tx_queue == 0
    assert second.inode == 1819759
    assert [r.state for r in rows] == [0x0A, 0x0A, 0x06, 0x01, 0x01]


@little_endian
def test_parse_proc_net_tcp6_decodes_the_address():
    rows = parse_proc_net_tcp(PROC_NET_TCP6)
    assert (rows[0].local_host, rows[0].local_port, rows[0].rx_queue) == ("::1", 8443, 1)
    assert rows[1].state == 0x01


def test_parse_proc_net_tcp_skips_header_and_garbage():
    assert parse_proc_net_tcp("") == []
    assert parse_proc_net_tcp("  sl  local_address rem_address st\nnot a row\n") == []
    assert parse_proc_net_tcp("   0: ZZ:1F90 0:0 0A 0:0 0:0 0 0 0 1\n") == []


def test_proc_fallback_stops_at_the_first_connection(tmp_path: Path):
    """Listeners come first; a row in another state ends them (a later 0A is not read),
    except CLOSE, which a listener being closed may still show."""
    rows = PROC_NET_TCP.splitlines()
    closing = rows[1].replace(" 0A ", " 07 ")
    late_listener = rows[2].replace(":1F90", ":0050")
    text = "\n".join([rows[0], closing, rows[2], rows[3], late_listener, *rows[4:]])
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(text + "\n")
    found = host.listen_sockets(tmp_path)
    assert [(s.local_port, s.queued, s.backlog) for s in found] == [(8080, 1, None)]


def test_accept_queues_from_the_proc_fallback(tmp_path: Path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(PROC_NET_TCP)
    (tmp_path / "net" / "tcp6").write_text(PROC_NET_TCP6)
    assert host.accept_queues({8080, 8443, 9999}, tmp_path) == {
        8080: AcceptQueue(1, None),
        8443: AcceptQueue(1, None),
    }
    assert host.accept_queues(set(), tmp_path) == {}


# --- sock_diag -------------------------------------------------------------------------------


def _nlmsg(kind: int, body: bytes) -> bytes:
    length = 16 + len(body)
    padding = b"\0" * ((4 - length % 4) % 4)
    return struct.pack("=IHHII", length, kind, 2, 1, 0) + body + padding


def _diag_msg(family: int, addr: str, port: int, rqueue: int, wqueue: int) -> bytes:
    raw = socket.inet_pton(family, addr).ljust(16, b"\0")
    return struct.pack(
        "=BBBB2s2s16s16sIQIIIII",
        family,
        0x0A,
        0,
        0,
        port.to_bytes(2, "big"),
        b"\0\0",
        raw,
        bytes(16),
        0,
        0,
        0,
        rqueue,
        wqueue,
        1000,
        42,
    )


def test_diag_request_asks_for_tcp_listeners_only():
    req = diag_request(socket.AF_INET6, seq=7)
    length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", req)
    family, proto, _ext, _pad, states = struct.unpack_from("=BBBBI", req, 16)
    assert (length, kind, seq) == (len(req), 20, 7) and len(req) == 16 + 56
    assert flags == 0x301  # REQUEST | DUMP
    assert (family, proto, states) == (socket.AF_INET6, socket.IPPROTO_TCP, 1 << 10)


def test_a_port_range_filter_follows_the_request():
    req = diag_request(socket.AF_INET, seq=1, ports={9001, 9010, 9005})
    assert struct.unpack_from("=I", req)[0] == len(req) == 16 + 56 + 4 + 16
    attr_len, attr_type = struct.unpack_from("=HH", req, 72)
    assert (attr_len, attr_type) == (20, 1)  # INET_DIAG_REQ_BYTECODE
    ops = [struct.unpack_from("=BBH", req, 76 + 4 * i) for i in range(4)]
    # port >= 9001 (yes: the next test; no: past the end), then port <= 9010
    assert ops == [(2, 8, 20), (0, 0, 9001), (3, 8, 12), (0, 0, 9010)]


def test_parse_diag_messages_keeps_only_the_ports_asked_for():
    data = _nlmsg(20, _diag_msg(socket.AF_INET, "127.0.0.1", 443, 3, 5)) + _nlmsg(
        20, _diag_msg(socket.AF_INET, "127.0.0.1", 444, 0, 5)
    )
    sockets, _ = parse_diag_messages(data, {444})
    assert [s.local_port for s in sockets] == [444]


def test_parse_diag_messages_reads_queue_and_backlog():
    data = _nlmsg(20, _diag_msg(socket.AF_INET, "127.0.0.1", 443, 3, 5)) + _nlmsg(
        20, _diag_msg(socket.AF_INET6, "::1", 8443, 0, 511)
    )
    sockets, done = parse_diag_messages(data)
    assert not done
    assert sockets == [
        ListenSocket("127.0.0.1", 443, 3, 5, inode=42),  # who holds it
        ListenSocket("::1", 8443, 0, 511, inode=42),
    ]
    assert parse_diag_messages(_nlmsg(3, b"\0\0\0\0")) == ([], True)


def test_parse_diag_messages_raises_on_a_netlink_error():
    with pytest.raises(OSError, match="sock_diag"):
        parse_diag_messages(_nlmsg(2, struct.pack("=i", -1) + bytes(16)))


def test_sum_accept_queues_adds_reuseport_sockets_and_families():
    sockets = [
        ListenSocket("0.0.0.0", 443, 2, 511),
        ListenSocket("0.0.0.0", 443, 1, 511),
        ListenSocket("::", 443, 0, 511),
        ListenSocket("127.0.0.1", 80, 4, None),
        ListenSocket("127.0.0.1", 22, 9, 128),
    ]
    assert sum_accept_queues(sockets, {443, 80, 8443}) == {
        443: (3, 1533),
        80: (4, None),
    }


# --- NIC -------------------------------------------------------------------------------------


def test_parse_proc_net_dev():
    counters = parse_proc_net_dev(PROC_NET_DEV.format(rx=1000, tx=2000))
    assert counters["eth0"] == (1000, 2000)
    assert counters["lo"] == (73997494419, 73997494419)
    assert counters["eth1"] == (123, 456)  # old kernels: no space after the colon


@pytest.mark.parametrize(
    ("previous", "current", "delta"),
    [
        (100, 250, 150),
        (2**32 - 100, 50, 150),  # a 32-bit counter wrapped
        (2**40, 1000, 1000),  # a 64-bit counter went back: reset, count from 0
        (5, 5, 0),
    ],
)
def test_counter_delta(previous: int, current: int, delta: int):
    assert counter_delta(previous, current) == delta


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _write_dev(proc: Path, rx: int, tx: int) -> None:
    (proc / "net").mkdir(exist_ok=True)
    (proc / "net" / "dev").write_text(PROC_NET_DEV.format(rx=rx, tx=tx))


def test_nic_rates_between_calls(tmp_path: Path):
    clock = FakeClock()
    rates = NicRates("eth0", clock=clock, proc=tmp_path)
    _write_dev(tmp_path, 0, 0)
    assert rates.rates() is None  # the first reading has nothing to compare with
    clock.now += 2.0
    _write_dev(tmp_path, 25_000_000, 5_000_000)  # 100 Mbps in, 20 Mbps out over 2 s
    assert rates.rates() == pytest.approx((100.0, 20.0))
    clock.now += 1.0
    _write_dev(tmp_path, 10, 5_000_000)  # rx: a 32-bit wrap seen from below 2**32
    rx, tx = rates.rates() or (None, None)
    assert rx == pytest.approx((2**32 - 25_000_000 + 10) * 8 / 1e6)
    assert tx == 0.0


def test_nic_rates_none_when_the_interface_is_missing(tmp_path: Path):
    _write_dev(tmp_path, 0, 0)
    rates = NicRates("wlan9", clock=FakeClock(), proc=tmp_path)
    assert rates.rates() is None and rates.rates() is None


def test_nic_defaults_to_the_default_route(tmp_path: Path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "route").write_text(
        "Iface\tDestination\tGateway\tFlags\n"
        "eth1\t0000A8C0\t00000000\t0001\n"
        "eth0\t00000000\t0100A8C0\t0003\n"
    )
    assert NicRates(proc=tmp_path).nic == "eth0"


# --- memory and CPU --------------------------------------------------------------------------


def test_parse_meminfo():
    assert parse_meminfo(MEMINFO) == (4030000 * 1024, 2500000 * 1024)
    old_kernel = MEMINFO.replace("MemAvailable:    2500000 kB\n", "")
    assert parse_meminfo(old_kernel) == (4030000 * 1024, (200000 + 10000 + 900000) * 1024)


def test_parse_proc_stat_cpu():
    text = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 100 0 50 800 50 0 0 0 0 0\n"
    assert parse_proc_stat_cpu(text) == (150, 1000)
    with pytest.raises(ValueError):
        parse_proc_stat_cpu("intr 1 2 3\n")


def test_host_cpu_between_calls(tmp_path: Path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 700 100 0 0 0 0 0\n")
    cpu = HostCpu(tmp_path)
    assert cpu.percent() == pytest.approx(20.0)  # since boot
    stat.write_text("cpu  175 0 100 725 100 0 0 0 0 0\n")  # +75 busy of +100
    assert cpu.percent() == pytest.approx(75.0)
    assert cpu.percent() == pytest.approx(75.0)  # no time passed: the last value stands


def test_host_observer_bundles_everything(tmp_path: Path):
    clock = FakeClock()
    (tmp_path / "meminfo").write_text(MEMINFO)
    (tmp_path / "stat").write_text("cpu  100 0 100 700 100 0 0 0 0 0\n")
    _write_dev(tmp_path, 0, 0)
    observer = HostObserver("eth0", nic_mbps=1000.0, clock=clock, proc=tmp_path)
    first = observer.observe()
    assert first.mem_total_bytes == 4030000 * 1024
    assert first.mem_available_bytes == 2500000 * 1024
    assert first.cpu_percent == pytest.approx(20.0)
    assert (first.nic, first.nic_rx_mbps, first.nic_speed_mbps) == ("eth0", None, 1000.0)
    clock.now += 1.0
    _write_dev(tmp_path, 1_250_000, 0)
    second = observer.observe()
    assert second.nic_rx_mbps == pytest.approx(10.0)
    assert second.nic_tx_mbps == 0.0


def test_a_tick_is_steady_only_when_all_is_well():
    from dataclasses import replace

    from conduitctl.observe.model import BackendObservation, FrontObservation, HostObservation, Tick

    good = BackendObservation(name="c-1", index=1, running=True, healthy=True, in_front=True)
    front = FrontObservation(kind="nginx", running=True, listening=True)
    host = HostObservation(mem_total_bytes=1, mem_available_bytes=1, cpu_percent=0.0)
    tick = Tick(ts=1.0, backends=(good,), host=host, front=front)
    assert tick.steady
    assert not replace(tick, backends=(replace(good, healthy=None),)).steady  # unprobed
    assert not replace(tick, backends=(replace(good, in_front=False),)).steady
    assert not replace(tick, front=replace(front, listening=False)).steady
    assert replace(tick, front=FrontObservation(kind="none", running=False, listening=False)).steady

"""Host observers (an edge, called every tick): NIC rates, memory, CPU, accept queues.

Each reads a small /proc file; the parsers are pure functions over its text. `proc` is
injectable so tests can point everything at captured files, and rates take an injected
monotonic clock.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from conduitctl.hostinfo import default_route_interface, nic_speed_mbps
from conduitctl.observe.model import HostObservation

PROC = Path("/proc")
TCP_LISTEN = 0x0A
TCP_CLOSE = 0x07
COUNTER32 = 2**32
COUNTER64 = 2**64

Clock = Callable[[], float]


# --- NIC rates -------------------------------------------------------------------------------


def parse_proc_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """Interface -> (rx_bytes, tx_bytes) from /proc/net/dev."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")  # old kernels print "eth0:123" with no space
        fields = rest.split()
        if not sep or len(fields) < 9:
            continue
        try:
            out[name.strip()] = (int(fields[0]), int(fields[8]))
        except ValueError:
            continue
    return out


def counter_delta(previous: int, current: int) -> int:
    """Growth of a kernel byte counter between two readings.

    A decrease from a value that fits in 32 bits is a 32-bit wrap (drivers and 32-bit
    kernels that still keep 32-bit counters); from a larger value, a reset (the interface was
    re-created): count from 0, never a negative or a 2**64-sized jump.
    """
    if current >= previous:
        return current - previous
    if previous < COUNTER32:
        return current + COUNTER32 - previous
    return current


class NicRates:
    """rx/tx Mbps of one interface between successive calls of `rates()`.

    The first call (and any call after the interface vanished) only takes a reading and
    returns None. Mbps are 10**6 bits per second, as NIC speeds are quoted.
    """

    def __init__(
        self, nic: str | None = None, *, clock: Clock = time.monotonic, proc: Path = PROC
    ) -> None:
        self.nic = nic or default_route_interface(str(proc / "net" / "route"))
        self._clock = clock
        self._path = proc / "net" / "dev"
        self._last: tuple[float, int, int] | None = None

    def rates(self) -> tuple[float, float] | None:
        if self.nic is None:
            return None
        try:
            counters = parse_proc_net_dev(self._path.read_text()).get(self.nic)
        except OSError:
            counters = None
        now = self._clock()
        if counters is None:
            self._last = None
            return None
        last, self._last = self._last, (now, *counters)
        if last is None or now <= last[0]:
            return None
        elapsed = now - last[0]
        rx = counter_delta(last[1], counters[0]) * 8 / 1e6 / elapsed
        tx = counter_delta(last[2], counters[1]) * 8 / 1e6 / elapsed
        return rx, tx


# --- memory and CPU -------------------------------------------------------------------------


def parse_meminfo(text: str) -> tuple[int, int]:
    """(total, available) bytes from /proc/meminfo.

    Kernels before 3.14 have no MemAvailable: MemFree + Buffers + Cached stands in.
    """
    kib: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            kib[key] = int(parts[0])
    total = kib.get("MemTotal", 0)
    available = kib.get("MemAvailable")
    if available is None:
        available = kib.get("MemFree", 0) + kib.get("Buffers", 0) + kib.get("Cached", 0)
    return total * 1024, available * 1024


def host_memory(proc: Path = PROC) -> tuple[int, int]:
    """(total, available) bytes of host memory."""
    return parse_meminfo((proc / "meminfo").read_text())


def parse_proc_stat_cpu(text: str) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat's first line.

    total is user..steal (guest time is already inside user and nice); idle and iowait are
    not busy, as in psutil and top.
    """
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:9]]
            total = sum(values)
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            return total - idle, total
    raise ValueError("no aggregate cpu line in /proc/stat")


class HostCpu:
    """Percent of all host CPUs busy (0..100) between successive calls of `percent()`.

    Keeps its own previous reading, unlike `psutil.cpu_percent(None)`, whose one
    process-wide reading any other caller would move. The first call reports the average
    since boot.
    """

    def __init__(self, proc: Path = PROC) -> None:
        self._path = proc / "stat"
        self._last = (0, 0)
        self._percent = 0.0

    def percent(self) -> float:
        busy, total = parse_proc_stat_cpu(self._path.read_text())
        d_busy, d_total = busy - self._last[0], total - self._last[1]
        self._last = (busy, total)
        if d_total > 0:
            self._percent = min(100.0, max(0.0, 100.0 * d_busy / d_total))
        return self._percent


# --- accept queues --------------------------------------------------------------------------
#
# A listening socket's accept queue (connections the kernel completed that the server has not
# accepted yet) and its capacity (the listen backlog). sock_diag netlink gives both, as `ss`
# shows them (Recv-Q, Send-Q), and the kernel dumps only its listening hash when asked for
# LISTEN alone: the cost does not grow with the number of clients. /proc/net/tcp is the
# fallback where netlink is refused: it has the queue (rx_queue) but not the backlog (its
# tx_queue of a listener is 0 on current kernels), and it lists every connection.

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_DIAG_REQ = struct.Struct("=BBBBI48x")  # family, protocol, ext, pad, states, sockid (zero)
_DIAG_MSG = struct.Struct("=BBBB2s2s16s16sIQIIIII")  # struct inet_diag_msg: 72 bytes
_BC_OP = struct.Struct("=BBH")  # struct inet_diag_bc_op: code, yes, no
_RTATTR = struct.Struct("=HH")  # len, type
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_S_GE = 2
INET_DIAG_BC_S_LE = 3
_DIAG_SPORT = struct.Struct("!4xH")  # its source port alone, to skip a socket before parsing


class _DiagMsg(NamedTuple):
    family: int
    state: int
    timer: int
    retrans: int
    sport: bytes  # network byte order
    dport: bytes
    src: bytes  # IPv4: the first 4 bytes
    dst: bytes
    ifindex: int
    cookie: int
    expires: int
    rqueue: int  # LISTEN: accept queue length
    wqueue: int  # LISTEN: backlog
    uid: int
    inode: int


class AcceptQueue(NamedTuple):
    queued: int
    backlog: int | None  # None: not known (the /proc fallback)


@dataclass(frozen=True)
class ListenSocket:
    local_host: str
    local_port: int
    queued: int  # connections waiting to be accepted
    backlog: int | None  # accept queue capacity; None: not known
    inode: int = 0  # the socket's inode: which process holds it (observe/owner.py)


@dataclass(frozen=True)
class TcpSocket:
    """One row of /proc/net/tcp or tcp6. For a LISTEN socket rx_queue is the accept queue's
    length; tx_queue is not its backlog (the kernel prints write_seq - snd_una, 0)."""

    local_host: str
    local_port: int
    state: int
    tx_queue: int
    rx_queue: int
    inode: int

    @property
    def listening(self) -> bool:
        return self.state == TCP_LISTEN


def _host_from_words(raw: bytes) -> str:
    """/proc/net/tcp prints addresses as 32-bit words in host byte order."""
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def parse_tcp_line(line: str) -> TcpSocket | None:
    """One socket row, or None for the header and anything unparsable."""
    fields = line.split()
    if len(fields) < 10 or not fields[0].endswith(":"):
        return None
    try:
        host, port = fields[1].split(":")
        tx, rx = fields[4].split(":")
        return TcpSocket(
            local_host=_host_from_words(bytes.fromhex(host)),
            local_port=int(port, 16),
            state=int(fields[3], 16),
            tx_queue=int(tx, 16),
            rx_queue=int(rx, 16),
            inode=int(fields[9]),
        )
    except ValueError:
        return None


def parse_proc_net_tcp(text: str) -> list[TcpSocket]:
    """Every socket row of /proc/net/tcp or /proc/net/tcp6 text."""
    return [s for s in map(parse_tcp_line, text.splitlines()) if s is not None]


def _proc_listeners(path: Path) -> Iterator[ListenSocket]:
    """The LISTEN rows of one /proc/net/tcp* file, read only as far as they go.

    The kernel lists its listening hash before the established one (since 4.4 nothing else
    is in it), so the first row in another state ends the listeners: stopping there spares
    the kernel formatting a row per connection. CLOSE rows do not stop it: a listener being
    closed can still be in that hash.
    """
    try:
        f = path.open("rb")
    except OSError:
        return
    with f:
        f.readline()  # header
        for raw in f:
            sock = parse_tcp_line(raw.decode("ascii", "replace"))
            if sock is None:
                continue
            if sock.state == TCP_LISTEN:
                yield ListenSocket(
                    sock.local_host, sock.local_port, sock.rx_queue, None, sock.inode
                )
            elif sock.state != TCP_CLOSE:
                return


def port_range_filter(low: int, high: int) -> bytes:
    """inet_diag bytecode (an INET_DIAG_REQ_BYTECODE attribute) that keeps the sockets whose
    local port is in [low, high]: the kernel skips the rest, so a look at a fleet's ports
    costs the same on a host with many other listeners. Each test is two 4-byte ops (the
    second carries the port); `yes` steps to the next test, `no` jumps past the end, which
    rejects the socket."""
    program = (
        _BC_OP.pack(INET_DIAG_BC_S_GE, 8, 20) + _BC_OP.pack(0, 0, low)
        + _BC_OP.pack(INET_DIAG_BC_S_LE, 8, 12) + _BC_OP.pack(0, 0, high)
    )  # fmt: skip
    return _RTATTR.pack(_RTATTR.size + len(program), INET_DIAG_REQ_BYTECODE) + program


def diag_request(family: int, seq: int = 1, ports: set[int] | None = None) -> bytes:
    """A sock_diag dump request for the TCP sockets of `family` in LISTEN state (on ports
    from min(ports) to max(ports), when given)."""
    body = _DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN)
    if ports:
        body += port_range_filter(min(ports), max(ports))
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    )
    return header + body


def parse_diag_messages(
    data: bytes, ports: set[int] | None = None
) -> tuple[list[ListenSocket], bool]:
    """The sockets in one netlink datagram of a sock_diag dump (only those on `ports`, when
    given: the hang watch reads them 10 times a second), and whether it was the last.

    Raises OSError for a netlink error message (the kernel refused the request).
    """
    sockets: list[ListenSocket] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        body = offset + _NLMSGHDR.size
        if kind == NLMSG_DONE:
            return sockets, True
        if kind == NLMSG_ERROR:
            (errno,) = struct.unpack_from("=i", data, body)
            raise OSError(-errno, f"sock_diag: {os.strerror(-errno)}")
        if (
            kind == SOCK_DIAG_BY_FAMILY
            and length - _NLMSGHDR.size >= _DIAG_MSG.size
            and (ports is None or _DIAG_SPORT.unpack_from(data, body)[0] in ports)
        ):
            msg = _DiagMsg._make(_DIAG_MSG.unpack_from(data, body))
            raw = msg.src[:4] if msg.family == socket.AF_INET else msg.src
            sockets.append(
                ListenSocket(
                    local_host=socket.inet_ntop(msg.family, raw),  # ipaddress is 10x slower
                    local_port=int.from_bytes(msg.sport, "big"),
                    queued=msg.rqueue,
                    backlog=msg.wqueue,
                    inode=msg.inode,
                )
            )
        offset += (length + 3) & ~3
    return sockets, False


class SockDiag:
    """One sock_diag netlink socket, kept open: the hang watch looks ten times a second, and
    a socket opened per look costs more than the look (measured: 0.38 ms against 0.14 ms of
    CPU a look at 8 backends). Not thread-safe; one per reader."""

    def __init__(self) -> None:
        self._nl: socket.socket | None = None

    def listeners(self, ports: set[int] | None = None) -> list[ListenSocket]:
        """Every TCP listener (IPv4 and IPv6) of this network namespace; only those on
        `ports` when given. Raises OSError when netlink refuses."""
        try:
            return self._dump(ports)
        except OSError:
            self.close()  # a half-read dump must not meet the next request
            raise

    def _dump(self, ports: set[int] | None) -> list[ListenSocket]:
        if self._nl is None:
            self._nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
            self._nl.settimeout(1.0)
        out: list[ListenSocket] = []
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            self._nl.send(diag_request(family, seq, ports))
            done = False
            while not done:
                sockets, done = parse_diag_messages(self._nl.recv(65536), ports)
                out.extend(sockets)
        return out

    def close(self) -> None:
        if self._nl is not None:
            self._nl.close()
            self._nl = None


def _diag_listeners(ports: set[int] | None = None) -> list[ListenSocket]:
    """Every TCP listener (IPv4 and IPv6) of this network namespace, via sock_diag; only
    those on `ports` when given."""
    diag = SockDiag()
    try:
        return diag.listeners(ports)
    finally:
        diag.close()


def sum_accept_queues(sockets: Iterable[ListenSocket], ports: set[int]) -> dict[int, AcceptQueue]:
    """port -> (queued, backlog) summed over the listeners on those ports (nginx with
    reuseport has one per worker; IPv4 and IPv6 listeners add up)."""
    out: dict[int, AcceptQueue] = {}
    for sock in sockets:
        if sock.local_port not in ports:
            continue
        queued, backlog = out.get(sock.local_port, AcceptQueue(0, 0))
        total = None if backlog is None or sock.backlog is None else backlog + sock.backlog
        out[sock.local_port] = AcceptQueue(queued + sock.queued, total)
    return out


def listen_sockets(
    proc: Path = PROC, ports: set[int] | None = None, diag: SockDiag | None = None
) -> list[ListenSocket]:
    """Every TCP listener (on `ports`, when given): sock_diag netlink, else /proc/net/tcp{,6}
    (backlog unknown).

    The /proc fallback reads this process's network namespace through `proc`; netlink always
    answers for the current one (a test's fake `proc` forces the fallback).
    """
    if proc == PROC:
        try:
            return diag.listeners(ports) if diag is not None else _diag_listeners(ports)
        except OSError:
            pass  # netlink refused (seccomp, an old kernel): /proc still has the queues
    net = proc / "net"
    return [*_proc_listeners(net / "tcp"), *_proc_listeners(net / "tcp6")]


def accept_queues(
    ports: set[int], proc: Path = PROC, diag: SockDiag | None = None
) -> dict[int, AcceptQueue]:
    """port -> (queued, backlog) of the TCP listeners on `ports`; a port nobody listens on
    is absent."""
    if not ports:
        return {}
    return sum_accept_queues(listen_sockets(proc, ports, diag), ports)


# --- the bundle -----------------------------------------------------------------------------


class HostObserver:
    """Everything the daemon reads from the host each tick, as one HostObservation.

    `nic` defaults to the default route's interface; `nic_mbps` (settings' host.nic_mbps) to
    the kernel's link speed, read once.
    """

    def __init__(
        self,
        nic: str | None = None,
        nic_mbps: float | None = None,
        *,
        clock: Clock = time.monotonic,
        proc: Path = PROC,
    ) -> None:
        self._proc = proc
        self._nic = NicRates(nic, clock=clock, proc=proc)
        self._cpu = HostCpu(proc)
        self.nic = self._nic.nic
        self.nic_mbps = nic_mbps or (nic_speed_mbps(self.nic) if self.nic else None)
        self._diag = SockDiag()

    def observe(self) -> HostObservation:
        """Raises OSError only if /proc/meminfo or /proc/stat cannot be read; a missing NIC
        just leaves the NIC fields None."""
        total, available = host_memory(self._proc)
        rates = self._nic.rates()
        return HostObservation(
            mem_total_bytes=total,
            mem_available_bytes=available,
            cpu_percent=self._cpu.percent(),
            nic=self.nic,
            nic_rx_mbps=rates[0] if rates else None,
            nic_tx_mbps=rates[1] if rates else None,
            nic_speed_mbps=self.nic_mbps,
        )

    def accept_queues(self, ports: set[int]) -> dict[int, AcceptQueue]:
        return accept_queues(ports, self._proc, self._diag)

"""The station's side of a session, read by the clients (pure): the greeting line, the echo
plan and payloads, and what a socket error means."""

from __future__ import annotations

import errno
import math
import random
from enum import Enum

from conduitctl.drills.loadtest.report import FailureReason
from conduitctl.drills.loadtest.spec import DEFAULT_GREETING_PREFIX

TCP_CHUNK = (64, 16384)  # bytes per echo round trip (min, max); about one second of traffic
UDP_CHUNK = (16, 1200)  # bytes per datagram (min, max): 1200 never fragments
UDP_KEEPALIVE_S = 5.0  # rate 0 over UDP: one small datagram this often keeps the session
SEQ_BYTES = 8

# Echo payloads are slices of this block, offset per client and per round trip, so a reply
# that belongs to another client or another round trip is caught as a mismatch.
_PATTERN = random.Random(0x10AD).randbytes(65536 + TCP_CHUNK[1])

_FD_ERRNOS = {errno.EMFILE, errno.ENFILE}
_REFUSED_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH}
_RESET_ERRNOS = {errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE}


def classify_error(exc: BaseException | None) -> FailureReason:
    """Map a connect/read error to a failure reason."""
    if isinstance(exc, TimeoutError):
        return FailureReason.TIMEOUT
    if isinstance(exc, OSError):
        if exc.errno in _FD_ERRNOS:
            return FailureReason.FD_LIMIT
        if exc.errno in _REFUSED_ERRNOS:
            return FailureReason.REFUSED
        if exc.errno in _RESET_ERRNOS:
            return FailureReason.RESET
        if exc.errno == errno.ETIMEDOUT:
            return FailureReason.TIMEOUT
    return FailureReason.OTHER


class GreetingKind(Enum):
    OK = "ok"
    BUSY = "busy"
    BAD = "bad"


def parse_greeting(line: bytes, prefix: str = DEFAULT_GREETING_PREFIX) -> tuple[GreetingKind, str]:
    """One greeting line (newline optional) -> (kind, backend name or "")."""
    words = line.decode("utf-8", "replace").split()
    if len(words) >= 2 and words[0] == prefix:
        return GreetingKind.OK, words[1]
    if words and words[0] == "BUSY":
        return GreetingKind.BUSY, words[1] if len(words) > 1 else ""
    return GreetingKind.BAD, ""


def echo_plan(rate_kbps: float, udp: bool) -> tuple[int, float]:
    """(bytes per send, seconds between sends) for one client; (0, inf) = no traffic.

    About one second of traffic per send, clamped to the chunk bounds; the interval then
    follows from the rate. UDP at rate 0 still sends a small keepalive.
    """
    low, high = UDP_CHUNK if udp else TCP_CHUNK
    if rate_kbps <= 0:
        return (low, UDP_KEEPALIVE_S) if udp else (0, math.inf)
    rate = rate_kbps * 1000 / 8
    chunk = min(high, max(low, round(rate)))
    return chunk, chunk / rate


def echo_payload(index: int, seq: int, size: int) -> bytes:
    offset = (index * 7919 + seq * 104729) % (len(_PATTERN) - size)
    return _PATTERN[offset : offset + size]


def udp_echo_payload(index: int, seq: int, size: int) -> bytes:
    return seq.to_bytes(SEQ_BYTES, "big") + echo_payload(index, seq, size - SEQ_BYTES)

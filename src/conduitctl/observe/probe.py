"""Active probes: a TCP connect (and greeting, for profiles that send one)."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass


def check_greeting(line: str, prefix: str, busy: str | None, name: str | None) -> None:
    """A greeting (or a full station's busy line: it answered, so it is alive) that names
    the station `name`; raises ValueError for anything else."""
    if not line.startswith(prefix.strip()) and not (busy and line.startswith(busy)):
        raise ValueError(f"greeting {line[:40]!r}" if line else "closed without greeting")
    words = line.split()
    said = words[1] if len(words) > 1 else ""
    if name is not None and said != name:
        raise ValueError(f"greeting names {said[:40]!r}, not {name}: another station answers")


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency_ms: float | None = None
    detail: str | None = None  # the greeting, or why it failed


def tcp_probe(host: str, port: int, timeout: float, greeting: bool = False) -> ProbeResult:
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            detail = None
            if greeting:
                sock.settimeout(max(timeout - (time.monotonic() - started), 0.01))
                line = sock.recv(256).split(b"\n", 1)[0].decode(errors="replace")
                if not line:  # a full station's BUSY line is an answer too: it is alive
                    return ProbeResult(ok=False, detail="closed without a greeting")
                detail = line
    except OSError as exc:
        return ProbeResult(ok=False, detail=exc.strerror or type(exc).__name__)
    return ProbeResult(ok=True, latency_ms=(time.monotonic() - started) * 1000, detail=detail)

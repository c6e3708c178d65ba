"""Read a backend's Prometheus /metrics (Conduit's names) over HTTP, with a short timeout."""

from __future__ import annotations

import http.client
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

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
    """Sample name -> value, summing over labels (Conduit's gauges carry none).

    Read as prometheus_client's text parser reads it (a counter family declared without
    `_total` has its samples named with it; raises ValueError on what it rejects). The common
    shape is read here, at a tenth of its cost: the supervisor reads every backend's page
    every tick. Anything else (quoted names, exemplars, odd labels or values) goes to it."""
    values = _parse_plain(text)
    if values is not None:
        return values
    from prometheus_client.parser import text_string_to_metric_families

    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\\n]|\\[\\"n])*"'
_ONE_LABEL = re.compile(_LABEL)
_LABELS = re.compile(rf"\{{(?:{_LABEL}(?:,{_LABEL})*)?\}}")
_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?Inf|NaN")
# The commonest line, `name value`, in one match.
_SAMPLE = re.compile(rf"({_NAME.pattern}) +({_FLOAT.pattern})")
# The sample names a family of each type owns (prometheus_client's grouping).
_OWNED = {
    "counter": ("",),
    "gauge": ("",),
    "summary": ("_count", "_sum", ""),
    "histogram": ("_count", "_sum", "_bucket"),
}


def _number(token: str) -> float | None:
    if _INT.fullmatch(token):
        return int(token)
    return float(token) if _FLOAT.fullmatch(token) else None


def _plain_labels(line: str, brace: int) -> int | None:
    """The end of a canonical label block (`{a="x",b="y"}`) at `brace`; None otherwise."""
    block = _LABELS.match(line, brace)
    if block is None:
        return None
    names = [m.group(1) for m in _ONE_LABEL.finditer(block.group())]
    if len(set(names)) != len(names) or any(n.startswith("__") for n in names):
        return None
    return block.end()


def _parse_plain(text: str) -> dict[str, float] | None:
    """parse_metrics for plain names, canonical labels and plain numbers; None otherwise."""
    values: dict[str, float] = {}
    family, kind = "", "untyped"
    owned: tuple[str, ...] = ()
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if not line.isprintable():  # tabs and other separators: its tokenizer decides
            return None
        if line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) < 2 or parts[1] not in ("HELP", "TYPE"):
                continue
            if len(parts) < 3 + (parts[1] == "TYPE") or not _NAME.fullmatch(parts[2]):
                return None
            if '"' in parts[0] + parts[1] or (parts[1] == "TYPE" and " " in parts[3]):
                return None
            name = parts[2]
            if parts[1] == "HELP" and name != family:
                family, kind, owned = name, "untyped", (name,)
            elif parts[1] == "TYPE":
                family, kind = name, parts[3]
                owned = tuple(name + suffix for suffix in _OWNED.get(kind, ("",)))
            continue
        sample = _SAMPLE.fullmatch(line)
        if sample is not None:
            name, token = sample.group(1, 2)
            value = int(token) if _INT.fullmatch(token) else float(token)  # no timestamp
        else:
            read = _other_sample(line)
            if read is None:
                return None
            name, value = read
        if name not in owned:
            family, kind, owned = "", "untyped", ()  # an untyped sample of its own
        elif kind == "counter" and not family.endswith("_total"):
            name += "_total"
        values[name] = values.get(name, 0.0) + value
    return values


def _other_sample(line: str) -> tuple[str, float] | None:
    """A sample line with labels or a timestamp: its name and value; None when unusual."""
    brace = line.find("{")
    if "#" in line or '"' in (line if brace == -1 else line[:brace]):
        return None
    if brace == -1:
        name, _, rest = line.partition(" ")
    else:
        name = line[:brace].strip()
        end = _plain_labels(line, brace)
        if end is None:
            return None
        rest = line[end:]
    tokens = rest.split()
    if not _NAME.fullmatch(name) or not 1 <= len(tokens) <= 2:
        return None
    numbers = [_number(t) for t in tokens]
    value = numbers[0]
    if value is None or None in numbers:
        return None
    return name, value


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


SCRAPERS = 32  # threads at most; kept between calls (the supervisor asks every `status`)
_pool: ThreadPoolExecutor | None = None
_pool_made = threading.Lock()  # two `status` answers at once make one pool, not two


def scrape_all(targets: dict[str, tuple[str, int]], timeout: float = 0.5) -> dict[str, Scrape]:
    """Every target at once: the slowest one bounds the wait, not the sum."""
    global _pool
    if not targets:
        return {}
    with _pool_made:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=SCRAPERS, thread_name_prefix="scrape")
        pool = _pool
    futures = {name: pool.submit(scrape, h, p, timeout) for name, (h, p) in targets.items()}
    return {name: future.result() for name, future in futures.items()}

"""Import of conduit-manager's /opt/conduit/settings.conf (pure parsing and conversion).

The file is a sourced bash fragment: KEY=value or KEY="value" lines. Only the keys that mean
something to conduitctl are read; the rest are reported as ignored.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from conduitctl.errors import ConfigError

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Z][A-Z0-9_]*)=(.*)$")
_PER_CONTAINER = re.compile(r"^(MAX_CLIENTS|BANDWIDTH|CPUS|MEMORY)_(\d+)$")
_OVERRIDE_KEYS = {
    "MAX_CLIENTS": "max_clients",
    "BANDWIDTH": "bandwidth_mbps",
    "CPUS": "cpus",
    "MEMORY": "memory",
}
# conduit-manager's own defaults when a key is absent.
DEFAULTS = {"MAX_CLIENTS": "200", "BANDWIDTH": "5", "CONTAINER_COUNT": "1"}


@dataclass(frozen=True)
class Imported:
    """The conduit.toml data converted from settings.conf, and what was not carried over."""

    data: dict[str, Any]
    ignored: list[str] = field(default_factory=list)
    has_secrets: bool = False
    given: frozenset[str] = frozenset()  # the keys settings.conf set (not defaults)


def parse_settings_conf(text: str, source: str = "settings.conf") -> dict[str, str]:
    """KEY -> value for every assignment line; comments and blank lines skipped."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ConfigError(
                f"{source}:{number}: not a KEY=value line; fix or remove it"  # never its text
            )
        key, raw = match.groups()
        try:
            words = shlex.split(raw, comments=True)
        except ValueError:
            raise ConfigError(
                f"{source}:{number}: unbalanced quotes in the value of {key}; fix the quoting"
            ) from None
        values[key] = " ".join(words)
    return values


def _number(key: str, value: str, kind: type, source: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(
            f"{source}: {key} = {value!r}: expected a number; fix it in {source}"
        ) from None


def convert(values: dict[str, str], source: str = "settings.conf") -> Imported:
    """conduit-manager keys -> conduit.toml data (validated later by the Settings model)."""
    v = {**DEFAULTS, **{k: val for k, val in values.items() if val != ""}}
    used = {"MAX_CLIENTS", "BANDWIDTH", "CONTAINER_COUNT", "DOCKER_CPUS", "DOCKER_MEMORY"}
    workload: dict[str, Any] = {
        "profile": "psiphon-conduit",
        "max_clients": _number("MAX_CLIENTS", v["MAX_CLIENTS"], int, source),
        "bandwidth_mbps": _number("BANDWIDTH", v["BANDWIDTH"], float, source),
    }
    container: dict[str, Any] = {}
    if "DOCKER_CPUS" in v:
        container["cpus"] = _number("DOCKER_CPUS", v["DOCKER_CPUS"], float, source)
    if "DOCKER_MEMORY" in v:
        container["memory"] = v["DOCKER_MEMORY"]

    overrides: dict[str, dict[str, Any]] = {}
    for key, value in v.items():
        match = _PER_CONTAINER.match(key)
        if not match:
            continue
        used.add(key)
        name, index = match.groups()
        target = _OVERRIDE_KEYS[name]
        converted: Any = value
        if target == "max_clients":
            converted = _number(key, value, int, source)
        elif target in ("bandwidth_mbps", "cpus"):
            converted = _number(key, value, float, source)
        overrides.setdefault(str(int(index)), {})[target] = converted
    if overrides:
        workload["overrides"] = dict(sorted(overrides.items(), key=lambda kv: int(kv[0])))

    alerts: dict[str, Any] = {}
    token, chat = v.get("TELEGRAM_BOT_TOKEN"), v.get("TELEGRAM_CHAT_ID")
    used |= {"TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID"}
    if token and chat:
        alerts["notifiers"] = [f"tgram://{quote(token, safe=':')}/{quote(chat, safe='-')}"]
    elif token or chat:
        missing = "TELEGRAM_CHAT_ID" if token else "TELEGRAM_BOT_TOKEN"
        raise ConfigError(f"{source}: Telegram alerts need both keys; {missing} is empty")

    data: dict[str, Any] = {
        "cluster": {
            "containers": _number("CONTAINER_COUNT", v["CONTAINER_COUNT"], int, source),
            "runtime": "docker",
        },
        "workload": workload,
        "front": {"kind": "none"},
    }
    if container:
        data["container"] = container
    if alerts:
        data["alerts"] = alerts
    ignored = sorted(k for k in values if k not in used)
    given = frozenset(k for k, val in values.items() if val != "")
    return Imported(data=data, ignored=ignored, has_secrets=bool(alerts), given=given)

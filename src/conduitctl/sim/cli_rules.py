"""The real Conduit CLI's rules, by version, so the simulator refuses what it refuses (stdlib).

Sources (Psiphon-Inc/conduit): `cli/cmd/start.go` and `cli/internal/config/config.go` at
release-cli-2.0.0 for 2.x; the same files before the 2.0 rename (commit 93821b6) for 1.x;
`cli/internal/config/set_overrides.go` for `--set`; `cli/main.go` for the exit code (1).

- 1.x: `-m/--max-clients` (1-1000), `-s/--stats-file`; no personal clients, no `--set`.
- 2.x: `-m/--max-common-clients` (0-1000), `--max-personal-clients` (needs a personal
  compartment), `--compartment-id`, `--set KEY=VALUE` from an allowlist; `--max-clients` and
  `--stats-file` are unknown flags.
- Both: `-b/--bandwidth` at least 1 Mbps, or -1 for unlimited.

Each refusal is the CLI's own message; cobra prints it as ``Error: <message>`` and the CLI
exits 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

VERSION_ENV = "CONDUIT_SIM_CLI_VERSION"
DEFAULT_VERSION = "2.0.0"
MAX_CLIENTS_LIMIT = 1000  # config.MaxClientsLimit
UNLIMITED_BANDWIDTH = -1.0
COMPARTMENT_FILE = "personal_compartment.json"

ONLY_V1 = ("--max-clients", "--stats-file", "-s")
ONLY_V2 = ("--max-common-clients", "--max-personal-clients", "--compartment-id", "--set")

# set_overrides.go: allowedSetKeys
SET_KEYS: Mapping[str, type] = {
    "EmitDiagnosticNotices": bool,
    "EmitInproxyProxyActivity": bool,
    "InproxyLimitDownstreamBytesPerSecond": int,
    "InproxyLimitUpstreamBytesPerSecond": int,
    "InproxyMaxClients": int,
    "InproxyMaxCommonClients": int,
    "InproxyMaxPersonalClients": int,
    "InproxyProxyPersonalCompartmentID": str,
    "InproxyReducedEndTime": str,
    "InproxyReducedLimitDownstreamBytesPerSecond": int,
    "InproxyReducedLimitUpstreamBytesPerSecond": int,
    "InproxyReducedMaxCommonClients": int,
    "InproxyReducedStartTime": str,
}
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def wrong_type(key: str, value: object) -> type | None:
    """The type an allowlisted `--set` key takes when `value` is not of it, else None (a bool
    is no integer here, as in the CLI's JSON). Shared with conduitctl's own config check."""
    kind = SET_KEYS[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        return int
    return kind if kind is not int and not isinstance(value, kind) else None


def is_hhmm(value: object) -> bool:
    """The reduced-hours times: HH:MM, 00:00-23:59 (UTC)."""
    return bool(_HHMM.match(str(value)))


class CliRefusal(Exception):
    """What the real CLI would refuse: its message; the simulator exits 1 with it."""


def major(version: str) -> int:
    """The major version of ``2.0.0``, ``1.5.0``, ``v2``; raises ValueError otherwise."""
    match = re.match(r"^v?(\d+)(\.\d+)*$", version.strip())
    if not match:
        raise ValueError(f"{version!r} is not a CLI version such as 2.0.0 or 1.5.0")
    return int(match.group(1))


def unknown_flag(argv: Sequence[str], version: str) -> str | None:
    """The first flag of `argv` this CLI version does not know (the other version's), or
    None. ``--flag=value`` counts as ``--flag``."""
    foreign = ONLY_V2 if major(version) < 2 else ONLY_V1
    for token in argv:
        if token == "--":
            return None
        if token.split("=", 1)[0] in foreign:
            return token.split("=", 1)[0]
    return None


def parse_set(entries: Sequence[str]) -> dict[str, object]:
    """``--set KEY=VALUE`` entries, as ParseSetOverrides checks them."""
    out: dict[str, object] = {}
    for entry in entries:
        key, sep, raw = entry.partition("=")
        if not sep:
            raise CliRefusal(f"invalid --set entry {entry!r}: expected key=value")
        key = key.strip()
        if not key:
            raise CliRefusal(f"invalid --set entry {entry!r}: key is empty")
        kind = SET_KEYS.get(key)
        if kind is None:
            raise CliRefusal(f"unsupported --set key {key!r}")
        value = _override_value(raw.strip())
        wrong = wrong_type(key, value)
        if wrong is not None:
            expected = {int: "integer", bool: "true or false", str: "string"}[wrong]
            raise CliRefusal(f"invalid --set value for {key}: expected {expected}")
        out[key] = value
    return out


def _override_value(text: str) -> object:
    """parseOverrideValue: JSON for true/false/null, numbers, quoted strings; else the text."""
    if text in ("true", "false", "null") or text[:1] in ('"', "{", "["):
        try:
            return json.loads(text)
        except ValueError:
            raise CliRefusal(f"invalid --set value {text!r}") from None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def check_start(
    version: str,
    *,
    max_common: int,
    common_given: bool,
    max_personal: int,
    compartment: str | None,
    bandwidth_mbps: float,
    bandwidth_given: bool,
    overrides: Mapping[str, object],
    limit: int | None = MAX_CLIENTS_LIMIT,
) -> None:
    """Raise CliRefusal with the CLI's message for a start it would refuse. `limit` None
    drops the CLI's 1000-client ceiling (the simulator's load tests need more a station)."""
    ceiling = limit if limit is not None else float("inf")
    if bandwidth_given and bandwidth_mbps != UNLIMITED_BANDWIDTH and bandwidth_mbps < 1:
        raise CliRefusal("bandwidth must be at least 1 Mbps (or -1 for unlimited)")
    if major(version) < 2:
        if common_given and not 1 <= max_common <= ceiling:
            raise CliRefusal(f"max-clients must be between 1 and {MAX_CLIENTS_LIMIT}")
        return
    common = overrides.get("InproxyMaxCommonClients", max_common)
    personal = overrides.get("InproxyMaxPersonalClients", max_personal)
    assert isinstance(common, int) and isinstance(personal, int)
    if not 0 <= common <= ceiling:
        raise CliRefusal(f"max-common-clients must be between 0 and {MAX_CLIENTS_LIMIT}")
    if not 0 <= personal <= ceiling:
        raise CliRefusal(f"max-personal-clients must be between 0 and {MAX_CLIENTS_LIMIT}")
    explicit = common_given or "InproxyMaxCommonClients" in overrides or personal > 0
    if common + personal <= 0 and explicit:
        raise CliRefusal(
            "at least one of --max-common-clients or --max-personal-clients must be greater than 0"
        )
    compartment = compartment or str(overrides.get("InproxyProxyPersonalCompartmentID") or "")
    if personal > 0 and not compartment.strip():
        raise CliRefusal("create compartment first with new-compartment-id command")
    for key in ("InproxyReducedStartTime", "InproxyReducedEndTime"):
        value = overrides.get(key)
        if value is not None and not is_hhmm(value):
            raise CliRefusal(f"invalid {key} {value!r}: expected HH:MM (UTC)")


def reduced_window(overrides: Mapping[str, object]) -> tuple[int, int] | None:
    """The reduced-hours window as (start, end) minutes after midnight UTC, or None."""
    start, end = overrides.get("InproxyReducedStartTime"), overrides.get("InproxyReducedEndTime")
    if not start or not end:
        return None
    return _minutes(str(start)), _minutes(str(end))


def in_window(window: tuple[int, int], minute_of_day: int) -> bool:
    """Whether `minute_of_day` (UTC) lies in [start, end); a window may wrap past midnight."""
    start, end = window
    if start <= end:
        return start <= minute_of_day < end
    return minute_of_day >= start or minute_of_day < end


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)

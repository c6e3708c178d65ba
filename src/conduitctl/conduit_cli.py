"""What the real Conduit CLI accepts, for the settings that reach its command line (pure).

The rules themselves live in `sim/cli_rules.py`: the simulator's image carries only its own
package, and conduitctl checks a config against the same table, so a value the CLI would
refuse is refused at `config check` (exit 2), not found in a crash loop after `up`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from conduitctl.sim.cli_rules import (
    MAX_CLIENTS_LIMIT,
    SET_KEYS,
    UNLIMITED_BANDWIDTH,
    is_hhmm,
    major,
    unknown_flag,
    wrong_type,
)

SetValue = bool | int | str
# Keys conduitctl sets through its own flags: a --set of them would be overridden or fight
# the supervisor's degradation, so each names the setting to use instead.
OWNED_KEYS: Mapping[str, str] = {
    "InproxyMaxClients": "workload.max_common_clients",
    "InproxyMaxCommonClients": "workload.max_common_clients",
    "InproxyLimitDownstreamBytesPerSecond": "workload.bandwidth_mbps",
    "InproxyLimitUpstreamBytesPerSecond": "workload.bandwidth_mbps",
}

__all__ = [
    "MAX_CLIENTS_LIMIT",
    "SET_KEYS",
    "bandwidth_problem",
    "cli_version",
    "dialect_in_help",
    "flag_problem",
    "set_argv",
    "set_problem",
]

# cobra's --version template: "conduit version 2.0.0"; a tag such as v2.0.0 or
# release-cli-2.0.0 (what `git describe` gives the CLI's Makefile) is read for its number.
_VERSION_LINE = re.compile(r"\bversion\s+\S*?(\d+\.\d+(?:\.\d+)?)\b")
_V1_FLAG = re.compile(r"--max-clients\b")


def cli_version(output: str) -> str | None:
    """The CLI version in what `conduit --version` printed, or None when it says none (a
    development build's "dev", as the published image's is, or not a Conduit CLI)."""
    match = _VERSION_LINE.search(output)
    return match.group(1) if match else None


def dialect_in_help(output: str) -> str | None:
    """What `conduit start --help` lists, as a major version: "2" when it has the 2.0 flags,
    "1" when only the 1.x one, None when neither (not a Conduit CLI)."""
    if "--max-common-clients" in output:
        return "2"
    return "1" if _V1_FLAG.search(output) else None


def flag_problem(image: str, version: str, argv: Sequence[str], dialect: str) -> str | None:
    """Why the CLI `version` in `image` would refuse `argv` (exit 1, "unknown flag"), naming
    the flag and the dialect it speaks; None when it takes them."""
    flag = unknown_flag(argv, version)
    if flag is None:
        return None
    speaks = "v2" if major(version) >= 2 else "v1"
    shown = version if "." in version else f"{version}.x"  # known from its help alone
    fix = (
        f'set workload.flag_dialect = "{speaks}"'
        if speaks != dialect
        else "drop it from workload.extra_args"
    )
    return f"image {image} runs the Conduit CLI {shown}, which rejects {flag}; {fix}"


def bandwidth_problem(mbps: float) -> str | None:
    """Why the CLI refuses `--bandwidth mbps`, or None: at least 1 Mbps, or -1."""
    if mbps == UNLIMITED_BANDWIDTH or mbps >= 1:
        return None
    return "must be at least 1 Mbps, or -1 for unlimited (the Conduit CLI refuses the rest)"


TAKES = {int: "takes a whole number", bool: "takes true or false", str: "takes a string"}


def set_problem(key: str, value: object) -> str | None:
    """Why `--set key=value` is refused, or None: the CLI's allowlist and each key's type."""
    kind = SET_KEYS.get(key)
    if key in OWNED_KEYS:
        return f"conduitctl sets it from {OWNED_KEYS[key]}; set that instead"
    if kind is None:
        allowed = ", ".join(sorted(set(SET_KEYS) - set(OWNED_KEYS)))
        return f"not a key the Conduit CLI's --set takes here; one of: {allowed}"
    wrong = wrong_type(key, value)
    if wrong is not None:
        return TAKES[wrong]
    if key.endswith("Time") and not is_hhmm(value):
        return "takes HH:MM, UTC (00:00-23:59)"
    return None


def set_argv(overrides: Mapping[str, SetValue]) -> list[str]:
    """``--set KEY=VALUE`` for each override, sorted by key (the args hash stays stable);
    booleans as the CLI parses them (true/false)."""
    out: list[str] = []
    for key in sorted(overrides):
        value = overrides[key]
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out += ["--set", f"{key}={text}"]
    return out

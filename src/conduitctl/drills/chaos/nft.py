"""The loss scenario's nftables table: its rules (pure), stale tables of dead runs, and the
`nft` calls that add and delete it."""

from __future__ import annotations

import logging
import math
import re
import subprocess
from collections.abc import Callable, Iterable

import psutil

from conduitctl.errors import BadInput, ConduitctlError, MissingDependency
from conduitctl.settings import Settings

log = logging.getLogger(__name__)

NFT_TABLE_PREFIX = "conduitctl_chaos_"
NFT_INSTALL = "apt-get install nftables"
NFT_EXPIRY_MARGIN_S = 10.0  # the loss rules match nothing this long after the fault's end


def nft_table_name(pid: int, token: str) -> str:
    """One table per run, named after its process so a later run can tell a stale one."""
    return f"{NFT_TABLE_PREFIX}{pid}_{token}"


def nft_ruleset(
    table: str,
    ports: Iterable[int],
    percent: float,
    expires_s: float,
    host: str = "127.0.0.1",
) -> str:
    """An nftables table that drops `percent` % of packets between `host` and itself to or
    from `ports` (TCP and UDP), on the output hook: loopback traffic of the fleet only.

    The ports sit in a set whose elements time out after `expires_s` (whole seconds, rounded
    up): should the drill die before it deletes the table, the rules match nothing by then.
    Raises ValueError on no ports, a percent outside (0, 100] or expires_s <= 0.
    """
    wanted = sorted(set(ports))
    if not wanted:
        raise ValueError("no ports to apply loss to")
    if not all(1 <= p <= 65535 for p in wanted):
        raise ValueError(f"ports must be 1-65535, got {wanted}")
    if not 0 < percent <= 100:
        raise ValueError(f"loss percent must be in (0, 100], got {percent}")
    if not expires_s > 0:
        raise ValueError(f"expires_s must be > 0, got {expires_s}")
    share = round(percent * 100)  # in basis points: 10 % -> 1000 of 10000
    ttl = math.ceil(expires_s)
    elements = ", ".join(f"{p} timeout {ttl}s" for p in wanted)
    match = f"ip saddr {host} ip daddr {host} meta l4proto {{ tcp, udp }}"
    drop = f"numgen random mod 10000 < {share} drop"
    return (
        f"table inet {table} {{\n"
        "  set ports {\n"
        "    type inet_service\n"
        "    flags timeout\n"
        f"    elements = {{ {elements} }}\n"
        "  }\n"
        "  chain output {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    {match} th dport @ports {drop}\n"
        f"    {match} th sport @ports {drop}\n"
        "  }\n"
        "}\n"
    )


_TABLE_LINE = re.compile(rf"^table inet ({NFT_TABLE_PREFIX}(\d+)_[0-9a-f]+)\s*$", re.M)


def chaos_tables(listing: str) -> list[str]:
    """The chaos tables in `nft list tables` output."""
    return [m.group(1) for m in _TABLE_LINE.finditer(listing)]


def stale_tables(listing: str, alive: Callable[[int], bool]) -> list[str]:
    """Chaos tables left by a run whose process is gone (killed before it could clean up)."""
    return [m.group(1) for m in _TABLE_LINE.finditer(listing) if not alive(int(m.group(2)))]


def loss_ports(settings: Settings) -> list[int]:
    """The backends' client ports; their metrics ports when the profile listens on nothing."""
    from conduitctl.fleet import desired_backends

    backends = desired_backends(settings)
    listen = [b.listen_port for b in backends if b.listen_port is not None]
    return listen or [b.metrics_port for b in backends]


def _nft(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["nft", *args], input=stdin, capture_output=True, text=True, timeout=10, check=False
        )
    except FileNotFoundError:
        raise MissingDependency(
            f"--scenario loss needs nftables (`nft`); install it: {NFT_INSTALL}"
        ) from None


def _nft_failed(result: subprocess.CompletedProcess[str], doing: str) -> ConduitctlError:
    detail = (result.stderr or result.stdout).strip().splitlines()
    last = detail[-1] if detail else f"exit code {result.returncode}"
    if "not permitted" in last.lower() or "permission" in last.lower():
        return BadInput(f"nft could not {doing} ({last}); run conduitctl chaos as root")
    return ConduitctlError(f"nft could not {doing}: {last}")


def nft_preflight() -> None:
    """nft is there and we may change the ruleset; delete tables of dead chaos runs."""
    listing = _nft(["list", "tables"])
    if listing.returncode != 0:
        raise _nft_failed(listing, "list the tables")
    for table in stale_tables(listing.stdout, psutil.pid_exists):
        log.info("deleting a stale chaos table (its run is gone)", extra={"table": table})
        _nft(["delete", "table", "inet", table])


def nft_add(ruleset: str) -> None:
    result = _nft(["-f", "-"], stdin=ruleset)
    if result.returncode != 0:
        raise _nft_failed(result, "add the loss table")


def nft_delete(table: str) -> None:
    result = _nft(["delete", "table", "inet", table])
    if result.returncode != 0 and "No such file" not in result.stderr:
        raise _nft_failed(result, f"delete table {table}")

"""Egress shaping script for the NIC: a tbf qdisc at host.sustained_fraction of the NIC (pure).

The script takes `apply`, `clear` or `show`, and the interface as an argument or in
$CONDUITCTL_TC_DEV (so tests can aim it at a veth inside their own network namespace).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conduitctl import __version__
from conduitctl.errors import BadInput
from conduitctl.fleet import desired_backends
from conduitctl.render.base import Rendered, RenderEnv, render_template
from conduitctl.settings import Settings

FILENAME = "conduitctl-tc.sh"
DEV_ENV = "CONDUITCTL_TC_DEV"
BURST_DIVISOR = 250  # rate/250 >= rate/HZ for HZ 250 and 1000
MIN_BURST_BYTES = 32 * 1024
LATENCY_MS = 50
# Linux interface names: at most 15 bytes, no slash or whitespace. Anything else would also be
# unsafe to write into a shell script.
_IFNAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}", re.ASCII)


@dataclass(frozen=True)
class Shaping:
    nic: str
    nic_mbps: float
    fraction: float
    rate_kbit: int
    burst_bytes: int

    @property
    def rate_bytes_per_s(self) -> int:
        return self.rate_kbit * 1000 // 8


def shaping(settings: Settings, env: RenderEnv) -> Shaping:
    """The tbf parameters: rate = fraction x NIC speed, burst = rate/250 bytes, min 32 KiB."""
    nic = settings.host.nic or env.nic
    if not _IFNAME.fullmatch(nic):  # match() would let a trailing newline through
        key = "host.nic" if settings.host.nic else "the detected NIC"
        raise BadInput(
            f"{key} = {nic!r}: not a network interface name (at most 15 letters, digits, "
            "'_.:@-'); set host.nic to one shown by `ip link`"
        )
    nic_mbps = settings.host.nic_mbps or env.nic_mbps
    if nic_mbps <= 0:
        raise BadInput(
            f"the speed of {nic} is unknown to the kernel; set host.nic_mbps (e.g. 1000)"
        )
    fraction = settings.host.sustained_fraction
    rate_kbit = max(1, round(fraction * nic_mbps * 1000))
    burst = max(rate_kbit * 1000 // 8 // BURST_DIVISOR, MIN_BURST_BYTES)
    return Shaping(
        nic=nic,
        nic_mbps=nic_mbps,
        fraction=fraction,
        rate_kbit=rate_kbit,
        burst_bytes=burst,
    )


def render(settings: Settings, env: RenderEnv) -> Rendered:
    s = shaping(settings, env)
    text = render_template(
        "tc.sh.j2",
        version=__version__,
        nic=s.nic,
        nic_mbps=f"{s.nic_mbps:g}",
        fraction_pct=f"{s.fraction * 100:g}",
        rate_mbit=f"{s.rate_kbit / 1000:g}",
        rate_kbit=s.rate_kbit,
        burst_bytes=s.burst_bytes,
        latency_ms=LATENCY_MS,
    )
    warnings = []
    caps = [b.bandwidth_mbps for b in desired_backends(settings)]
    if all(c > 0 for c in caps) and sum(caps) * 1000 > s.rate_kbit:
        warnings.append(
            f"the backends' bandwidth caps add up to {sum(caps):g} Mbit/s, above the shaped "
            f"{s.rate_kbit / 1000:g} Mbit/s: the shaper, not the caps, will be the limit"
        )
    return Rendered(text=text, filename=FILENAME, warnings=tuple(warnings))

"""The value types of conduit.toml that keep a value from breaking out of a rendered file.

Every string a setting holds may end up in nginx.conf, haproxy.cfg, a systemd unit, an
rsyslog or logrotate file, or a backend's command line. So each string type refuses control
characters (a newline there starts a new directive), hosts are IP literals, paths use a small
safe alphabet, and names are slugs. Each validator raises ValueError with a one-line fix;
settings.describe_validation_error turns it into `key = value: fix`.
"""

from __future__ import annotations

import ipaddress
import re
import string
import unicodedata
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

# Cc: C0/C1 controls, DEL; Cf: invisible formatting (bidi overrides, zero-width);
# Cs: lone surrogates; Zl, Zp: the Unicode line and paragraph separators.
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Letters, digits and punctuation that no target format (nginx, HAProxy, systemd, rsyslog,
# logrotate, shell) treats specially: no space, quote, `;`, `#`, `$`, `%`, `*` or braces.
_PATH_ALPHABET = frozenset(string.ascii_letters + string.digits + "._/+@,=:~-")
PATH_ALPHABET_SHOWN = "letters, digits and ._/+@,=:~-"
MAX_PATH = 1024


def control_character(value: str) -> str | None:
    """The first control (or invisible formatting) character in `value`, as U+XXXX; or None."""
    for ch in value:
        if unicodedata.category(ch) in _CONTROL_CATEGORIES:
            return f"U+{ord(ch):04X}"
    return None


def refuse_control(value: str) -> str:
    found = control_character(value)
    if found:
        raise ValueError(f"holds the control character {found}; remove it")
    return value


def check_host(value: str) -> str:
    """An IPv4 or IPv6 literal (IPv6 optionally in brackets), or `localhost`.

    Not a DNS name: these are addresses this host binds or proxies to on every reload, and
    a name would be resolved each time (and may change under us)."""
    refuse_control(value)
    if value == "localhost":
        return value
    bracketed = value.startswith("[") and value.endswith("]")
    bare = value[1:-1] if bracketed else value
    if "%" in bare:
        raise ValueError("an IPv6 zone (%IFACE) is not supported; give the address alone")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        raise ValueError(
            "not an IP address; use one such as 0.0.0.0, 127.0.0.1, :: or ::1 (or localhost)"
        ) from None
    if bracketed and address.version == 4:
        raise ValueError("brackets are for IPv6 only; write the IPv4 address alone")
    return value


def check_path(value: Path) -> Path:
    text = str(value)
    if len(text) > MAX_PATH:
        raise ValueError(f"longer than {MAX_PATH} characters; use a shorter path")
    bad = next((ch for ch in text if ch not in _PATH_ALPHABET), None)
    if bad is not None:
        shown = control_character(bad) or repr(bad)
        raise ValueError(f"holds {shown}; use only {PATH_ALPHABET_SHOWN} in a path")
    return value


# Any free-form string (image, extra_args, command, notifier URLs): no control characters.
Text = Annotated[str, AfterValidator(refuse_control)]
# front.bind, listener hosts, workload.bind_host.
HostAddress = Annotated[str, AfterValidator(check_host)]
# A directory or file path (relative ones are anchored by the loader).
SafePath = Annotated[Path, AfterValidator(check_path)]


def _matching(pattern: str, fix: str) -> AfterValidator:
    """A validator: the whole value matches `pattern` (ASCII only), else ValueError(fix)."""
    compiled = re.compile(pattern, re.ASCII)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(fix)
        return value

    return AfterValidator(check)


# cluster.name: backends, upstreams, HAProxy sections and syslog tags derive from it.
Slug = Annotated[
    str,
    _matching(r"[a-z][a-z0-9-]{0,30}", "use a lowercase letter, then up to 30 of a-z, 0-9 and '-'"),
]
# A docker image reference: registry/name:tag or @sha256:digest, nothing else.
ImageRef = Annotated[
    str,
    _matching(
        r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}",
        "not an image reference; use one such as ghcr.io/owner/image:tag",
    ),
]
# A Linux capability, as docker takes it (ALL, NET_RAW, CAP_NET_RAW).
Capability = Annotated[
    str, _matching(r"[A-Za-z_]{1,40}", "not a capability name; use one such as ALL or NET_RAW")
]
MAX_ID = 2**32 - 2  # 2**32 - 1 is -1 to the kernel: "leave it as it is", i.e. stay root


def _real_ids(value: str) -> str:
    """Each id in range, written plainly ("00:00" is "0:0": root, and checked as root)."""
    ids = [int(part) for part in value.split(":")]
    if any(i > MAX_ID for i in ids):
        raise ValueError(f"an id above {MAX_ID} names nobody (the kernel reads it as 'keep')")
    return ":".join(str(i) for i in ids)


# A uid, or uid:gid, in ASCII digits.
UserSpec = Annotated[
    str,
    _matching(r"[0-9]{1,10}(:[0-9]{1,10})?", "use a numeric UID or UID:GID, e.g. 1000:1000"),
    AfterValidator(_real_ids),
]
# A network interface name, as the kernel allows it (at most 15 bytes).
InterfaceName = Annotated[
    str,
    _matching(
        r"[A-Za-z0-9_.:@-]{1,15}",
        "not an interface name (at most 15 of letters, digits, '_.:@-'); see `ip link`",
    ),
]


def one_line(message: str) -> str:
    """`message` with every control character shown as an escape: an error is one line."""
    return "".join(
        ch if unicodedata.category(ch) not in _CONTROL_CATEGORIES else ascii(ch)[1:-1]
        for ch in message
    )

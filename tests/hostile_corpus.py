"""A hostile corpus over every string and number setting, and what each rendered file must be.

Each case puts one generated value into one setting of a fleet with an nginx/HAProxy front.
The value is either refused (ConfigError, one line) or the settings render, and then each
file has exactly the structure the defaults give it: no directive, section, unit key or
action more or less than expected. Shared by tests/unit (parsing) and tests/integration
(the real tools on a sample).
"""

from __future__ import annotations

import copy
import re
import types
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import crossplane
from hypothesis import strategies as st
from pydantic import BaseModel

from conduitctl.errors import ConfigError
from conduitctl.render import Rendered, render
from conduitctl.render.base import RenderEnv, host_port
from conduitctl.render.systemd import unit_escape
from conduitctl.settings import Settings, settings_from_dict
from conduitctl.statedir import StateDir

BASE: dict[str, Any] = {
    "cluster": {"name": "hc", "containers": 3, "state_dir": "/var/lib/conduitctl-hc"},
    "workload": {"profile": "sim", "extra_args": ["--verbose"]},
    "front": {"kind": "nginx", "listeners": ["tcp:443", "udp:5566", "tcp:127.0.0.1:8443"]},
    "alerts": {"notifiers": ["json://127.0.0.1:9/hook"]},
}
LISTENER_HOST = ("front", "listeners", "host")  # the third listener's host
LISTENER_PORT = ("front", "listeners", "port")  # and its port
OVERRIDE = ("workload", "overrides", "1")
TARGETS = ("nginx", "haproxy", "systemd", "rsyslog", "logrotate", "sysctl", "tc", "docker-daemon")

# What each format would read as the end of a value: every way out seen in the issue, and more.
INJECTIONS = [
    "0.0.0.0:2222; proxy_pass 127.0.0.1:22; }\nserver { listen 0.0.0.0:2222",
    "0.0.0.0\n}\nserver { listen 0.0.0.0:2222; proxy_pass 127.0.0.1:22; }",
    "[x] 1\n    stats socket /tmp/s mode 666 level admin\nfrontend f\n    bind 0.0.0.0:1",
    "/var/lib/x\nExecStartPre=/bin/sh -c id\nUser=root",
    '/var/log/x" action(type="omprog" binary="/bin/sh") file="/tmp/y',
    "/tmp/x\x00y",
    "a\rb",
    "a\u2028b",
    "a\u0085b",
    "a\u202eb",
    "a\tb",
    "127.0.0.1 #",
    "127.0.0.1;",
    "$remote_addr",
    "%h/x",
    "'quoted'",
    '"quoted"',
    "{ }",
    "/tmp/*.log",
    "fe80::1%eth0",
    "[127.0.0.1]",
    "127.000.000.001",
    "1.2.3",
    "-",
    "",
    "x" * 300,
]
# Values a setting of that kind could hold legitimately, some of them on the edge.
PLAIN = [
    "0.0.0.0",
    "127.0.0.1",
    "::",
    "::1",
    "[::1]",
    "localhost",
    "/var/lib/conduitctl-x",
    "/srv/a+b@c,d=e:f~g-h_i.j",
    "relative/dir",
    "conduit",
    "a-1",
    "ghcr.io/owner/image:tag",
    "NET_RAW",
    "1000:1000",
    "0",
    "eth0",
    "json://127.0.0.1:9/x",
    "--flag=value with spaces",
]


@dataclass(frozen=True)
class Field:
    path: tuple[str, ...]
    kind: str  # "text" or "number"
    is_list: bool


def _kind(annotation: Any) -> tuple[str | None, bool]:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return _kind(args[0])
    if origin is list:
        kind, _ = _kind(args[0])
        return kind, True
    if origin is typing.Literal or annotation in (str, Path):
        return "text", False
    if annotation in (int, float):
        return "number", False
    return None, False


def fields() -> list[Field]:
    """Every string and number setting (booleans aside), found from the model itself."""
    out: list[Field] = []

    def walk(model: type[BaseModel], prefix: tuple[str, ...]) -> None:
        for name, info in model.model_fields.items():
            kind, is_list = _kind(info.annotation)
            if kind is not None:
                out.append(Field((*prefix, name), kind, is_list))

    for section, info in Settings.model_fields.items():
        assert isinstance(info.annotation, type)
        walk(info.annotation, (section,))
    from conduitctl.settings import BackendOverride

    walk(BackendOverride, OVERRIDE)
    out += [Field(LISTENER_HOST, "text", False), Field(LISTENER_PORT, "number", False)]
    return out


FIELDS = fields()

_text = st.one_of(
    st.sampled_from(INJECTIONS),
    st.sampled_from(PLAIN),
    st.builds(str.__add__, st.sampled_from(PLAIN), st.sampled_from(INJECTIONS)),
    st.text(max_size=24),
    st.text(st.characters(codec="ascii"), max_size=24),
)
_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-2, max_value=70_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=100_000),
    st.sampled_from(["10s", "1.5m", "512m", "1e400g", "9" * 400 + "k", "-1", "inf", "nan"]),
    st.booleans(),
)


@st.composite
def cases(draw: st.DrawFn, *, plain_first: bool = False) -> tuple[Field, Any]:
    """(setting, value). `plain_first`: half the text values from PLAIN, so that more of a
    small sample renders and reaches the real tools."""
    field = draw(st.sampled_from(FIELDS))
    text = st.one_of(st.sampled_from(PLAIN), _text) if plain_first else _text
    value = draw(_number if field.kind == "number" else text)
    return field, value


def config_for(field: Field, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    if field.path in (LISTENER_HOST, LISTENER_PORT):
        listener = {"proto": "tcp", "host": "127.0.0.1", "port": 8443, field.path[-1]: value}
        data["front"]["listeners"][2] = listener
        return data
    *sections, key = field.path
    node = data
    for part in sections:
        node = node.setdefault(part, {})
    node[key] = [value] if field.is_list else value
    return data


def env_for(settings: Settings, root: Path = Path("/")) -> RenderEnv:
    """The RenderEnv hostinfo.render_env gives a cluster with its own state dir (no host
    facts). `root`: where that dir is re-rooted, so a real tool can open what it names."""
    state = root / settings.state_dir.relative_to("/")
    return RenderEnv(
        is_root=True,
        state_dir=state,
        log_dir=StateDir(state).log_dir(),
        run_dir=StateDir(state).run_dir(),
        config_path=root / "etc/conduitctl/conduit.toml",
    )


def render_all(settings: Settings, env: RenderEnv) -> dict[str, Rendered]:
    return {target: render(target, settings, env) for target in TARGETS}


def settle(field: Field, value: Any) -> Settings | None:
    """The settings for the case, or None when refused; a refusal must be one line."""
    try:
        settings = settings_from_dict(config_for(field, value))
    except ConfigError as exc:
        message = str(exc)
        assert message.strip() and message.isprintable(), (field, value, message)
        return None
    if not settings.state_dir.is_absolute():  # what load_settings does with a relative one
        anchored = Path("/etc/conduitctl") / settings.state_dir
        cluster = settings.cluster.model_copy(update={"state_dir": anchored})
        settings = settings.model_copy(update={"cluster": cluster})
    return settings


# --- nginx -----------------------------------------------------------------------------------


def nginx_directives(text: str, workdir: Path) -> dict[tuple[str, ...], list[list[str]]]:
    """Each directive's block path, e.g. ("stream", "server", "listen"), with the arguments
    of each of its occurrences; parsed by crossplane."""
    path = workdir / "nginx.conf"
    path.write_text(text)
    payload = crossplane.parse(str(path), single=True, check_ctx=False, check_args=False)
    assert payload["status"] == "ok", payload["errors"]
    found: dict[tuple[str, ...], list[list[str]]] = {}

    def walk(block: list[dict[str, Any]], parent: tuple[str, ...]) -> None:
        for d in block:
            here = (*parent, d["directive"])
            found.setdefault(here, []).append(d["args"])
            walk(d.get("block") or [], here)

    walk(payload["config"][0]["parsed"], ())
    return found


def expected_nginx(settings: Settings, default_set: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """The defaults' directives, less the two a number or choice leaves out."""
    expected = set(default_set)
    if settings.front.per_ip_limit == 0:
        expected -= {("stream", "limit_conn_zone"), ("stream", "server", "limit_conn"),
                     ("stream", "server", "limit_conn_log_level")}  # fmt: skip
    if settings.front.balance != "least_conn":
        expected.discard(("stream", "upstream", "least_conn"))
    return expected


def check_nginx_structure(
    settings: Settings, text: str, default_set: set[tuple[str, ...]], workdir: Path
) -> None:
    found = nginx_directives(text, workdir)
    assert set(found) == expected_nginx(settings, default_set)
    listeners = settings.front.listeners
    assert len(found[("stream", "server")]) == len(listeners)
    assert len(found[("stream", "upstream")]) == 2
    assert len(found[("stream", "upstream", "server")]) == 2 * settings.cluster.containers
    listens = sorted(a[0] for a in found[("stream", "server", "listen")])
    assert listens == sorted(host_port(x.host or settings.front.bind, x.port) for x in listeners)


# --- HAProxy ---------------------------------------------------------------------------------


def haproxy_sections(text: str) -> list[tuple[str, Counter[str]]]:
    """(section header, keyword counts) in order; a keyword is an indented line's first word."""
    sections: list[tuple[str, Counter[str]]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace():
            sections[-1][1][stripped.split()[0]] += 1
        else:
            sections.append((stripped, Counter()))
    return sections


def _section_kind(header: str, cluster: str) -> str:
    if header in ("global", "defaults", "frontend stats"):
        return header
    return {f"backend {cluster}": "backend", f"backend {cluster}_perip": "perip"}.get(
        header, "frontend"
    )


def check_haproxy_structure(settings: Settings, text: str, default: str) -> None:
    """The sections are exactly those the listeners call for, each with the defaults'
    keywords (one `stats` line in global: no second admin socket)."""
    c = settings.cluster.name
    per_ip = settings.front.per_ip_limit > 0
    tcp = [x for x in settings.front.listeners if x.proto.value == "tcp"]
    headers = ["global", "defaults", *(f"frontend {c}_tcp_{x.port}" for x in tcp)]
    headers += [f"backend {c}_perip"] if per_ip else []
    headers += [f"backend {c}", "frontend stats"]
    found = haproxy_sections(text)
    assert [h for h, _ in found] == headers
    baseline = {_section_kind(h, BASE["cluster"]["name"]): k for h, k in haproxy_sections(default)}
    for header, keywords in found:
        want = Counter(baseline[_section_kind(header, c)])
        if header.startswith("frontend ") and header != "frontend stats" and not per_ip:
            del want["tcp-request"]
        if header == f"backend {c}":
            want["server"] = settings.cluster.containers
            want["hash-type"] = 1 if settings.front.balance == "hash" else 0
        assert keywords == +want, (header, keywords, want)


# --- systemd, rsyslog, logrotate ---------------------------------------------------------------

_UNIT_LINE = re.compile(r"^(\[(Unit|Service|Install)\]|[A-Za-z]+=.*)$")
_HOME_ROOTS = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))
SERVICE_KEYS = {
    "Type", "ExecStart", "Restart", "RestartSec", "KillMode", "TimeoutStopSec", "LimitNOFILE",
    "OOMScoreAdjust", "SyslogIdentifier", "LogRateLimitIntervalSec", "LogRateLimitBurst",
    "Environment", "NoNewPrivileges", "ProtectSystem", "PrivateTmp", "ReadWritePaths",
}  # fmt: skip


def unit_keys(text: str) -> dict[str, Counter[str]]:
    keys: dict[str, Counter[str]] = {}
    section = ""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        assert _UNIT_LINE.match(line), line
        if line.startswith("["):
            section = line.strip("[]")
            keys[section] = Counter()
        else:
            keys[section][line.split("=", 1)[0]] += 1
    return keys


def check_systemd_structure(env: RenderEnv, text: str) -> None:
    keys = unit_keys(text)
    assert set(keys) == {"Unit", "Service", "Install"}
    service = keys["Service"]
    assert max(service.values()) == 1, service  # no key twice (a second User=, ExecStartPre=)
    want = set(SERVICE_KEYS)
    state = PurePosixPath(env.state_dir)
    if not any(state == r or r in state.parents for r in _HOME_ROOTS):
        want.add("ProtectHome")
    if state == PurePosixPath("/var/lib/conduitctl"):
        want.add("StateDirectory")
    assert set(service) == want
    exec_start = " ".join(
        unit_escape(w) for w in (env.conduitctl_bin, "daemon", "--config", str(env.config_path))
    )
    assert f"\nExecStart={exec_start}\n" in text


def check_rsyslog_structure(env: RenderEnv, text: str) -> None:
    actions = re.findall(r'action\(type="(\w+)" file="([^"]*)"', text)
    assert text.count("action(") == 2 and "omprog" not in text
    assert [a for a, _ in actions] == ["omfile", "omfile"]
    assert [Path(f) for _, f in actions] == [
        env.log_dir / "syslog-conduitctl.log",
        env.log_dir / "syslog-conduit.log",
    ]


def check_logrotate_structure(env: RenderEnv, text: str) -> None:
    body = [ln for ln in text.splitlines() if ln and not ln.lstrip().startswith("#")]
    opening = body.index("{")
    assert all(Path(ln.strip('"')).parent == env.log_dir for ln in body[:opening])
    assert body.count("{") == 1 and body[-1] == "}" and body.count("}") == 1

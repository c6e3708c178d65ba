"""Least privilege by default: a weaker container or a backend port off loopback is refused
with one line naming the key and the opt-out; with the opt-out it is warned about."""

from __future__ import annotations

import pytest

from conduitctl.errors import ConfigError
from conduitctl.preflight_rules import evaluate
from conduitctl.settings import hardening_warnings, parse_settings
from conduitctl.settings_file import settings_to_toml


@pytest.mark.parametrize(
    ("section", "line", "key", "opt_out"),
    [
        ("container", 'user = "0:0"', "container.user", "container.allow_weak_hardening"),
        ("container", "cap_drop = []", "container.cap_drop", "container.allow_weak_hardening"),
        ("container", "read_only = false", "container.read_only",
         "container.allow_weak_hardening"),
        ("container", "no_new_privileges = false", "container.no_new_privileges",
         "container.allow_weak_hardening"),
        ("workload", 'bind_host = "0.0.0.0"', "workload.bind_host", "workload.allow_public_bind"),
        ("workload", 'bind_host = "::"', "workload.bind_host",
         "workload.allow_public_bind"),
        ("workload", 'extra_args = ["--metrics-addr", "0.0.0.0:9000"]', "workload.extra_args",
         "workload.allow_public_bind"),
    ],
)  # fmt: skip
def test_weakened_defaults_are_refused_unless_named_then_warned(section, line, key, opt_out):
    text = f"[{section}]\n{line}\n"
    with pytest.raises(ConfigError) as refused:
        parse_settings(text, source="c.toml")
    message = str(refused.value)
    assert message.startswith(f"c.toml: {key} = ") and f"set {opt_out} = true" in message
    assert "\n" not in message

    allowed = parse_settings(f"{text}{opt_out.split('.')[1]} = true\n", source="c.toml")
    [warning] = hardening_warnings(allowed)
    assert warning.startswith(f"{key} = ") and f"({opt_out})" in warning
    assert parse_settings(settings_to_toml(allowed)) == allowed  # the opt-out is kept


def test_loopback_binds_and_the_defaults_need_no_opt_out():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert hardening_warnings(parse_settings(f'[workload]\nbind_host = "{host}"\n')) == []


def test_preflight_says_what_an_opt_out_let_through():
    from preflight_helpers import facts_of  # tests/unit

    settings = parse_settings('[container]\nuser = "0"\nallow_weak_hardening = true\n')
    [check] = [c for c in evaluate(settings, facts_of()) if c.name == "hardening"]
    assert (
        check.status == "warn" and "container.user = '0' runs the backends as root" in check.detail
    )


def test_non_ascii_text_survives_the_generated_conduit_toml():
    settings = parse_settings('[workload]\nextra_args = ["\U0001f600", "café"]\n')
    assert parse_settings(settings_to_toml(settings)) == settings

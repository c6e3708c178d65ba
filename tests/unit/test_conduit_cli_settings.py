"""The Conduit CLI 2.0 surface in conduit.toml: the renamed client count, the bandwidth rule,
`workload.set` from the CLI's allowlist, and the arguments they reach the CLI as."""

from __future__ import annotations

import pytest

from conduitctl.conduit_cli import set_argv, set_problem
from conduitctl.errors import ConfigError
from conduitctl.runtime.base import launch_specs
from conduitctl.settings import parse_settings
from conduitctl.settings_file import settings_to_toml


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_settings(text)
    return str(info.value)


def test_max_common_clients_is_the_name_and_max_clients_still_reads() -> None:
    new = parse_settings(
        "[workload]\nmax_common_clients = 70\n[workload.overrides.2]\nmax_common_clients = 9\n"
    )
    old = parse_settings("[workload]\nmax_clients = 70\n[workload.overrides.2]\nmax_clients = 9\n")
    assert new == old and new.workload.max_clients == 70
    assert new.workload.overrides[2].max_clients == 9
    text = settings_to_toml(old)  # written back under the CLI 2.0 name, and round-trips
    assert "max_common_clients = 70" in text and "\nmax_clients" not in text
    assert "one setting" in error_of("[workload]\nmax_clients = 7\nmax_common_clients = 7\n")


@pytest.mark.parametrize("mbps", ["0", "0.5", "-0.5", "0.99"])
def test_bandwidth_under_1_other_than_minus_1_is_refused(mbps: str) -> None:
    for text in (f"[workload]\nbandwidth_mbps = {mbps}\n",
                 f"[workload.overrides.1]\nbandwidth_mbps = {mbps}\n"):  # fmt: skip
        assert "must be at least 1 Mbps, or -1 for unlimited" in error_of(text)


@pytest.mark.parametrize("mbps", [-1, 1, 1.5, 40])
def test_bandwidth_the_cli_takes(mbps: float) -> None:
    assert parse_settings(f"[workload]\nbandwidth_mbps = {mbps}\n").workload.bandwidth_mbps == mbps


def test_workload_set_reaches_the_cli_as_set_flags_sorted() -> None:
    s = parse_settings(
        '[workload]\nset = { InproxyReducedStartTime = "22:00", InproxyReducedEndTime = "06:30",'
        " InproxyReducedMaxCommonClients = 20, EmitDiagnosticNotices = false }\n"
    )
    argv = launch_specs(s)[0].argv("/data")
    assert argv[argv.index("--set"):] == [
        "--set", "EmitDiagnosticNotices=false",
        "--set", "InproxyReducedEndTime=06:30",
        "--set", "InproxyReducedMaxCommonClients=20",
        "--set", "InproxyReducedStartTime=22:00",
    ]  # fmt: skip
    assert parse_settings(settings_to_toml(s)) == s
    # no set: the arguments, and so every backend's config hash, are as before
    plain = launch_specs(parse_settings(""))[0]
    assert "--set" not in plain.argv("/data")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("set = { InproxyNope = 1 }", "InproxyNope: not a key the Conduit CLI's --set takes"),
        ("set = { InproxyMaxCommonClients = 5 }", "sets it from workload.max_common_clients"),
        ("set = { InproxyLimitUpstreamBytesPerSecond = 5 }", "from workload.bandwidth_mbps"),
        ('set = { InproxyReducedMaxCommonClients = "5" }', "takes a whole number"),
        ("set = { InproxyReducedMaxCommonClients = true }", "takes a whole number"),
        ("set = { EmitDiagnosticNotices = 1 }", "takes true or false"),
        ('set = { InproxyReducedStartTime = "9pm" }', "takes HH:MM, UTC"),
        ("set = { InproxyReducedEndTime = 2200 }", "takes a string"),
        ('flag_dialect = "v1"\nset = { EmitDiagnosticNotices = true }', "the CLI 1.x has no --set"),
    ],
)
def test_a_set_the_cli_would_refuse_is_refused_here(text: str, expected: str) -> None:
    message = error_of(f"[workload]\n{text}\n")
    assert expected in message and "\n" not in message


def test_set_helpers() -> None:
    assert set_problem("EmitInproxyProxyActivity", True) is None
    assert set_argv({"b": 1, "a": True}) == ["--set", "a=true", "--set", "b=1"]

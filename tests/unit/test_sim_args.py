"""conduit-sim argument parsing: both Conduit dialects, defaults, and rejections (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conduitctl.sim.config import Address, clean_name, parse_address
from conduitctl.sim.main import FAULT_OPTIONS, parse_args

FAULT_ENV = [option.env for option in FAULT_OPTIONS]


@pytest.fixture(autouse=True)
def _no_fault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's own environment must not switch a fault on in these tests."""
    for name in FAULT_ENV:
        monkeypatch.delenv(name, raising=False)


def test_conduit_2_dialect() -> None:
    cfg = parse_args(
        [
            "start",
            "--max-common-clients",
            "50",
            "--bandwidth",
            "40",
            "--metrics-addr",
            "127.0.0.1:9090",
            "--data-dir",
            "/srv/c1",
            "-v",
        ]
    )
    assert cfg.max_clients == 50
    assert cfg.bandwidth_bps == 5_000_000
    assert cfg.metrics_addr == Address("127.0.0.1", 9090)
    assert cfg.data_dir == Path("/srv/c1")
    assert cfg.key_path == Path("/srv/c1/conduit_key.json")
    assert cfg.verbosity == 1
    assert cfg.client_rate_bps == 100_000


def test_v1_dialect_and_short_flags() -> None:
    cfg = parse_args(["start", "-m", "12", "-b", "-1", "-d", "d", "--max-clients", "9", "-s"])
    assert cfg.max_clients == 9  # the last of the aliases wins, as with any repeated flag
    assert cfg.bandwidth_bps == 0
    assert cfg.client_rate_bps is None
    assert cfg.stats_file == Path("d/stats.json")  # Conduit: relative to the data dir


def test_root_flags_before_the_subcommand() -> None:
    cfg = parse_args(["-d", "/data", "-v", "start", "-v"])
    assert cfg.data_dir == Path("/data")
    assert cfg.verbosity == 1


def test_defaults_follow_conduit() -> None:
    cfg = parse_args(["start"])
    assert cfg.max_clients == 200
    assert cfg.bandwidth_mbps == 5.0
    assert cfg.data_dir == Path("data")
    assert cfg.metrics_addr is None
    assert cfg.stats_file is None
    assert cfg.stats_interval == 10.0
    assert cfg.listen == ()
    assert (cfg.crash_after, cfg.hang_after, cfg.leak_mb_per_s, cfg.burn_cpu) == (None, None, 0, 0)
    assert cfg.session_mb == 0


def test_absolute_stats_file_and_repeated_listen() -> None:
    cfg = parse_args(
        ["start", "--stats-file", "/tmp/s.json", "--listen", ":443", "--listen", "[::1]:5566"]
    )
    assert cfg.stats_file == Path("/tmp/s.json")
    assert cfg.listen == (Address("0.0.0.0", 443), Address("::1", 5566))


def test_name_from_flag_env_or_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDUIT_SIM_NAME", "env name")
    assert parse_args(["start"]).name == "env-name"
    assert parse_args(["start", "--name", "flag"]).name == "flag"
    monkeypatch.delenv("CONDUIT_SIM_NAME")
    assert parse_args(["start"]).name  # the hostname


def test_fault_flags() -> None:
    cfg = parse_args(
        [
            "start",
            "--crash-after",
            "3",
            "--hang-after",
            "0",
            "--leak-mb-per-s",
            "2.5",
            "--burn-cpu",
            "1.5",
            "--session-mb",
            "8",
            "--client-rate-kbps",
            "64",
            "--udp-idle-timeout",
            "5",
        ]
    )
    assert (cfg.crash_after, cfg.hang_after, cfg.leak_mb_per_s, cfg.burn_cpu) == (3, 0, 2.5, 1.5)
    assert cfg.session_mb == 8
    assert cfg.client_rate_bps == 8000
    assert cfg.udp_idle_timeout == 5


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["stop"],
        ["start", "--max-common-clients", "-1"],
        ["start", "--max-common-clients", "1.5"],
        ["start", "--bandwidth", "-2"],
        ["start", "--bandwidth", "fast"],
        ["start", "--metrics-addr", "9090"],
        ["start", "--metrics-addr", "example.com:9090"],
        ["start", "--listen", "127.0.0.1:0"],
        ["start", "--stats-interval", "-1"],
        ["start", "--client-rate-kbps", "0"],
        ["start", "--crash-after", "-1"],
        ["start", "--burn-cpu", "65"],
        ["start", "--session-mb", "-1"],
        ["start", "--session-mb", "lots"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "conduit-sim" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ("CONDUIT_SIM_SESSION_MB", "session_mb", 8.0),
        ("CONDUIT_SIM_LEAK_MB_PER_S", "leak_mb_per_s", 2.5),
        ("CONDUIT_SIM_CRASH_AFTER", "crash_after", 0.0),
        ("CONDUIT_SIM_HANG_AFTER", "hang_after", 30.0),
        ("CONDUIT_SIM_BURN_CPU", "burn_cpu", 0.5),
    ],
)
def test_fault_defaults_from_environment(env: str, field: str, value: float) -> None:
    cfg = parse_args(["start"], environ={env: f" {value:g} "})
    assert getattr(cfg, field) == value


def test_fault_environment_is_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDUIT_SIM_SESSION_MB", "8")
    assert parse_args(["start"]).session_mb == 8


def test_fault_flag_wins_over_environment() -> None:
    environ = {"CONDUIT_SIM_SESSION_MB": "8", "CONDUIT_SIM_CRASH_AFTER": "5"}
    cfg = parse_args(["start", "--session-mb", "0", "--crash-after", "60"], environ=environ)
    assert (cfg.session_mb, cfg.crash_after) == (0, 60)


def test_fault_flag_overrides_a_broken_variable() -> None:
    cfg = parse_args(["start", "--burn-cpu", "1"], environ={"CONDUIT_SIM_BURN_CPU": "lots"})
    assert cfg.burn_cpu == 1


def test_empty_fault_variable_counts_as_unset() -> None:
    cfg = parse_args(["start"], environ=dict.fromkeys(FAULT_ENV, ""))
    assert (cfg.crash_after, cfg.hang_after, cfg.leak_mb_per_s, cfg.burn_cpu) == (None, None, 0, 0)
    assert cfg.session_mb == 0


@pytest.mark.parametrize(
    ("env", "text", "reason"),
    [
        ("CONDUIT_SIM_SESSION_MB", "8MB", "is not a number"),
        ("CONDUIT_SIM_SESSION_MB", "-1", "must be >= 0"),
        ("CONDUIT_SIM_LEAK_MB_PER_S", "x", "is not a number"),
        ("CONDUIT_SIM_CRASH_AFTER", "-5", "must be >= 0"),
        ("CONDUIT_SIM_HANG_AFTER", "soon", "is not a number"),
        ("CONDUIT_SIM_BURN_CPU", "65", "must be >= 0 and <= 64"),
    ],
)
def test_bad_fault_variable_exits_2_with_one_line(
    env: str, text: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["start"], environ={env: text})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"conduit-sim: error: environment variable {env}={text!r}: ")
    assert reason in err
    flag = next(option.flag for option in FAULT_OPTIONS if option.env == env)
    assert f"pass {flag}" in err  # names the fix


def test_help_names_every_fault_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["start", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    assert "defaults from the environment variable" in text
    for option in FAULT_OPTIONS:
        assert f"{option.flag} {option.metavar}" in text
        assert f"[${option.env}]" in text


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:80", Address("127.0.0.1", 80)),
        ("localhost:80", Address("127.0.0.1", 80)),
        (":9090", Address("0.0.0.0", 9090)),
        ("[::]:1", Address("::", 1)),
    ],
)
def test_parse_address(text: str, address: Address) -> None:
    assert parse_address(text) == address


def test_address_str_round_trips() -> None:
    assert str(Address("::1", 5)) == "[::1]:5"
    assert parse_address(str(Address("::1", 5))) == Address("::1", 5)


def test_clean_name_is_one_token() -> None:
    assert clean_name("  my  box \t1 ") == "my-box-1"
    assert clean_name("   ") == "conduit-sim"

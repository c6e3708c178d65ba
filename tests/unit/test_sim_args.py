"""conduit-sim argument parsing: both Conduit dialects, defaults, and rejections (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conduitctl.sim.cli_rules import in_window
from conduitctl.sim.config import Address, clean_name, parse_address
from conduitctl.sim.main import FAULT_OPTIONS, parse_args

FAULT_ENV = [option.env for option in FAULT_OPTIONS]
BANDWIDTH_RULE = "bandwidth must be at least 1 Mbps (or -1 for unlimited)"


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
    argv = ["--cli-version", "1.5.0", "start", "-m", "12", "-b", "-1", "-d", "d", "-s"]
    cfg = parse_args([*argv, "--max-clients", "9"])
    assert cfg.max_clients == 9  # the last of the aliases wins, as with any repeated flag
    assert cfg.bandwidth_bps == 0
    assert cfg.client_rate_bps is None
    assert cfg.stats_file == Path("d/stats.json")  # Conduit: relative to the data dir
    assert cfg.cli_version == "1.5.0"
    assert parse_args(argv[2:], environ={"CONDUIT_SIM_CLI_VERSION": "1.2.0"}).max_clients == 12


def test_root_flags_before_the_subcommand() -> None:
    cfg = parse_args(["-d", "/data", "-v", "start", "-v"])
    assert cfg.data_dir == Path("/data")
    assert cfg.verbosity == 1


def test_defaults_follow_conduit() -> None:
    cfg = parse_args(["start"])
    assert cfg.max_clients == 50  # config.DefaultMaxClients
    assert cfg.bandwidth_mbps == 40.0  # config.DefaultBandwidthMbps
    assert cfg.cli_version == "2.0.0"
    assert cfg.data_dir == Path("data")
    assert cfg.metrics_addr is None
    assert cfg.stats_file is None
    assert cfg.stats_interval == 10.0
    assert cfg.listen == ()
    assert (cfg.crash_after, cfg.hang_after, cfg.leak_mb_per_s, cfg.burn_cpu) == (None, None, 0, 0)
    assert cfg.session_mb == 0


def test_absolute_stats_file_and_repeated_listen() -> None:
    cfg = parse_args(
        [
            "--cli-version",
            "1",
            "start",
            "--stats-file",
            "/tmp/s.json",
            "--listen",
            ":443",
            "--listen",
            "[::1]:5566",
        ]
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
    ("argv", "message"),
    [
        # 2.0 renamed --max-clients and removed --stats-file (the break managers hit)
        (["start", "--max-clients", "10"], "unknown flag: --max-clients"),
        (["start", "-s"], "unknown flag: -s"),
        (["start", "--stats-file=x.json"], "unknown flag: --stats-file"),
        (["--cli-version", "1.5.0", "start", "--max-common-clients", "5"],
         "unknown flag: --max-common-clients"),
        (["--cli-version", "1.5.0", "start", "--set", "EmitDiagnosticNotices=true"],
         "unknown flag: --set"),
        (["start", "--bandwidth", "0.5"], BANDWIDTH_RULE),
        (["start", "--bandwidth", "0"], BANDWIDTH_RULE),
        (["start", "-m", "0", "--max-personal-clients", "0"],
         "at least one of --max-common-clients or --max-personal-clients must be greater than 0"),
        (["start", "--max-personal-clients", "3"],
         "create compartment first with new-compartment-id command"),
        (["start", "--set", "InproxyFoo=1"], "unsupported --set key 'InproxyFoo'"),
        (["start", "--set", "InproxyMaxCommonClients=many"],
         "invalid --set value for InproxyMaxCommonClients: expected integer"),
        (["start", "--set", "EmitDiagnosticNotices=1"],
         "invalid --set value for EmitDiagnosticNotices: expected true or false"),
        (["start", "--set", "nokey"], "invalid --set entry 'nokey': expected key=value"),
        (["start", "--set", "InproxyReducedStartTime=25:00"],
         "invalid InproxyReducedStartTime '25:00': expected HH:MM (UTC)"),
        (["--cli-version", "1.5.0", "start", "-m", "0"], "max-clients must be between 1 and 1000"),
    ],
)  # fmt: skip
def test_what_the_real_cli_refuses_exits_1_with_its_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv, environ={})
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == f"Error: {message}\n"


def test_what_2_0_accepts(tmp_path: Path) -> None:
    compartment = "A" * 42 + "E"  # 43 characters of unpadded base64
    cfg = parse_args(["start", "--max-personal-clients", "2", "--compartment-id", compartment,
                      "-b", "-1", "--set", "InproxyMaxCommonClients=7",
                      "--set", "InproxyReducedStartTime=22:30",
                      "--set", "InproxyReducedEndTime=06:00",
                      "--set", "InproxyReducedMaxCommonClients=3"], environ={})  # fmt: skip
    assert (cfg.max_clients, cfg.max_personal_clients, cfg.compartment_id) == (7, 2, compartment)
    assert (cfg.reduced_window, cfg.reduced_max_clients) == ((22 * 60 + 30, 6 * 60), 3)
    assert parse_args(["start", "-m", "9", "--set", "InproxyMaxCommonClients=7"]).max_clients == 9
    # a compartment saved in the data dir by new-compartment-id counts
    (tmp_path / "personal_compartment.json").write_text(f'{{"id": "{compartment}"}}')
    cfg = parse_args(["start", "-d", str(tmp_path), "--max-personal-clients", "1"], environ={})
    assert cfg.compartment_id == compartment


def test_version_and_a_bad_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--version"], environ={"CONDUIT_SIM_CLI_VERSION": "1.4.0"})
    assert (exit_info.value.code, capsys.readouterr().err) == (0, "conduit version 1.4.0\n")
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--cli-version", "two", "start"], environ={})
    assert exit_info.value.code == 2
    assert "--cli-version: 'two' is not a CLI version" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("window", "minute", "inside"),
    [((60, 120), 59, False), ((60, 120), 60, True), ((60, 120), 120, False),
     ((22 * 60, 6 * 60), 23 * 60, True), ((22 * 60, 6 * 60), 5 * 60, True),
     ((22 * 60, 6 * 60), 12 * 60, False)],
)  # fmt: skip
def test_the_reduced_window_may_wrap_past_midnight(
    window: tuple[int, int], minute: int, inside: bool
) -> None:
    assert in_window(window, minute) is inside


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

"""CLI acceptance: the installed `conduitctl`, run as a user would; output and exit codes."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

CONDUITCTL = str(Path(sys.executable).with_name("conduitctl"))


def run(
    *args: str, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CONDUITCTL, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "CONDUITCTL_CONFIG": "", **(env or {})},
        timeout=60,
    )


def test_plan_worked_case_json():
    result = run(
        "plan",
        "--cpus",
        "2",
        "--memory-gb",
        "4",
        "--nic-mbps",
        "1000",
        "--bandwidth-mbps",
        "3",
        "--active-ratio",
        "0.5",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["limits"]["network"]["clients"] == 533
    assert "1,066" in plan["limits"]["network"]["note"]
    assert plan["bottleneck"] == "memory"
    assert [w for w in plan["warnings"] if "public IP" not in w] == []


def test_plan_flags_review_configuration():
    result = run(
        "plan",
        "--cpus",
        "2",
        "--memory-gb",
        "4",
        "--nic-mbps",
        "1000",
        "--containers",
        "8",
        "--max-clients",
        "250",
    )
    assert result.returncode == 0
    assert "over-provisioned" in result.stdout
    assert "network (533)" in result.stdout
    assert "8 stations on one host share its public IP" in result.stdout


def test_plan_defaults_from_this_host():
    plan = json.loads(run("plan", "--json", "--nic-mbps", "1000").stdout)
    assert plan["inputs"]["cpus"] == os.cpu_count()
    assert plan["inputs"]["memory_gb"] > 0.1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["plan", "--containers", "0"], "--containers"),
        (["plan", "--active-ratio", "2"], "--active-ratio"),
        (["plan", "--bogus"], "--bogus"),
        (["render", "nope", "--config", "/dev/null"], "unknown render target 'nope'"),
        (["config", "check", "--config", "/nonexistent.toml"], "no such config"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, needle):
    result = run(*args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


LONG = "9" * 5000


@pytest.mark.parametrize(
    ("files", "args", "needle"),
    [
        ({"conduit.toml": b'[cluster]\nname = "caf\xe9"\n'}, ["config", "check"],
         "conduit.toml: not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8"),
        ({"settings.conf": b"CONTAINERS=3\nTELEGRAM_BOT_TOKEN=\xff123\n"},
         ["import-settings", "{dir}/settings.conf", "-o", "{dir}/out.toml"],
         "settings.conf: not UTF-8 text (byte 0xff on line 2)"),
        ({"conduit.toml": f"[cluster]\ncontainers = {LONG}\n".encode()}, ["config", "check"],
         "line 2 holds a number too long for any setting"),
        ({"conduit.toml": b""}, ["logs", f"c-{LONG}"], "(5002 characters); choose one of"),
        ({}, ["plan", "--cpus", "inf"], "--cpus inf: give a finite number"),
        ({}, ["plan", "--cpus", "1e308"], "--cpus 1e+308: give a finite number"),
        ({"conduit.toml": b"", "out": None}, ["render", "nginx", "-o", "{dir}/out"],
         "is a directory; give a file, e.g."),
    ],
    ids=["toml-not-utf8", "settings-conf-not-utf8", "5000-digit-setting", "5000-digit-index",
         "cpus-inf", "cpus-1e308", "render-into-a-directory"],
)  # fmt: skip
def test_hostile_input_exits_2_with_one_short_line(tmp_path, files, args, needle):
    for name, data in files.items():
        if data is None:
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_bytes(data)
    argv = [a.replace("{dir}", str(tmp_path)) for a in args]
    if "conduit.toml" in files:
        argv += ["--config", str(tmp_path / "conduit.toml")]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(*argv)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(result.stderr) < 300  # long values are shortened
    assert "123" not in result.stderr  # a file's bytes never echoed: they may be a token
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_config_check_bad_value_one_line(tmp_path):
    config = tmp_path / "conduit.toml"
    config.write_text("[workload]\nmax_clients = 5000\n")
    before = config.read_text()
    result = run("config", "check", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().startswith(
        f"error: {config}: workload.max_clients = 5000: allowed range is 1..1000"
    )
    assert config.read_text() == before  # nothing changed


def test_init_then_check(tmp_path):
    result = run("init", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = tmp_path / "conduit.toml"
    assert written.exists()
    assert json.loads(result.stdout)["path"] == "conduit.toml"
    check = run("config", "check", "--json", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    data = json.loads(check.stdout)
    assert data["valid"] is True
    plan = json.loads(result.stdout)["plan"]
    assert data["settings"]["cluster"]["containers"] == plan["containers"]
    assert data["settings"]["workload"]["max_clients"] == plan["max_clients_per_container"]
    # never overwrite silently
    again = run("init", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr


def test_init_writes_only_the_open_files_this_host_grants(tmp_path):
    """Under a hard limit of 4096 open files (and without CAP_SYS_RESOURCE to raise it: the
    process runtime's grant), init writes container.nofile and front.nofile within it, so
    its own config passes the preflight checks of both."""

    def low_limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))

    argv = [CONDUITCTL, "init", "--runtime", "process", "--profile", "sim"]
    if os.geteuid() == 0:  # root may raise its own limit: drop that capability first
        argv = ["capsh", "--drop=cap_sys_resource", "--", "-c", " ".join(argv)]
    env = {**os.environ, "CONDUITCTL_CONFIG": ""}
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env=env, preexec_fn=low_limit)  # fmt: skip
    assert result.returncode == 0, result.stderr
    check = json.loads(run("config", "check", "--json", cwd=tmp_path).stdout)["settings"]
    assert check["container"]["nofile"] == 4096
    assert check["front"]["nofile"] == 4096


def test_import_settings_writes_0600_and_never_prints_secret(tmp_path):
    conf = tmp_path / "settings.conf"
    conf.write_text(
        "MAX_CLIENTS=300\nCONTAINER_COUNT=4\nMAX_CLIENTS_2=100\n"
        'TELEGRAM_BOT_TOKEN="987:VERYSECRET"\nTELEGRAM_CHAT_ID="42"\n'
    )
    out = tmp_path / "conduit.toml"
    result = run("import-settings", str(conf), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "VERYSECRET" not in result.stdout + result.stderr
    assert "tgram://987:VERYSECRET/42" in out.read_text()
    check = run("config", "check", "--json", "--config", str(out))
    assert "VERYSECRET" not in check.stdout
    settings = json.loads(check.stdout)["settings"]
    assert settings["alerts"]["notifiers"] == ["tgram://***"]
    assert settings["cluster"]["containers"] == 4
    assert settings["workload"]["overrides"]["2"]["max_clients"] == 100


def test_import_settings_without_secrets_is_world_readable(tmp_path):
    conf = tmp_path / "settings.conf"
    conf.write_text("MAX_CLIENTS=300\n")
    out = tmp_path / "conduit.toml"
    assert run("import-settings", str(conf), "-o", str(out)).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_import_settings_missing_file(tmp_path):
    result = run("import-settings", str(tmp_path / "nope.conf"), "-o", str(tmp_path / "x.toml"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr
    assert not (tmp_path / "x.toml").exists()


def test_version_json():
    assert json.loads(run("version", "--json").stdout)["version"]


def test_preflight_fails_cleanly_when_a_front_port_is_taken(tmp_path, free_block):
    import socket

    from fleet_helpers import write_config

    base = free_block(140)
    config = write_config(tmp_path, base, name="pft", containers=2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base))  # the front's listener port
        taken.listen()
        result = run("preflight", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: preflight:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(base) in result.stdout
    assert list((tmp_path / "state/backups").iterdir())  # the settings were backed up

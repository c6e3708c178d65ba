"""The host-level outputs against their real tools: logrotate -d, rsyslogd -N1, /proc/sys,
systemd-analyze verify, bash -n, and the tc script applied to a veth in a throwaway netns.

Nothing here changes the machine: checks parse only, sysctls are looked up and never written,
and tc only ever runs inside the test's own network namespace.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conduitctl.errors import MissingDependency, ValidationFailed
from conduitctl.render import CheckResult, Rendered, RenderEnv, check_host, checker, render, tc
from conduitctl.settings import Settings, settings_from_dict

HOST_TARGETS = ("logrotate", "docker-daemon", "rsyslog", "sysctl", "systemd", "tc")

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "sim-haproxy-process": {
        "cluster": {"name": "edge", "containers": 4, "runtime": "process"},
        "workload": {"profile": "sim"},
        "front": {"kind": "haproxy", "listeners": ["tcp:443", "udp:127.0.0.1:18443"]},
        "container": {"log_max_size": "50m", "log_max_files": 7, "nofile": 131072},
        "host": {"nic_mbps": 333, "sustained_fraction": 0.75},
    },
}


def user_env(base: Path) -> RenderEnv:
    state = base / "state"
    return RenderEnv(
        is_root=False,
        state_dir=state,
        log_dir=state / "log",
        run_dir=state / "run",
        config_path=base / "conduit.toml",
    )


def installed_conduitctl() -> str:
    """This venv's conduitctl: a real executable for systemd-analyze to find."""
    found = Path(sys.executable).parent / "conduitctl"
    return str(found) if found.exists() else shutil.which("conduitctl") or "/bin/true"


def run_check(target: str, s: Settings, env: RenderEnv, workdir: Path) -> CheckResult:
    result = checker(target)(render(target, s, env), env, workdir)
    if result.skipped:
        pytest.skip(f"{target}: {result.skipped}")
    return result


def broken(target: str, s: Settings, env: RenderEnv, old: str, new: str) -> Rendered:
    out = render(target, s, env)
    assert old in out.text, f"{old!r} not in the {target} output"
    return dataclasses.replace(out, text=out.text.replace(old, new, 1))


# --- every output passes its own tool ------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("as_root", [True, False], ids=["root-env", "user-env"])
@pytest.mark.parametrize("target", HOST_TARGETS)
def test_rendered_output_passes_its_tool(
    target: str, variant: str, as_root: bool, tmp_path: Path
) -> None:
    s = settings_from_dict(VARIANTS[variant])
    env = dataclasses.replace(
        RenderEnv() if as_root else user_env(tmp_path), conduitctl_bin=installed_conduitctl()
    )
    result = run_check(target, s, env, tmp_path / "check")
    assert result.tool
    assert (tmp_path / "check" / render(target, s, env).filename).is_file()


def test_logrotate_debug_run_plans_the_rotation(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    env.log_dir.mkdir(parents=True)
    (env.log_dir / "stream-access.log").write_text("x" * 4096)
    (env.log_dir / "daemon.log").write_text("y" * 4096)
    s = settings_from_dict({"container": {"log_max_files": 4}})
    result = run_check("logrotate", s, env, tmp_path / "check")
    assert f"rotating pattern: {env.log_dir}/nginx-error.log" in result.output
    assert "4 rotations" in result.output
    assert f"considering log {env.log_dir}/stream-access.log" in result.output
    assert "daemon.log" not in result.output  # the daemon rotates its own
    assert (env.log_dir / "stream-access.log").read_text() == "x" * 4096  # -d changed nothing


def test_sysctl_keys_exist_and_missing_module_keys_are_notes(tmp_path: Path) -> None:
    out = render("sysctl", settings_from_dict({}), RenderEnv())
    result = run_check("sysctl", settings_from_dict({}), RenderEnv(), tmp_path)
    assert "ok   net.core.somaxconn" in result.output
    # A key this kernel lacks is reported, not refused; the file is never applied.
    extra = dataclasses.replace(out, text=out.text + "\n# why\n-net.ipv4.cctl_no_such_key = 1\n")
    noted = check_host.check_sysctl(extra, RenderEnv(), tmp_path)
    assert "note net.ipv4.cctl_no_such_key: not on this kernel" in noted.output


def test_sysctl_check_reads_a_fake_proc_tree(tmp_path: Path) -> None:
    proc = tmp_path / "proc-sys"
    (proc / "net/core").mkdir(parents=True)
    (proc / "net/core/somaxconn").write_text("4096\n")
    (proc / "net/ipv4").mkdir(parents=True)
    (proc / "net/ipv4/tcp_available_congestion_control").write_text("reno cubic\n")
    (proc / "net/ipv4/tcp_congestion_control").write_text("cubic\n")
    text = "# a\nnet.core.somaxconn = 4096\n# b\n-net.ipv4.tcp_congestion_control = bbr\n"
    rendered = Rendered(text=text, filename="90-test.conf")
    result = check_host.check_sysctl(rendered, RenderEnv(), tmp_path / "w", proc_sys=proc)
    assert "ok   net.core.somaxconn = 4096" in result.output
    assert "note bbr not loaded now: modprobe tcp_bbr" in result.output


def test_daemon_json_check_says_what_dockerd_could_validate(tmp_path: Path) -> None:
    result = run_check("docker-daemon", settings_from_dict({}), RenderEnv(), tmp_path)
    assert "json: parsed" in result.output
    assert "dockerd" in result.output  # either --validate ran or why it did not


def test_systemd_verify_notes_a_missing_binary_but_passes(tmp_path: Path) -> None:
    env = RenderEnv(conduitctl_bin="/nonexistent/cctl-test/conduitctl")
    result = run_check("systemd", settings_from_dict({}), env, tmp_path)
    assert "not installed here" in result.output


def test_shell_check_runs_bash_n(tmp_path: Path) -> None:
    result = run_check("tc", settings_from_dict({}), RenderEnv(), tmp_path)
    assert "bash -n: syntax ok" in result.output


# --- deliberately broken variants are refused ----------------------------------------------

ROOT = RenderEnv()

BROKEN: list[tuple[str, str, str]] = [
    ("logrotate", "rotate 3", "rotate many"),
    ("logrotate", "    daily", "    dailyish"),
    ("logrotate", "copytruncate\n", "copytruncate\n    postrotate\n"),  # never closed
    ("docker-daemon", '"max-file": "3"', '"max-file": 3'),
    ("docker-daemon", '"log-driver": "json-file",', '"log-driver": "json-file"'),
    ("docker-daemon", '"live-restore": true', '"live-restore": false'),
    ("rsyslog", "    stop\n", "    stopp\n"),
    ("rsyslog", 'type="omfile" file=', 'type="omfile" fiel='),
    ("rsyslog", "call conduitctl_files", "call no_such_ruleset"),
    ("sysctl", "net.core.somaxconn = ", "net.core.somaxconn "),
    ("sysctl", "vm.swappiness = 10", "vm.swappiness = 10\nvm.swappiness = 60"),
    ("systemd", "Type=simple", "Type=simpel"),
    ("systemd", "\nRestart=always", "\nRestartt=always"),
    ("systemd", "[Service]", "[Service"),
    ("systemd", "KillMode=process", "KillMode=gently"),
    ("tc", "esac\n", "\n"),
    ("tc", 'DEV="${2:-', 'DEV="$(2:-'),
]


@pytest.mark.parametrize(("target", "old", "new"), BROKEN, ids=[f"{t}:{n!r}" for t, _, n in BROKEN])
def test_broken_output_is_refused(target: str, old: str, new: str, tmp_path: Path) -> None:
    env = dataclasses.replace(ROOT, conduitctl_bin=installed_conduitctl())
    bad = broken(target, settings_from_dict({}), env, old, new)
    if target == "systemd" and shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    with pytest.raises(ValidationFailed) as caught:
        result = checker(target)(bad, env, tmp_path)
        if result.skipped:
            pytest.skip(f"{target}: {result.skipped}")
    message = str(caught.value)
    assert "\n" not in message, "the message is one line; details go in .output"
    assert caught.value.output


def test_unit_file_name_must_end_in_service(tmp_path: Path) -> None:
    out = dataclasses.replace(render("systemd", settings_from_dict({}), ROOT), filename="x.unit")
    with pytest.raises(ValidationFailed, match=r"must end in \.service"):
        check_host.check_systemd(out, ROOT, tmp_path)


def test_json_that_does_not_parse_is_refused(tmp_path: Path) -> None:
    out = render("docker-daemon", settings_from_dict({}), ROOT)
    with pytest.raises(ValidationFailed, match="not valid JSON"):
        check_host.check_json(dataclasses.replace(out, text=out.text[:-5]), ROOT, tmp_path)


# --- missing tools -------------------------------------------------------------------------


def test_missing_required_tool_names_the_apt_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    s = settings_from_dict({})
    with pytest.raises(MissingDependency, match="apt-get install -y logrotate"):
        check_host.check_logrotate(render("logrotate", s, ROOT), ROOT, tmp_path)
    with pytest.raises(MissingDependency, match="apt-get install -y rsyslog"):
        check_host.check_rsyslog(render("rsyslog", s, ROOT), ROOT, tmp_path)


def test_missing_optional_tool_is_a_skip_with_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = check_host.check_systemd(
        render("systemd", settings_from_dict({}), ROOT), ROOT, tmp_path
    )
    assert result.skipped and "systemd-analyze not installed" in result.skipped


# --- tc for real, inside a throwaway network namespace -------------------------------------


Runner = Callable[..., subprocess.CompletedProcess[str]]


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def netns(
    request: pytest.FixtureRequest,
) -> Iterator[Runner]:
    """A fresh network namespace holding veth0 <-> veth1; yields a runner for commands in it."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        pytest.skip("iproute2 (ip, tc) not installed")
    name = f"cctl-test-{secrets.token_hex(4)}"
    added = _ip("netns", "add", name)
    if added.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {added.stderr.strip()}")
    request.addfinalizer(lambda: _ip("netns", "del", name))

    def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", name, *argv],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=env,
        )

    for argv in (
        ("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1"),
        ("ip", "link", "set", "veth0", "up"),
        ("ip", "link", "set", "veth1", "up"),
    ):
        made = run(*argv)
        assert made.returncode == 0, made.stderr
    yield run


def _root_qdisc(run: Runner) -> dict[str, Any]:
    shown = run("tc", "-j", "qdisc", "show", "dev", "veth0", "root")
    assert shown.returncode == 0, shown.stderr
    qdiscs = json.loads(shown.stdout)
    return next(q for q in qdiscs if q.get("root"))


@pytest.mark.parametrize(
    "host",
    [{"nic_mbps": 1000, "sustained_fraction": 0.8}, {"nic_mbps": 333, "sustained_fraction": 0.75}],
)
def test_tc_script_shapes_a_veth_in_its_own_netns(
    host: dict[str, Any],
    netns: Runner,
    tmp_path: Path,
) -> None:
    s = settings_from_dict({"host": host})
    shaping = tc.shaping(s, RenderEnv())
    script = tmp_path / "conduitctl-tc.sh"
    script.write_text(render("tc", s, RenderEnv()).text)

    # The rendered default (eth0) does not exist in a fresh namespace: refused, nothing touched.
    missing = netns("bash", str(script), "apply")
    assert missing.returncode != 0
    assert "no such interface: eth0" in missing.stderr

    applied = netns("bash", str(script), "apply", "veth0")  # interface as an argument
    assert applied.returncode == 0, applied.stderr
    assert netns("bash", str(script), "apply", "veth0").returncode == 0  # idempotent
    qdisc = _root_qdisc(netns)
    assert qdisc["kind"] == "tbf"
    assert qdisc["options"]["rate"] * 8 == shaping.rate_kbit * 1000  # tc -j: bytes per second
    assert abs(qdisc["options"]["burst"] - shaping.burst_bytes) <= shaping.burst_bytes * 0.01

    by_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CONDUITCTL_TC_DEV": "veth0"}
    shown = netns("bash", str(script), "show", env=by_env)  # interface from the env var
    assert shown.returncode == 0, shown.stderr
    assert "qdisc tbf" in shown.stdout
    assert " rate " in shown.stdout and "Sent " in shown.stdout  # -s: with counters

    cleared = netns("bash", str(script), "clear", env=by_env)
    assert cleared.returncode == 0, cleared.stderr
    assert _root_qdisc(netns)["kind"] != "tbf"
    assert netns("bash", str(script), "clear", env=by_env).returncode == 0  # idempotent

    usage = netns("bash", str(script), "frobnicate", "veth0")
    assert usage.returncode == 2
    assert "usage:" in usage.stderr

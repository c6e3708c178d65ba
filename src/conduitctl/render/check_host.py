"""Checks of the host-level outputs by their own tools (an edge: runs subprocesses).

Each `check_X(rendered, env, workdir) -> CheckResult` writes the text into `workdir` and asks
the real tool. None of them changes the machine: `logrotate -d` rotates nothing (its state
file lives in `workdir`), `rsyslogd -N1` only parses, sysctl keys are looked up in /proc/sys
and never written, `systemd-analyze verify` loads the unit without installing it.

Raises ValidationFailed(one line, tool output) when the tool refuses the file, and
MissingDependency (with the apt-get line) when a required tool is absent. An optional tool
that is absent, or cannot run here, gives CheckResult(skipped=reason).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conduitctl.errors import MissingDependency, ValidationFailed
from conduitctl.render import CheckResult
from conduitctl.render.base import Rendered, RenderEnv

TIMEOUT_S = 60.0
PROC_SYS = Path("/proc/sys")


# --- helpers -------------------------------------------------------------------------------


def _write(rendered: Rendered, workdir: Path, mode: int = 0o644) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / rendered.filename
    path.write_text(rendered.text)
    path.chmod(mode)  # logrotate ignores config files writable by group or others
    return path


def _require(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise MissingDependency(f"{tool} not found; install it with: apt-get install -y {package}")
    return found


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a checking tool, stdout and stderr merged. A hang is a failed check, not a wait."""
    try:
        return subprocess.run(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else ""
        raise ValidationFailed(
            f"{Path(argv[0]).name} timed out after {TIMEOUT_S:g}s", out
        ) from None


def _first(lines: list[str]) -> str:
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    return f"{lines[0].strip()}{more}"


# --- logrotate -------------------------------------------------------------------------------


def check_logrotate(rendered: Rendered, env: RenderEnv, workdir: Path) -> CheckResult:
    """`logrotate -d -s STATE FILE`: debug mode parses and plans without rotating anything."""
    tool = _require("logrotate", "logrotate")
    path = _write(rendered, workdir)
    proc = _run([tool, "-d", "-s", str(workdir / "logrotate.state"), str(path)])
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    if errors or proc.returncode != 0:
        detail = _first(errors) if errors else f"exit status {proc.returncode}"
        raise ValidationFailed(f"logrotate refused {rendered.filename}: {detail}", proc.stdout)
    return CheckResult(tool="logrotate -d", output=proc.stdout)


# --- docker daemon.json ----------------------------------------------------------------------

_BOOL_KEYS = ("live-restore", "userland-proxy", "no-new-privileges")


def daemon_json_problems(doc: Any) -> list[str]:
    """What is wrong with a daemon.json document for conduitctl (pure; empty list: fine)."""
    if not isinstance(doc, dict):
        return ["the document is not a JSON object"]
    problems = []
    if doc.get("log-driver") != "json-file":
        problems.append(f"log-driver = {doc.get('log-driver')!r}: expected 'json-file'")
    opts = doc.get("log-opts")
    if not isinstance(opts, dict):
        problems.append("log-opts: missing (needs max-size and max-file)")
    else:
        for key in ("max-size", "max-file"):
            if key not in opts:
                problems.append(f"log-opts.{key}: missing")
        for key, value in opts.items():
            if not isinstance(value, str):
                problems.append(f"log-opts.{key} = {value!r}: dockerd wants a string, e.g. '3'")
    for key in _BOOL_KEYS:
        if key in doc and not isinstance(doc[key], bool):
            problems.append(f"{key} = {doc[key]!r}: expected true or false")
    if doc.get("live-restore") is not True:
        problems.append("live-restore: must be true (containers survive a dockerd restart)")
    ulimits = doc.get("default-ulimits", {})
    if not isinstance(ulimits, dict):
        problems.append("default-ulimits: expected an object of {Name, Soft, Hard}")
    else:
        for name, limit in ulimits.items():
            ok = (
                isinstance(limit, dict)
                and limit.get("Name") == name
                and isinstance(limit.get("Soft"), int)
                and isinstance(limit.get("Hard"), int)
                and limit["Soft"] <= limit["Hard"]
            )
            if not ok:
                problems.append(
                    f"default-ulimits.{name} = {limit!r}: expected "
                    f'{{"Name": "{name}", "Soft": N, "Hard": M}} with N <= M'
                )
    return problems


def check_json(rendered: Rendered, env: RenderEnv, workdir: Path) -> CheckResult:
    """json.loads + the keys daemon.json needs; `dockerd --validate` too where it exists (>= 23)."""
    path = _write(rendered, workdir)
    try:
        doc = json.loads(rendered.text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            f"{rendered.filename} is not valid JSON: {exc}", rendered.text
        ) from None
    problems = daemon_json_problems(doc)
    if problems:
        raise ValidationFailed(f"{rendered.filename}: {_first(problems)}", "\n".join(problems))
    notes = ["json: parsed; log-driver, log-opts, live-restore and ulimits as dockerd wants"]
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        notes.append("dockerd not installed: `dockerd --validate` not run")
    elif "--validate" not in _run([dockerd, "--help"]).stdout:
        notes.append("dockerd has no --validate (docker < 23): checked JSON and keys only")
    else:
        proc = _run([dockerd, "--validate", "--config-file", str(path)])
        if proc.returncode != 0:
            lines = proc.stdout.strip().splitlines() or [f"exit status {proc.returncode}"]
            raise ValidationFailed(f"dockerd refused {rendered.filename}: {lines[-1]}", proc.stdout)
        notes.append(f"dockerd --validate: {proc.stdout.strip() or 'ok'}")
    return CheckResult(tool="json", output="\n".join(notes))


# --- rsyslog ---------------------------------------------------------------------------------


def check_rsyslog(rendered: Rendered, env: RenderEnv, workdir: Path) -> CheckResult:
    """`rsyslogd -N1 -f FILE`: a config validation run; it opens no input and writes no log."""
    tool = _require("rsyslogd", "rsyslog")
    path = _write(rendered, workdir)
    proc = _run([tool, "-N1", "-f", str(path)])
    # The file's own path (a test's tmp dir may be called "...error...") is not a finding.
    said = proc.stdout.replace(str(path), rendered.filename)
    errors = [line for line in said.splitlines() if "error" in line.lower()]
    if proc.returncode != 0 or errors:
        detail = _first(errors) if errors else f"exit status {proc.returncode}"
        raise ValidationFailed(f"rsyslogd refused {rendered.filename}: {detail}", proc.stdout)
    return CheckResult(tool="rsyslogd -N1", output=proc.stdout)


# --- sysctl ----------------------------------------------------------------------------------

_SYSCTL_LINE = re.compile(r"^(-?)([A-Za-z0-9_][A-Za-z0-9_./:@-]*)\s*=\s*(\S(?:.*\S)?)\s*$")


@dataclass(frozen=True)
class SysctlSetting:
    key: str
    value: str
    line: int
    ignore_errors: bool  # the "-" prefix


def parse_sysctl(text: str) -> list[SysctlSetting]:
    """`key = value` lines of a sysctl.d file (pure). Raises ValueError naming a bad line."""
    out: list[SysctlSetting] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        match = _SYSCTL_LINE.match(line)
        if match is None:
            raise ValueError(f"line {number}: {line!r} is not `key = value`")
        dash, key, value = match.groups()
        if key in seen:
            raise ValueError(f"line {number}: {key} is already set on line {seen[key]}")
        seen[key] = number
        out.append(SysctlSetting(key, value, number, ignore_errors=bool(dash)))
    return out


def sysctl_path(key: str, proc_sys: Path = PROC_SYS) -> Path:
    """/proc/sys path of a key: dots are separators, unless the key uses slashes (sysctl.d)."""
    if "/" in key.split(".")[0]:
        return proc_sys / key.strip("/")
    return proc_sys / key.replace(".", "/")


def check_sysctl(
    rendered: Rendered, env: RenderEnv, workdir: Path, proc_sys: Path = PROC_SYS
) -> CheckResult:
    """Every line parses and every key is a sysctl of this kernel. Reads /proc/sys, never writes.

    A key this kernel does not have right now (a module not loaded: nf_conntrack, tcp_bbr) is a
    note in the output, not a failure.
    """
    _write(rendered, workdir)
    try:
        settings = parse_sysctl(rendered.text)
    except ValueError as exc:
        raise ValidationFailed(f"{rendered.filename}: {exc}", rendered.text) from None
    if not settings:
        raise ValidationFailed(f"{rendered.filename}: no `key = value` line", rendered.text)
    lines = []
    for s in settings:
        path = sysctl_path(s.key, proc_sys)
        if path.is_file():
            lines.append(f"ok   {s.key} = {s.value}")
        else:
            why = " (set with '-': skipped quietly at boot)" if s.ignore_errors else ""
            lines.append(f"note {s.key}: not on this kernel now (module not loaded?){why}")
    available = proc_sys / "net/ipv4/tcp_available_congestion_control"
    loaded = available.read_text().split() if available.is_file() else []
    lines += [
        f"note {s.value} not loaded now: modprobe tcp_{s.value}"
        for s in settings
        if s.key == "net.ipv4.tcp_congestion_control" and loaded and s.value not in loaded
    ]
    return CheckResult(tool="/proc/sys", output="\n".join(lines))


# --- systemd ---------------------------------------------------------------------------------

# Messages that mean systemd-analyze itself cannot work here (no systemd, no privileges).
_CANNOT_RUN = (
    "not been booted with systemd",
    "Failed to initialize manager",
    "Failed to connect to bus",
    "Failed to setup working directory",
    "Failed to create /",
    "Operation not permitted",
)


def check_systemd(rendered: Rendered, env: RenderEnv, workdir: Path) -> CheckResult:
    """`systemd-analyze verify` on the unit, when systemd-analyze exists and can run here.

    Errors in other units it pulls in (docker.service) are not ours and are ignored; the
    ExecStart binary not being installed yet is a note: the unit is checked before install.
    """
    if not rendered.filename.endswith(".service"):
        raise ValidationFailed(
            f"unit file name {rendered.filename!r} must end in .service", rendered.text
        )
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return CheckResult(
            tool="systemd-analyze verify",
            output="",
            skipped="systemd-analyze not installed (apt-get install -y systemd)",
        )
    path = _write(rendered, workdir)
    proc = _run(
        [tool, "verify", "--man=no", "--recursive-errors=no", str(path)],
        cwd=workdir,
    )
    unit = rendered.filename
    ours = [ln for ln in proc.stdout.splitlines() if unit in ln or str(path) in ln]
    binary = f"Command {env.conduitctl_bin} is not executable"
    notes = [ln for ln in ours if binary in ln]
    problems = [ln for ln in ours if binary not in ln]
    if not ours and proc.returncode != 0:
        if any(marker in proc.stdout for marker in _CANNOT_RUN) or not proc.stdout.strip():
            first = proc.stdout.strip().splitlines()[:1] or [f"exit status {proc.returncode}"]
            return CheckResult(
                tool="systemd-analyze verify",
                output=proc.stdout,
                skipped=f"systemd-analyze cannot run here: {first[0]}",
            )
        problems = proc.stdout.strip().splitlines()
    if problems:
        raise ValidationFailed(f"systemd-analyze refused {unit}: {_first(problems)}", proc.stdout)
    output = proc.stdout
    if notes:
        output += f"note: {env.conduitctl_bin} is not installed here; the unit itself is valid\n"
    return CheckResult(tool="systemd-analyze verify", output=output)


# --- shell -----------------------------------------------------------------------------------


def check_shell(rendered: Rendered, env: RenderEnv, workdir: Path) -> CheckResult:
    """`bash -n` (syntax), then `shellcheck` when it is installed (optional)."""
    bash = _require("bash", "bash")
    path = _write(rendered, workdir, mode=0o755)
    proc = _run([bash, "-n", str(path)])
    if proc.returncode != 0:
        lines = proc.stdout.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise ValidationFailed(f"bash -n refused {rendered.filename}: {_first(lines)}", proc.stdout)
    notes = ["bash -n: syntax ok"]
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        notes.append("shellcheck not installed (optional): not run")
    else:
        sc = _run([shellcheck, "--shell=bash", str(path)])
        if sc.returncode != 0:
            lines = [ln for ln in sc.stdout.splitlines() if ln.startswith("In ")] or ["findings"]
            raise ValidationFailed(
                f"shellcheck refused {rendered.filename}: {_first(lines)}", sc.stdout
            )
        notes.append("shellcheck: clean")
    return CheckResult(
        tool="bash -n" + (" + shellcheck" if shellcheck else ""), output="\n".join(notes)
    )

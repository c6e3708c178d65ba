"""Before a fleet runs: plan, init, config check, import-settings, render, preflight, version,
sim build-image."""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from conduitctl import __version__
from conduitctl.app.migrate import load_settings_conf
from conduitctl.app.planning import container_nofile_for, plan_input
from conduitctl.capacity import Plan, make_plan
from conduitctl.cli.common import (
    ConfigOpt,
    JsonOpt,
    app,
    config_app,
    emit_json,
    err,
    load_config,
    out,
    sim_app,
)
from conduitctl.errors import BadInput, CheckFailed
from conduitctl.hostinfo import render_env
from conduitctl.settings import (
    Container,
    Front,
    Settings,
    find_config,
    hardening_warnings,
    load_settings,
    redact_url,
    settings_from_dict,
)
from conduitctl.settings_file import holds_secrets, settings_to_toml, write_config

HOST_LIMIT = 1_000_000.0  # no host has more CPUs, GB or Mbps: a bigger number is a typo


def _print_plan(plan: Plan, notes: list[str]) -> None:
    i = plan.inputs
    out.print(
        f"[bold]Host[/]: {i['cpus']:g} CPU, {i['memory_gb']:g} GB RAM, {i['nic_mbps']:g} Mbps NIC; "
        f"{i['mbps_per_client']:g} Mbps per client, {i['active_ratio']:g} active"
    )
    table = Table(title="Limits (concurrent clients)", title_justify="left")
    table.add_column("limit")
    table.add_column("plan", justify="right")
    table.add_column("range", justify="right")
    table.add_column("basis")
    for name, limit in plan.limits.items():
        marker = " <- bottleneck" if name == plan.bottleneck else ""
        span = "" if limit.low == limit.high else f"{limit.low:,}-{limit.high:,}"
        table.add_row(f"{name}{marker}", f"{limit.clients:,}", span, limit.basis)
    out.print(table)
    for name, limit in plan.limits.items():
        if limit.note:
            out.print(f"[dim]{name}: {limit.note}[/]")
    verb = "Requested" if plan.requested else "Recommended"
    out.print(
        f"[bold]{verb}[/]: {plan.containers} containers x {plan.max_clients_per_container} "
        f"max clients = {plan.total_clients:,} clients (bottleneck: {plan.bottleneck})"
    )
    e = plan.expected
    out.print(
        f"[bold]Expected at that load[/]: RAM {e['ram_mb']:,.0f} MB, CPU {e['cpu_cores']:g} cores "
        f"({e['cpu_percent_of_host']:g} % of the host), network {e['network_mbps']:g} of "
        f"{e['network_usable_mbps']:g} usable Mbps"
    )
    for note in notes:
        out.print(f"[dim]note: {note}[/]")
    for warning in plan.warnings:
        out.print(f"[bold yellow]warning[/]: {warning}")


@app.command()
def plan(
    cpus: Annotated[float | None, typer.Option(help="CPUs (default: this host)", min=0.1)] = None,
    memory_gb: Annotated[
        float | None, typer.Option(help="RAM in GB (default: this host)", min=0.1)
    ] = None,
    nic_mbps: Annotated[
        float | None, typer.Option(help="NIC speed in Mbps (default: the kernel's)", min=1)
    ] = None,
    bandwidth_mbps: Annotated[
        float,
        typer.Option(
            help="Mbps each active client demands: an estimate of demand, not a station's "
            "--bandwidth cap",
            min=0.01,
        ),
    ] = 3.0,
    active_ratio: Annotated[
        float, typer.Option(help="fraction of clients moving data at once", min=0.01, max=1)
    ] = 0.5,
    containers: Annotated[
        int | None, typer.Option(help="check this container count", min=1, max=64)
    ] = None,
    max_clients: Annotated[
        int | None, typer.Option(help="check this max clients per container", min=1)
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Capacity plan: CPU, memory, network and fd limits side by side, the bottleneck named."""
    for flag, value in (("--cpus", cpus), ("--memory-gb", memory_gb), ("--nic-mbps", nic_mbps),
                        ("--bandwidth-mbps", bandwidth_mbps)):  # fmt: skip
        if value is not None and not (math.isfinite(value) and value <= HOST_LIMIT):
            raise BadInput(f"{flag} {value:g}: give a finite number up to {HOST_LIMIT:g}")
    path = find_config(config)
    settings = load_settings(path) if (config or path.exists()) else None
    planned, notes = plan_input(
        settings,
        cpus=cpus,
        memory_gb=memory_gb,
        nic_mbps=nic_mbps,
        bandwidth_mbps=bandwidth_mbps,
        active_ratio=active_ratio,
        containers=containers,
        max_clients=max_clients,
    )
    result = make_plan(planned)
    if as_json:
        emit_json({**result.to_dict(), "notes": notes})
    else:
        _print_plan(result, notes)


@app.command()
def init(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="where to write (default: --config)")
    ] = None,
    config: ConfigOpt = None,
    profile: Annotated[str, typer.Option(help="psiphon-conduit | sim | generic")] = (
        "psiphon-conduit"
    ),
    runtime: Annotated[str | None, typer.Option(help="docker | process")] = None,
    force: Annotated[bool, typer.Option(help="replace an existing file")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a commented conduit.toml sized by the planner for this host."""
    path = output or find_config(config)
    planned, notes = plan_input(None)
    result = make_plan(planned)
    n = result.containers
    usable_mb = max(int((planned.memory_gb - 0.5) * 1024), 64 * n)
    chosen_runtime = runtime or ("docker" if _docker_available() else "process")
    data: dict[str, Any] = {
        "cluster": {"containers": n, "runtime": chosen_runtime},
        "workload": {"profile": profile, "max_clients": result.max_clients_per_container},
        "container": {
            "cpus": max(round(planned.cpus / n, 2), 0.1),
            "memory": f"{max(usable_mb // n, 64)}m",
            # what preflight checks: never more open files than this host can grant
            "nofile": container_nofile_for(chosen_runtime, Container().nofile),
        },
        "host": {"nic_mbps": planned.nic_mbps},
    }
    if profile != "psiphon-conduit":
        data["front"] = {
            "kind": "nginx",
            "listeners": ["tcp:443", "udp:443"],
            # the front runs as this process's child: the process runtime's grant
            "nofile": container_nofile_for("process", Front().nofile),
        }
    settings = settings_from_dict(data, source="init")
    header = [
        f"Written by conduitctl init {__version__} for this host: "
        f"{planned.cpus:g} CPU, {planned.memory_gb:g} GB RAM, "
        f"{planned.nic_mbps:g} Mbps NIC; bottleneck {result.bottleneck}.",
        *notes,
    ]
    write_config(settings_to_toml(settings, header), path, secret=False, force=force)
    if as_json:
        emit_json({"path": str(path), "plan": result.to_dict(), "notes": notes})
    else:
        out.print(
            f"wrote {path}: {n} containers x {result.max_clients_per_container} max clients "
            f"(bottleneck: {result.bottleneck}); check it with `conduitctl config check`"
        )


def _docker_available() -> bool:
    return Path("/var/run/docker.sock").exists()


def _settings_summary(settings: Settings) -> dict[str, Any]:
    """The settings as JSON, notifier URLs redacted: secrets are never printed."""
    data = settings.model_dump(mode="json")
    data["alerts"]["notifiers"] = [redact_url(u) for u in settings.alerts.notifiers]
    data["front"]["listeners"] = [str(listener) for listener in settings.front.listeners]
    data["state_dir"] = str(settings.state_dir)
    return data


@config_app.command("check")
def config_check(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Validate a conduit.toml; exit 2 with one line naming the key and the fix."""
    settings, path = load_config(config)
    warnings = hardening_warnings(settings)
    if as_json:
        emit_json({"path": str(path), "valid": True, "settings": _settings_summary(settings),
                   "warnings": warnings})  # fmt: skip
        return
    f = settings.front
    front = "no front" if not f.enabled else f"{f.kind} on {', '.join(map(str, f.listeners))}"
    out.print(
        f"{path}: valid — {settings.cluster.containers} x {settings.workload.profile} on "
        f"{settings.cluster.runtime}, {front}"
    )
    for line in warnings:
        err.print(f"[bold yellow]warning[/]: {line}", highlight=False)


@app.command("import-settings")
def import_settings(
    source: Annotated[Path, typer.Argument(help="conduit-manager's settings.conf")] = Path(
        "/opt/conduit/settings.conf"
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="where to write (default: --config)")
    ] = None,
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option(help="replace an existing file")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert conduit-manager's settings.conf into conduit.toml (0600 when it holds secrets)."""
    imported = load_settings_conf(source)
    settings = settings_from_dict(imported.data, source=str(source))
    path = output or find_config(config)
    header = [f"Imported from {source} by conduitctl import-settings."]
    if imported.ignored:
        header.append(f"Not carried over: {', '.join(imported.ignored)}.")
    write_config(
        settings_to_toml(settings, header), path, secret=holds_secrets(settings), force=force
    )
    if as_json:
        emit_json(
            {
                "path": str(path),
                "mode": "0600" if holds_secrets(settings) else "0644",
                "ignored": imported.ignored,
                "settings": _settings_summary(settings),
            }
        )
    else:
        secret_note = " (mode 0600: it holds notifier secrets)" if imported.has_secrets else ""
        out.print(
            f"wrote {path}{secret_note}: {settings.cluster.containers} containers, max clients "
            f"{settings.workload.max_clients}, {len(settings.workload.overrides)} overrides"
        )
        if imported.ignored:
            out.print(f"[dim]not carried over: {', '.join(imported.ignored)}[/]")


@app.command("render")
def render_cmd(
    target: Annotated[
        str,
        typer.Argument(
            help="nginx | haproxy | logrotate | docker-daemon | rsyslog | sysctl | systemd | tc"
        ),
    ],
    config: ConfigOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write to FILE instead of stdout")
    ] = None,
    check: Annotated[bool, typer.Option(help="validate with the target's own tool")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Render a config file from conduit.toml (pure: the same settings give the same text)."""
    from conduitctl import render as renderers

    renderer = renderers.renderer(target)  # unknown targets fail before the config is read
    settings, path = load_config(config)
    env = render_env(settings, path)
    rendered = renderer(settings, env)
    result = None
    if check:
        with tempfile.TemporaryDirectory(prefix="conduitctl-check-") as workdir:
            result = renderers.checker(target)(rendered, env, Path(workdir))
    if output is not None:
        if output.is_dir():
            raise BadInput(f"-o {output} is a directory; give a file, e.g. "
                           f"{output / rendered.filename}")  # fmt: skip
        write_config(rendered.text, output, secret=False, force=True)
    if as_json:
        emit_json(
            {
                "target": target,
                "filename": rendered.filename,
                "output": str(output) if output else None,
                "text": rendered.text if output is None else None,
                "warnings": list(rendered.warnings),
                "check": None
                if result is None
                else {"tool": result.tool, "output": result.output, "skipped": result.skipped},
            }
        )
        return
    if output is None:
        sys.stdout.write(rendered.text)
    for warning in rendered.warnings:
        err.print(f"[bold yellow]warning[/]: {warning}")
    if result is not None:
        status = f"skipped ({result.skipped})" if result.skipped else "ok"
        err.print(f"check: {result.tool}: {status}")
    if output is not None:
        err.print(f"wrote {output}")


@app.command()
def preflight(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The pre-deployment checklist; backs up conduit.toml to STATE_DIR/backups."""
    from conduitctl.ops.preflight import run_preflight

    settings, path = load_config(config)
    report = run_preflight(settings, path)
    if as_json:
        emit_json(report.to_dict())
    else:
        style = {"pass": "green", "warn": "yellow", "fail": "bold red"}
        table = Table(title=f"preflight: {path}", title_justify="left")
        for column in ("check", "status", "detail", "fix"):
            table.add_column(column, overflow="fold")
        for c in report.checks:
            table.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", c.detail, c.fix)
        out.print(table)
        counts = report.counts()
        out.print(f"{counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail")
    if not report.ok:
        failed = [c.name for c in report.checks if c.status == "fail"]
        raise CheckFailed(f"preflight: {len(failed)} check(s) failed: {', '.join(failed)}")


@sim_app.command("build-image")
def sim_build_image(
    tag: Annotated[str, typer.Option(help="image tag")] = "conduit-sim:local",
    rebuild_base: Annotated[bool, typer.Option(help="debootstrap the Debian base again")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build the simulator image locally (debootstrap + docker import + docker build; no pull)."""
    from conduitctl.runtime.sim_image import build_image

    def progress(message: str) -> None:
        err.print(f"[dim]{message}[/]")

    image_id = build_image(tag=tag, progress=progress, rebuild_base=rebuild_base)
    if as_json:
        emit_json({"tag": tag, "id": image_id})
    else:
        out.print(f"built {tag} ({image_id[:19]})")


@app.command()
def version(as_json: JsonOpt = False) -> None:
    """Print conduitctl's version."""
    if as_json:
        emit_json({"version": __version__})
    else:
        out.print(f"conduitctl {__version__}")

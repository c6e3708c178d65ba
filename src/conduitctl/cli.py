"""The conduitctl command line: parse, call the core, print a table or one JSON document.

Only this module turns errors into exit codes: 0 ok, 1 a check failed, 2 bad input.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from conduitctl import __version__
from conduitctl.capacity import Plan, PlanInput, make_plan
from conduitctl.errors import BadInput, CheckFailed, ConduitctlError
from conduitctl.hostinfo import DEFAULT_NIC_MBPS, host_facts, render_env
from conduitctl.legacy import convert, parse_settings_conf
from conduitctl.settings import (
    Settings,
    find_config,
    load_settings,
    redact_url,
    settings_from_dict,
)
from conduitctl.settings_file import holds_secrets, settings_to_toml, write_config
from conduitctl.statedir import StateDir

log = logging.getLogger(__name__)

app = typer.Typer(
    name="conduitctl",
    help="Run a fleet of Psiphon Conduit stations (or identical proxy backends) on one host.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Validate conduit.toml.", no_args_is_help=True)
sim_app = typer.Typer(help="The Conduit simulator (conduit-sim).", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(sim_app, name="sim")

# Wide enough that a line of output is one line in logs and pipes, not wrapped at 80.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="conduit.toml (default: $CONDUITCTL_CONFIG, ./conduit.toml, /etc)"
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def emit_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def _load(config: Path | None) -> tuple[Settings, Path]:
    path = find_config(config)
    return load_settings(path), path


# --- plan -----------------------------------------------------------------------------------


def _plan_input(
    cpus: float | None,
    memory_gb: float | None,
    nic_mbps: float | None,
    bandwidth_mbps: float,
    active_ratio: float,
    containers: int | None,
    max_clients: int | None,
    settings: Settings | None,
) -> tuple[PlanInput, list[str]]:
    facts = host_facts(settings.host.nic if settings else None)
    notes = []
    nic = nic_mbps or (settings.host.nic_mbps if settings else None) or facts.nic_mbps
    if nic is None:
        nic = DEFAULT_NIC_MBPS
        notes.append(
            f"the kernel does not report the speed of {facts.nic or 'the NIC'}; "
            f"assumed {nic:g} Mbps (pass --nic-mbps)"
        )
    try:
        plan_input = PlanInput(
            cpus=cpus or facts.cpus,
            memory_gb=memory_gb or facts.memory_gb,
            nic_mbps=nic,
            mbps_per_client=bandwidth_mbps,
            active_ratio=active_ratio,
            sustained_fraction=settings.host.sustained_fraction if settings else 0.8,
            duplex=settings.host.duplex if settings else True,
            front=bool(settings and settings.front.kind != "none"),
            nofile=settings.container.nofile if settings else 65536,
            file_max=facts.file_max,
            containers=containers,
            max_clients=max_clients,
        )
    except ValueError as exc:
        raise BadInput(f"plan: {exc}; see conduitctl plan --help") from None
    return plan_input, notes


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
    bandwidth_mbps: Annotated[float, typer.Option(help="Mbps per active client", min=0.01)] = 3.0,
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
    path = find_config(config)
    settings = load_settings(path) if (config or path.exists()) else None
    plan_input, notes = _plan_input(
        cpus, memory_gb, nic_mbps, bandwidth_mbps, active_ratio, containers, max_clients, settings
    )
    result = make_plan(plan_input)
    if as_json:
        emit_json({**result.to_dict(), "notes": notes})
    else:
        _print_plan(result, notes)


# --- init, config check, import-settings ----------------------------------------------------


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
    plan_input, notes = _plan_input(None, None, None, 3.0, 0.5, None, None, None)
    result = make_plan(plan_input)
    n = result.containers
    usable_mb = max(int((plan_input.memory_gb - 0.5) * 1024), 64 * n)
    data: dict[str, Any] = {
        "cluster": {
            "containers": n,
            "runtime": runtime or ("docker" if _docker_available() else "process"),
        },
        "workload": {"profile": profile, "max_clients": result.max_clients_per_container},
        "container": {
            "cpus": max(round(plan_input.cpus / n, 2), 0.1),
            "memory": f"{max(usable_mb // n, 64)}m",
        },
        "host": {"nic_mbps": plan_input.nic_mbps},
    }
    if profile != "psiphon-conduit":
        data["front"] = {"kind": "nginx", "listeners": ["tcp:443", "udp:443"]}
    settings = settings_from_dict(data, source="init")
    header = [
        f"Written by conduitctl init {__version__} for this host: "
        f"{plan_input.cpus:g} CPU, {plan_input.memory_gb:g} GB RAM, "
        f"{plan_input.nic_mbps:g} Mbps NIC; bottleneck {result.bottleneck}.",
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
    settings, path = _load(config)
    if as_json:
        emit_json({"path": str(path), "valid": True, "settings": _settings_summary(settings)})
        return
    f = settings.front
    front = "no front" if f.kind == "none" else f"{f.kind} on {', '.join(map(str, f.listeners))}"
    out.print(
        f"{path}: valid — {settings.cluster.containers} x {settings.workload.profile} on "
        f"{settings.cluster.runtime}, {front}"
    )


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
    try:
        text = source.read_text()
    except OSError as exc:
        raise BadInput(
            f"{source}: cannot read ({exc.strerror}); pass the path of conduit-manager's "
            "settings.conf"
        ) from None
    imported = convert(parse_settings_conf(text, str(source)), str(source))
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


# --- render ---------------------------------------------------------------------------------


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
    settings, path = _load(config)
    env = render_env(settings, path)
    rendered = renderer(settings, env)
    result = None
    if check:
        with tempfile.TemporaryDirectory(prefix="conduitctl-check-") as workdir:
            result = renderers.checker(target)(rendered, env, Path(workdir))
    if output is not None:
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


# --- the fleet: up, down, status, logs, scale, restart ----------------------------------------


def _fleet(config: Path | None) -> tuple[Settings, Path, Any, Any]:
    from conduitctl.front import front_for
    from conduitctl.runtime import runtime_for

    settings, path = _load(config)
    env = render_env(settings, path)
    return settings, path, runtime_for(settings), front_for(settings, env)


def _progress(as_json: bool) -> Any:
    def show(message: str) -> None:
        if not as_json:
            err.print(f"[dim]- {message}[/]", highlight=False)

    return show


def _print_fleet_plan(plan: Any) -> None:
    if plan.leave_legacy:
        out.print("leave     conduit-manager's layout: keys carried back, legacy volumes kept")
    for action in plan.actions:
        out.print(f"{action.kind.value:9} {action.name}: {action.reason}")
    out.print(f"{'front':9} {plan.front}")
    for refusal in plan.refusals:
        out.print(f"[bold red]refused[/]   {refusal}")


@app.command()
def up(
    config: ConfigOpt = None,
    dry_run: Annotated[bool, typer.Option(help="print the plan, change nothing")] = False,
    no_daemon: Annotated[bool, typer.Option(help="do not start the supervisor")] = False,
    new_keys: Annotated[
        bool,
        typer.Option(help="start backends whose key is gone as new stations, backup or not"),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Converge the fleet and the front to conduit.toml (idempotent); start the supervisor."""
    from conduitctl.app import change
    from conduitctl.app.context import Fleet
    from conduitctl.ops.converge import refuse

    fleet = Fleet.load(config)
    if dry_run:
        whole = change.plan(fleet, new_keys=new_keys)
        if as_json:
            emit_json({**whole.to_dict(), "changed": whole.changes, "dry_run": True})
        else:
            _print_fleet_plan(whole)
        refuse(whole)  # exit 2 as `up` would, nothing changed either way
        return
    done = change.converge(
        fleet, new_keys=new_keys, start_supervisor=not no_daemon, progress=_progress(as_json)
    )
    result = done.result
    assert result is not None
    if as_json:
        emit_json({**result.to_dict(), "dry_run": False, "daemon_pid": done.daemon_pid})
        return
    summary = ", ".join(
        f"{sum(a.kind == kind for a in result.actions)} {kind.value}"
        for kind in dict.fromkeys(a.kind for a in result.actions)
    )
    verdict = "changed" if result.changed else "nothing to change"
    out.print(f"up: {verdict} ({summary}; front {result.front}) in {result.elapsed_s:.1f}s")


@app.command()
def down(
    config: ConfigOpt = None,
    purge: Annotated[
        bool, typer.Option(help="also delete data: identity keys are lost for good")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop everything conduitctl owns; keeps the data (identity keys) unless --purge."""
    from conduitctl import daemon_link as control
    from conduitctl.ops.converge import down as converge_down

    settings, _, runtime, front = _fleet(config)
    if control.stop(settings.state_dir):  # first: it would restart what down stops
        _progress(as_json)("supervisor stopped")
    result = converge_down(settings, runtime, front, purge=purge, progress=_progress(as_json))
    if as_json:
        emit_json(result.to_dict())
        return
    kept = "data purged" if purge else "data kept"
    out.print(f"down: {len(result.stopped)} backends stopped, {kept}")


def _status_table(view: Any) -> Table:
    table = Table(title=f"{view.cluster}: {view.profile} on {view.runtime}", title_justify="left")
    for column in (
        "backend",
        "state",
        "health",
        "clients",
        "connecting",
        "cpu %",
        "rss",
        "restarts",
        "uptime",
    ):
        table.add_column(
            column, justify="left" if column in ("backend", "state", "health") else "right"
        )
    for b in view.backends:
        color = {"healthy": "green", "unhealthy": "red", "stopped": "red"}.get(b.health, "yellow")
        table.add_row(
            b.name,
            b.state,
            f"[{color}]{b.health}[/]",
            _dash(b.connected),
            _dash(b.connecting),
            _dash(b.cpu_percent),
            _mb(b.rss_bytes),
            str(b.restarts),
            _uptime(b.uptime_s),
        )
    t = view.totals
    table.add_row(
        "total",
        f"{t['running']}/{t['backends']}",
        f"{t['healthy']} healthy",
        str(t["connected"]),
        str(t["connecting"]),
        str(t["cpu_percent"]),
        _mb(t["rss_bytes"]),
        str(t["restarts"]),
        "",
        style="bold",
    )
    return table


def _front_line(front: Any) -> str:
    if front.kind == "none":
        return f"front: none - {front.reason}"
    if not front.running:
        return f"front: {front.kind} [red]down[/] - {front.reason}"
    listening = ", ".join(front.listening) or "nothing"
    extra = f" - [red]{front.reason}[/]" if front.reason else ""
    return f"front: {front.kind} pid {front.pid}, listening on {listening}{extra}"


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _mb(value: int | float | None) -> str:
    return "-" if not value else f"{value / 1024**2:.0f} MB"


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@app.command()
def status(
    config: ConfigOpt = None,
    watch: Annotated[bool, typer.Option(help="refresh every --interval seconds")] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes", min=0.2)] = 2.0,
    as_json: JsonOpt = False,
) -> None:
    """Per backend state, health, clients, CPU, RSS, restarts, uptime; totals; the front."""
    from rich.console import Group
    from rich.live import Live

    from conduitctl import alerts as alert_engine
    from conduitctl import daemon_link as control
    from conduitctl.observe.fleet import collect
    from conduitctl.supervise.files import load_alert_state

    settings, _, runtime, front = _fleet(config)

    def supervisor() -> dict[str, Any]:
        firing = [
            a.to_dict()
            for a in alert_engine.active_alerts(load_alert_state(settings.state_dir))
            if a.state == "firing"
        ]
        return {"pid": control.daemon_pid(settings.state_dir), "alerts_firing": firing}

    def rollout_state() -> Any:
        from conduitctl.rollout_state import load as load_rollout

        return load_rollout(settings.state_dir)

    def document() -> dict[str, Any]:
        state = rollout_state()
        return {
            **collect(settings, runtime, front).to_dict(),
            "supervisor": supervisor(),
            "rollout": None if state is None else {**state.to_dict(), "active": state.active},
        }

    if as_json and not watch:
        emit_json(document())
        return

    def render() -> Any:
        view = collect(settings, runtime, front)
        sup = supervisor()
        line = (
            f"supervisor: pid {sup['pid']}, {len(sup['alerts_firing'])} alerts firing"
            if sup["pid"]
            else "supervisor: [red]not running[/] (conduitctl up starts it)"
        )
        lines: list[Any] = [_status_table(view), _front_line(view.front), line]
        state = rollout_state()
        if state is not None and (state.active or time.time() - state.updated_at < 86400):
            lines.append(state.summary(time.time()))  # the last one, for a day after
        return Group(*lines)

    if not watch:
        out.print(render())
        return
    if as_json:  # one JSON document per line, for scripts that follow
        while True:
            sys.stdout.write(json.dumps(document(), default=str) + "\n")
            sys.stdout.flush()
            time.sleep(interval)
    with Live(render(), console=out, refresh_per_second=4) as live:
        while True:
            time.sleep(interval)
            live.update(render())


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="backend name, e.g. conduit-1")],
    config: ConfigOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    tail: Annotated[int | None, typer.Option(help="only the last N lines", min=0)] = None,
) -> None:
    """A backend's log."""
    settings, _, runtime, _ = _fleet(config)
    names = {s.name for s in runtime.backends()} | set(settings.backend_names())
    if name not in names:
        raise BadInput(f"no backend named {name}; choose one of: {', '.join(sorted(names))}")
    for line in runtime.logs(name, tail=tail, follow=follow):
        sys.stdout.write(line)
        sys.stdout.flush()


@app.command()
def scale(
    count: Annotated[int, typer.Argument(help="how many backends", min=1, max=64)],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set cluster.containers in conduit.toml (comments kept), then converge like `up`."""
    from conduitctl import daemon_link
    from conduitctl.app import change
    from conduitctl.app.context import Fleet
    from conduitctl.ops.converge import set_container_count

    path = find_config(config)
    load_settings(path)  # the current file must be valid before it is edited
    fleet = Fleet.of(set_container_count(path, count), path)
    supervised = daemon_link.daemon_pid(fleet.state_dir) is not None
    done = change.converge(
        fleet, reason="scale", start_supervisor=supervised, progress=_progress(as_json)
    )
    result = done.result
    assert result is not None
    if as_json:
        emit_json({"containers": count, **result.to_dict()})
    else:
        out.print(f"scaled to {count} backends in {result.elapsed_s:.1f}s (front {result.front})")


@app.command()
def restart(
    name: Annotated[str | None, typer.Argument(help="backend name, e.g. conduit-1")] = None,
    graceful: Annotated[
        bool, typer.Option(help="drain first: no session is cut (within --timeout)")
    ] = False,
    all_backends: Annotated[
        bool, typer.Option("--all", help="every backend, one at a time (rolling, graceful)")
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            help="graceful: seconds to wait for sessions to end (no front: to be low)", min=0
        ),
    ] = 300.0,
    low_clients: Annotated[
        int | None,
        typer.Option(
            help="graceful without a front: restart once its sessions are at or below N "
            "(default: 10% of its max clients)",
            min=0,
        ),
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restart one backend (or --all, rolling); its data (identity key) is kept.

    Graceful: drained first; without a front, after waiting for --low-clients sessions."""
    from conduitctl.intent import holding
    from conduitctl.ops.converge import restart as converge_restart
    from conduitctl.ops.drain import DrainResult, RestartAborted, graceful_restart, rolling_restart

    if (name is None) == (not all_backends):
        raise BadInput("restart takes a backend name or --all (not both, not neither)")
    settings, _, runtime, front = _fleet(config)
    if low_clients is not None and settings.front.kind != "none":
        raise BadInput(
            f'--low-clients is for a fleet without a front; this one has front.kind = "'
            f'{settings.front.kind}" (its backends are drained: drop --low-clients)'
        )
    if low_clients is not None and not (graceful or all_backends):
        raise BadInput("--low-clients goes with --graceful or --all")
    started = time.monotonic()
    restarted: list[str] = []
    results: list[DrainResult] = []
    if all_backends:
        try:
            results = rolling_restart(
                settings,
                runtime,
                front,
                timeout=timeout,
                low_clients=low_clients,
                progress=_progress(as_json),
            )
        except RestartAborted as exc:
            if as_json:
                emit_json(
                    {
                        "restarted": exc.restarted,
                        "aborted_at": exc.name,
                        "error": str(exc),
                        "announcement": exc.announcement.to_dict(),
                        "elapsed_s": round(time.monotonic() - started, 2),
                    }
                )
            raise
        restarted = [r.name for r in results]
    elif graceful:
        assert name is not None
        one = graceful_restart(
            settings,
            runtime,
            front,
            name,
            timeout=timeout,
            low_clients=low_clients,
            progress=_progress(as_json),
        )
        results = [one]
        restarted = [name]
    else:
        assert name is not None
        with holding(settings.state_dir, [name]):
            converge_restart(settings, runtime, name, progress=_progress(as_json))
        restarted = [name]
    elapsed = time.monotonic() - started
    if as_json:
        emit_json(
            {
                "restarted": restarted,
                "elapsed_s": round(elapsed, 2),
                "results": [r.to_dict() for r in results],
            }
        )
    else:
        for r in results:
            if r.timed_out:
                left = r.sessions_left
                out.print(f"{r.name}: timed out after {timeout:g}s; restarted anyway ({left} left)")
        out.print(f"restarted {', '.join(restarted)} in {elapsed:.1f}s")


@app.command()
def drain(
    name: Annotated[str, typer.Argument(help="backend name, e.g. conduit-3")],
    timeout: Annotated[
        float, typer.Option(help="seconds to wait for its sessions to end", min=0)
    ] = 300.0,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Out of the front for new connections, wait for its sessions to end, then stop it."""
    from conduitctl.ops.drain import drain as drain_backend

    settings, _, runtime, front = _fleet(config)
    result = drain_backend(
        settings, runtime, front, name, timeout=timeout, progress=_progress(as_json)
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        ended = "timeout" if result.timed_out else "all sessions ended"
        out.print(
            f"drained {name} in {result.waited_s:.1f}s ({ended}; {result.sessions_at_start} "
            f"sessions at the start, {result.sessions_left} left); `conduitctl undrain {name}` "
            "brings it back"
        )


@app.command()
def undrain(
    name: Annotated[str, typer.Argument(help="backend name, e.g. conduit-3")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a drained backend and put it back into the front."""
    from conduitctl.ops.drain import undrain as undrain_backend

    settings, _, runtime, front = _fleet(config)
    undrain_backend(settings, runtime, front, name, progress=_progress(as_json))
    if as_json:
        emit_json({"undrained": name})
    else:
        out.print(f"{name} is back in the front")


# --- the supervisor -----------------------------------------------------------------------


@app.command()
def daemon(config: ConfigOpt = None) -> None:
    """Run the supervisor in the foreground (the systemd unit runs this; `up` starts it)."""
    from conduitctl.logs import setup_logging
    from conduitctl.supervise.service import run as run_daemon

    settings, path = _load(config)
    setup_logging(
        level=settings.daemon.log_level,
        json=settings.daemon.log_json,
        file=render_env(settings, path).log_dir / "daemon.log",
    )
    run_daemon(path)


@app.command("daemon-stop")
def daemon_stop(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Stop the supervisor; the fleet keeps running."""
    from conduitctl import daemon_link as control

    settings, _ = _load(config)
    stopped = control.stop(settings.state_dir)
    if as_json:
        emit_json({"stopped": stopped})
    else:
        out.print("daemon stopped" if stopped else "no daemon was running")


def parse_since(text: str | None, now: float) -> float | None:
    """--since: a duration back from now (30m, 2h, 1d) or an ISO time (2026-11-26T10:00)."""
    from datetime import datetime

    from conduitctl.units import parse_duration

    if text is None:
        return None
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(
            f"--since {text!r} is neither a duration (30m, 2h, 1d) nor an ISO time "
            "(2026-11-26T10:00)"
        ) from None
    return moment.timestamp()


def _history_store(settings: Settings) -> Any:
    from conduitctl.store import Store
    from conduitctl.supervise.files import history_path

    path = history_path(settings.state_dir)
    if not path.exists():
        raise BadInput(
            f"no history yet at {path}: the supervisor records it; start it with conduitctl up"
        )
    return Store(path)


@app.command()
def events(
    config: ConfigOpt = None,
    since: Annotated[str | None, typer.Option(help="30m, 2h, 1d or an ISO time")] = "1d",
    backend: Annotated[str | None, typer.Option(help="only this backend")] = None,
    kind: Annotated[
        list[str] | None, typer.Option(help="only these kinds (repeatable): death, oom, ...")
    ] = None,
    limit: Annotated[int, typer.Option(help="at most this many, the newest", min=1)] = 200,
    as_json: JsonOpt = False,
) -> None:
    """What happened: starts, deaths (exit codes), OOM kills, health changes, front changes,
    alerts fired and resolved."""
    from datetime import datetime

    from conduitctl.events import EventKind

    settings, _ = _load(config)
    kinds = None
    if kind:
        known = {k.value for k in EventKind}
        unknown = [k for k in kind if k not in known]
        if unknown:
            raise BadInput(
                f"--kind {unknown[0]!r} is unknown; choose from: {', '.join(sorted(known))}"
            )
        kinds = {EventKind(k) for k in kind}
    with _history_store(settings) as store:
        found = store.events(
            since=parse_since(since, time.time()), kinds=kinds, backend=backend, limit=limit
        )
    if as_json:
        emit_json([e.to_dict() for e in found])
        return
    for e in found:
        stamp = datetime.fromtimestamp(e.ts).strftime("%Y-%m-%d %H:%M:%S")
        out.print(f"{stamp}  {e.kind.value:15} {e.backend or '-':12} {e.message}", highlight=False)
    if not found:
        out.print("no events in that window")


@app.command()
def history(
    config: ConfigOpt = None,
    since: Annotated[str | None, typer.Option(help="30m, 2h, 1d or an ISO time")] = "1h",
    backend: Annotated[
        str | None, typer.Option(help="a backend, or 'host' (default: every series)")
    ] = None,
    resolution: Annotated[str, typer.Option(help="auto | raw | minute | hour")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Samples the supervisor recorded (downsampled with age): CPU, RSS, clients, health."""
    from datetime import datetime

    if resolution not in ("auto", "raw", "minute", "hour"):
        raise BadInput(f"--resolution {resolution!r}: choose auto, raw, minute or hour")
    settings, _ = _load(config)
    with _history_store(settings) as store:
        now = time.time()  # one now: the window is exactly --since long
        points = store.history(
            since=parse_since(since, now),
            until=now,
            backend=backend,
            resolution=resolution,
        )
    if as_json:
        emit_json([p.to_dict() for p in points])
        return
    table = Table(title=f"history ({len(points)} points)", title_justify="left")
    for column in ("time", "series", "samples", "values"):
        table.add_column(column)
    for point in points[-60:]:
        values = ", ".join(
            f"{k}={v:g}" for k, v in point.values.items() if isinstance(v, int | float)
        )
        stamp = datetime.fromtimestamp(point.ts).strftime("%H:%M:%S")
        table.add_row(stamp, point.series, str(point.samples), values)
    out.print(table)


alerts_app = typer.Typer(help="Active alerts; `alerts test` sends a test notification.")
app.add_typer(alerts_app, name="alerts")


@alerts_app.callback(invoke_without_command=True)
def alerts_list(ctx: typer.Context, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List the active alerts (pending and firing)."""
    if ctx.invoked_subcommand is not None:
        return
    from conduitctl import alerts as alert_engine
    from conduitctl.supervise.files import load_alert_state

    settings, _ = _load(config)
    active = alert_engine.active_alerts(load_alert_state(settings.state_dir))
    if as_json:
        emit_json([a.to_dict() for a in active])
        return
    if not active:
        out.print("no active alerts")
    for a in active:
        muted = " (inhibited)" if a.inhibited else ""
        out.print(f"{a.state:8} {a.severity:8} {a.rule}: {a.summary}{muted}", highlight=False)


@alerts_app.command("test")
def alerts_test(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Send a test message to every notifier; exit 1 when one fails."""
    from conduitctl.notify import send_test

    settings, _ = _load(config)
    urls = settings.alerts.notifiers
    if not urls:
        raise BadInput("alerts.notifiers is empty; add an apprise URL (e.g. tgram://TOKEN/CHAT)")
    results = send_test(urls)
    if as_json:
        emit_json([{"target": r.target, "ok": r.ok, "error": r.error} for r in results])
    else:
        for r in results:
            out.print(f"{r.target}: {'sent' if r.ok else 'FAILED: ' + str(r.error)}")
    if not all(r.ok for r in results):
        raise CheckFailed(f"{sum(not r.ok for r in results)} of {len(results)} notifiers failed")


@app.command("snapshots")
def snapshots_cmd(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The snapshots taken before each change (settings, front config, images, backends)."""
    from datetime import datetime

    from conduitctl.ops.snapshots import list_snapshots

    settings, _ = _load(config)
    found = list_snapshots(settings.state_dir)
    if as_json:
        emit_json([s.to_dict() for s in found])
        return
    if not found:
        out.print("no snapshots yet: one is taken before every change (up, scale)")
    for snap in found:
        stamp = datetime.fromtimestamp(snap.taken_at).strftime("%Y-%m-%d %H:%M:%S")
        running = sum(b["running"] for b in snap.backends)
        out.print(
            f"{snap.id}  {stamp}  {snap.reason:6} {running}/{len(snap.backends)} running, "
            f"front {snap.front}",
            highlight=False,
        )


@app.command()
def rollback(
    snapshot: Annotated[
        str | None, typer.Argument(help="snapshot id or prefix (default: the newest)")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="say what would change, change nothing")] = False,
    batch: Annotated[
        int, typer.Option(help="backends replaced at once (1 keeps all but one serving)", min=1)
    ] = 2,
    legacy: Annotated[
        bool,
        typer.Option(
            help="run conduit-manager's layout (conduit, conduit-2... on the same keys, no "
            "front, no supervisor); `conduitctl up` comes back"
        ),
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Return the fleet and the front to a snapshot (keys kept); run it twice to undo."""
    if legacy:
        _rollback_legacy(config, snapshot, as_json)
        return
    from conduitctl import daemon_link as control
    from conduitctl.front import front_for
    from conduitctl.ops import snapshots
    from conduitctl.ops.rollback import load_target
    from conduitctl.ops.rollback import rollback as roll_back
    from conduitctl.runtime import runtime_for

    settings, path = _load(config)
    chosen = snapshots.resolve(settings.state_dir, snapshot)
    if dry_run:
        from conduitctl.ops.converge import plan as plan_converge

        _, target = load_target(chosen)
        fronted = front_for(target, render_env(target, path))
        whole = plan_converge(target, runtime_for(target), fronted)  # the same rules as `up`
        if as_json:
            emit_json({"snapshot": chosen.id, "dry_run": True, **whole.to_dict()})
            return
        out.print(f"rollback to {chosen.id} ({chosen.reason}) would:")
        _print_fleet_plan(whole)
        return
    from conduitctl.app.change import changing
    from conduitctl.app.context import Fleet

    fleet = Fleet.of(settings, path)
    with changing(fleet, fleet.known_backends()):  # `rollout --abort` rolls a rollout back
        result = roll_back(
            settings,
            path,
            chosen,
            runtime_for=runtime_for,
            front_for=lambda s: front_for(s, render_env(s, path)),
            progress=_progress(as_json),
            batch=batch,
        )
    target, _ = _load(path)
    if control.signal_daemon(target.state_dir, signal.SIGHUP):
        _progress(as_json)("supervisor re-read conduit.toml")
    if as_json:
        emit_json(result.to_dict())
        return
    out.print(
        f"rolled back to {result.snapshot} in {result.elapsed_s:.1f}s (front {result.up.front}); "
        f"`conduitctl rollback {result.saved_as}` undoes it"
    )


def _rollback_legacy(config: Path | None, snapshot: str | None, as_json: bool) -> None:
    from conduitctl import daemon_link as control
    from conduitctl.ops import snapshots
    from conduitctl.ops.legacy_layout import to_legacy
    from conduitctl.rollout_state import refuse_if_active

    if snapshot is not None:
        raise BadInput("--legacy runs the current settings in conduit-manager's layout; "
                       "it takes no snapshot (roll back to one first)")  # fmt: skip
    settings, _, runtime, front = _fleet(config)
    refuse_if_active(settings.state_dir)
    taken = snapshots.take(settings, runtime, front.installed_config, "legacy")
    _progress(as_json)(f"snapshot {taken.id}")
    if control.stop(settings.state_dir):  # it would restart the backends being replaced
        _progress(as_json)("supervisor stopped")
    result = to_legacy(settings, runtime, front, progress=_progress(as_json))
    if as_json:
        emit_json(result.to_dict())
        return
    names = ", ".join(e.container for e in result.entries)
    out.print(f"running in conduit-manager's layout: {names} (same keys, no front, no "
              "supervisor); `conduitctl up` brings conduitctl's fleet back")  # fmt: skip


@app.command()
def rollout(
    stages: Annotated[
        str | None, typer.Option(help="backends on the new settings per stage, e.g. 1,4,8")
    ] = None,
    soak: Annotated[str, typer.Option(help="how long each stage is held under the gates")] = "5m",
    clients_steps: Annotated[
        str | None, typer.Option(help="max clients of the new backends per stage, e.g. 50,200")
    ] = None,
    max_cpu: Annotated[float, typer.Option(help="gate: % of a backend's CPU limit")] = 90.0,
    max_memory: Annotated[float, typer.Option(help="gate: % of a backend's memory limit")] = 90.0,
    max_error_ratio: Annotated[
        float, typer.Option(help="gate: failed probes / probes of the new backends")
    ] = 0.01,
    drain_timeout: Annotated[
        float, typer.Option(help="seconds a replaced backend's sessions get to end", min=0)
    ] = 30.0,
    resume: Annotated[bool, typer.Option(help="go on with a rollout whose driver died")] = False,
    abort: Annotated[bool, typer.Option(help="stop the rollout and roll back now")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply the edited conduit.toml in stages, each soaked under gates; a failed gate rolls
    back and alerts. Exit 1 when it was rolled back."""
    from conduitctl import daemon_link as control
    from conduitctl.front import front_for
    from conduitctl.ops import rollout as staged
    from conduitctl.rollout_plan import Gates
    from conduitctl.runtime import runtime_for
    from conduitctl.units import parse_duration

    if resume and abort:
        raise BadInput("--resume and --abort do not go together")
    settings, path = _load(config)
    runtime = runtime_for(settings)

    def fronted(s: Settings) -> Any:
        return front_for(s, render_env(s, path))

    def tell_supervisor() -> None:
        control.signal_daemon(settings.state_dir, signal.SIGHUP)

    if abort:
        staged.abort(settings.state_dir)
    elif not resume:
        try:
            soak_s = parse_duration(soak)
        except ValueError as exc:
            raise BadInput(f"--soak {soak!r}: {exc}") from None
        gates = Gates(max_cpu, max_memory, max_error_ratio)
        staged.begin(settings, path, runtime, fronted(settings), stages=stages, soak_s=soak_s,
                     clients_steps=clients_steps, gates=gates,
                     drain_timeout=drain_timeout)  # fmt: skip
    driver = staged.Driver(
        settings,
        path,
        runtime,
        fronted(settings),
        front_for=fronted,
        tell_supervisor=tell_supervisor,
        progress=_progress(as_json),
    )
    state = driver.run()
    if as_json:
        emit_json(state.to_dict())
    else:
        out.print(state.summary(time.time()))
    if state.phase == "failed":
        raise ConduitctlError(state.message)
    if state.phase == "rolled_back" and not abort:
        raise CheckFailed(f"rolled back: {state.message}")


# --- preflight ------------------------------------------------------------------------------


@app.command()
def preflight(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The pre-deployment checklist; backs up conduit.toml to STATE_DIR/backups."""
    from conduitctl.ops.preflight import run_preflight

    settings, path = _load(config)
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


# --- identity keys --------------------------------------------------------------------------

keys_app = typer.Typer(
    help="Back up and restore the stations' identity keys (conduit_key.json).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


def _print_keys(report: Any) -> None:
    out.print(f"{report.action}: {report.directory}", highlight=False)
    for e in report.entries:
        digest = f"  sha256 {e.sha256[:16]}" if e.sha256 else ""
        kept = f"  (old key kept in {e.saved_old})" if e.saved_old else ""
        out.print(f"  {e.backend:12} {e.status.value}{digest}{kept}", highlight=False)


@keys_app.command("backup")
def keys_backup(
    directory: Annotated[
        Path | None, typer.Argument(help="where backups go (default: STATE_DIR/keys)")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy every backend's key to DIR/<timestamp>/ (0600) and verify each copy."""
    from conduitctl.ops.keys import backup

    settings, _ = _load(config)
    report = backup(settings, directory)
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_keys(report)


@keys_app.command("restore")
def keys_restore(
    directory: Annotated[
        Path | None,
        typer.Argument(help="a backup, or a directory of them (newest; default STATE_DIR/keys)"),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="restore this backend only")] = None,
    force: Annotated[
        bool, typer.Option(help="replace a different key (the old one is kept aside)")
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the keys of the newest backup back into the stopped backends' data."""
    from conduitctl.ops.keys import restore

    settings, _ = _load(config)
    report = restore(settings, directory, backend=backend, force=force)
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_keys(report)


# --- drills -------------------------------------------------------------------------------


def default_target(settings: Settings, udp: bool) -> str:
    """The first front listener of the wanted protocol, probed on loopback when it binds all."""
    from conduitctl.front.base import first_listener
    from conduitctl.settings import Proto

    proto = Proto.UDP if udp else Proto.TCP
    target = first_listener(settings, proto) if settings.front.kind != "none" else None
    if target is None:
        raise BadInput(
            f"no {proto.value} front listener to load (front.kind = {settings.front.kind!r}); "
            "pass --target HOST:PORT"
        )
    host, port = target
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@app.command()
def loadtest(
    clients: Annotated[int, typer.Option(help="concurrent clients", min=1)] = 100,
    duration: Annotated[float, typer.Option(help="seconds, ramp included", min=0.1)] = 10.0,
    rate: Annotated[
        float, typer.Option(help="echo traffic per client, kilobits/s (0: hold only)", min=0)
    ] = 8.0,
    target: Annotated[
        str | None, typer.Option(help="HOST:PORT (default: the first front listener)")
    ] = None,
    udp: Annotated[bool, typer.Option(help="UDP sessions instead of TCP")] = False,
    ramp: Annotated[
        float | None, typer.Option(help="seconds over which clients connect", min=0)
    ] = None,
    max_failed_ratio: Annotated[
        float | None, typer.Option(help="exit 1 when failed/attempted exceeds this", min=0, max=1)
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load the front (or --target) with asyncio clients; latency, throughput, balance."""
    from conduitctl.drills.loadtest import LoadSpec, Snapshot, max_failed_exceeded, run

    if target is None:
        settings, _ = _load(config)
        target = default_target(settings, udp)
    spec = LoadSpec.from_target(
        target, clients=clients, duration_s=duration, rate_kbps=rate, udp=udp, ramp_s=ramp
    )

    def progress(snap: Snapshot) -> None:
        if not as_json:
            err.print(
                f"[dim]{snap.elapsed_s:5.1f}s open {snap.open:>6} connected {snap.connected:>6} "
                f"failed {snap.failed:>5} dropped {snap.dropped:>5}[/]",
                highlight=False,
            )

    report = run(spec, progress=progress)
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_load(report)
    if max_failed_ratio is not None and max_failed_exceeded(report, max_failed_ratio):
        raise CheckFailed(
            f"loadtest: failed ratio {report.failed_ratio:.4f} exceeds --max-failed-ratio "
            f"{max_failed_ratio:g}"
        )


def _print_load(report: Any) -> None:
    d = report.to_dict()
    out.print(
        f"[bold]{d['mode']} {d['target']}[/]: {d['attempted']:,} attempted, "
        f"{d['connected']:,} connected, {d['failed']:,} failed ({d['failed_ratio']:.2%}), "
        f"{d['sessions_dropped']:,} established sessions dropped"
    )
    failures = {k: v for k, v in d["failed_by_reason"].items() if v}
    if failures:
        out.print(f"failed by reason: {failures}")
    lat = d["latency_ms"]
    out.print(
        f"connect -> greeting ms: p50 {lat['p50']}, p95 {lat['p95']}, p99 {lat['p99']}, "
        f"max {lat['max']}; {d['connections_per_second']:,.0f} connections/s; "
        f"throughput {d['throughput']['mbps']:.2f} Mbps; peak open {d['peak_open']:,}"
    )
    per = d["per_backend"]
    if per:
        spread = ", ".join(f"{name} {count}" for name, count in sorted(per.items()))
        out.print(f"per backend: {spread} (max/min {d['balance_ratio']})")
    if d["udp"]:
        out.print(f"udp loss ratio {d['udp']['loss_ratio']:.4%}")


@app.command()
def chaos(
    scenario: Annotated[
        str,
        typer.Option(
            help="kill | kill-many | hang | oom | front-restart | loss | cpu | memory",
            show_default=False,
        ),
    ],
    load: Annotated[
        int, typer.Option(help="clients held through the front during the drill (0: none)", min=0)
    ] = 300,
    duration: Annotated[
        float, typer.Option(help="seconds of load; the fault goes in once it is warm", min=2)
    ] = 15.0,
    rate: Annotated[
        float, typer.Option(help="echo traffic per client, kilobits/s (0: hold only)", min=0)
    ] = 8.0,
    fault_seconds: Annotated[
        float | None,
        typer.Option(help="loss, cpu, memory: how long the fault is held (default: duration/2)"),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="seconds to wait for recovery after the fault", min=1)
    ] = 30.0,
    loss_percent: Annotated[
        float, typer.Option(help="--scenario loss: share of packets dropped, percent")
    ] = 10.0,
    seed: Annotated[int | None, typer.Option(help="pick the victims reproducibly")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One bounded fault against the running fleet under load, then what the supervisor did
    and how fast. Exit 1 when the fleet did not recover within --timeout."""
    from conduitctl.drills.chaos import run_chaos

    settings, path = _load(config)
    report = run_chaos(
        settings,
        path,
        scenario,
        load,
        duration,
        rate_kbps=rate,
        seed=seed,
        progress=_progress(as_json),
        fault_s=fault_seconds,
        timeout_s=timeout,
        loss_percent=loss_percent,
    )
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_chaos(report)
    if not report.recovered:
        why = "the drill was interrupted" if report.aborted else f"within {timeout:g}s"
        raise CheckFailed(f"chaos {scenario}: the fleet did not recover ({why})")


def _print_chaos(report: Any) -> None:
    d = report.to_dict()

    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}s"

    verdict = "[green]recovered[/]" if d["recovered"] else "[red]NOT recovered[/]"
    out.print(f"[bold]chaos {d['scenario']}[/]: {d['fault']} -> {verdict}")
    out.print(
        f"detect {secs(d['time_to_detect_s'])}, out of the front {secs(d['time_to_front_out_s'])}, "
        f"back {secs(d['time_to_recover_s'])}, fleet healthy {secs(d['fleet_healthy_s'])}; "
        f"restarts {d['restarts']}, front restarts {d['front_restarts']}"
    )
    for v in d["per_victim"]:
        out.print(
            f"  {v['name']}: detected by {v['detected_by'] or '-'} at {secs(v['detect_s'])}, "
            f"out {secs(v['front_out_s'])}, back {secs(v['recover_s'])}, restarts {v['restarts']}",
            highlight=False,
        )
    if d["collateral"]:
        out.print(f"[yellow]collateral[/]: {', '.join(d['collateral'])}")
    failed = f" {d['failed_by_reason']}" if d["failed_by_reason"] else ""
    dropped = f" {d['dropped_by_reason']}" if d["dropped_by_reason"] else ""
    out.print(
        f"connections: {d['connections_attempted']:,} attempted "
        f"({d['new_connections_attempted']:,} during the fault), "
        f"{d['connections_failed']:,} failed{failed}; "
        f"{d['sessions_dropped']:,} established sessions dropped{dropped}",
        highlight=False,
    )
    fired = ", ".join(f"{a['rule']}({a['backend'] or '-'})" for a in d["alerts_fired"]) or "none"
    out.print(f"alerts fired: {fired}; notifications failed: {d['notify_failed']}")
    for note in d["notes"]:
        out.print(f"[dim]note: {note}[/]")


@app.command()
def demo(
    config: ConfigOpt = Path("examples/demo.toml"),
    clients: Annotated[int, typer.Option(help="loadtest clients", min=1)] = 2000,
    duration: Annotated[float, typer.Option(help="loadtest seconds", min=1)] = 15.0,
    keep_watching: Annotated[
        bool | None,
        typer.Option(help="after the load, watch status until Ctrl-C (default: on a terminal)"),
    ] = None,
) -> None:
    """The embedded default: up, live status under a short loadtest, then a clean down."""
    import threading

    from rich.console import Group
    from rich.live import Live

    from conduitctl import daemon_link as control
    from conduitctl.drills.loadtest import LoadSpec, Snapshot, run_load
    from conduitctl.observe.fleet import collect
    from conduitctl.ops.converge import down as converge_down

    settings, path, runtime, front = _fleet(config)
    watch = sys.stdout.isatty() if keep_watching is None else keep_watching
    try:
        from conduitctl.app import change
        from conduitctl.app.context import Fleet

        done = change.converge(Fleet(settings, path, StateDir(settings.state_dir),
                                     render_env(settings, path), runtime, front))  # fmt: skip
        result, pid = done.result, done.daemon_pid
        assert result is not None
        out.print(f"up: {len(result.actions)} backends, front {result.front}, supervisor pid {pid}")
        spec = LoadSpec.from_target(
            default_target(settings, udp=False), clients=clients, duration_s=duration, rate_kbps=8
        )
        latest: list[Snapshot] = []
        reports: list[Any] = []

        def load() -> None:
            import asyncio

            reports.append(asyncio.run(run_load(spec, progress=latest.append)))

        worker = threading.Thread(target=load, name="loadtest", daemon=True)
        worker.start()

        def screen() -> Any:
            view = collect(settings, runtime, front)
            snap = latest[-1] if latest else None
            load_line = (
                f"loadtest: {snap.elapsed_s:4.1f}s, {snap.open:,} open, {snap.connected:,} "
                f"connected, {snap.failed:,} failed, {snap.dropped:,} dropped"
                if snap
                else "loadtest: starting"
            )
            return Group(_status_table(view), _front_line(view.front), load_line)

        with Live(screen(), console=out, refresh_per_second=2) as live:
            while worker.is_alive():
                worker.join(1.0)
                live.update(screen())
            while watch:
                time.sleep(2)
                live.update(screen())
        out.print()
        if reports:
            _print_load(reports[0])
    except KeyboardInterrupt:
        err.print("interrupted: stopping the demo fleet")
    finally:
        control.stop(settings.state_dir)
        converge_down(settings, runtime, front, progress=_progress(False))
        out.print("demo stopped: nothing left running (data kept in the state dir)")


# --- sim ------------------------------------------------------------------------------------


@sim_app.command("build-image")
def sim_build_image(
    tag: Annotated[str, typer.Option(help="image tag")] = "conduit-sim:local",
    rebuild_base: Annotated[bool, typer.Option(help="debootstrap the Debian base again")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build the simulator image locally (debootstrap + docker import + docker build; no pull)."""
    from conduitctl.sim.image import build_image

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


# --- entry point ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; known errors become one line and an exit code, never a traceback."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="conduitctl", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err.print("aborted")
        return 130
    except typer.TyperException as exc:  # usage errors: unknown option, bad value...
        ctx = getattr(exc, "ctx", None)
        hint = f"; see `{ctx.command_path} --help`" if ctx else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        err.print(f"error: {message}{hint}", markup=False, highlight=False)
        return 2
    except ConduitctlError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception:
        fd, log_path = tempfile.mkstemp(prefix="conduitctl-error-", suffix=".log")
        with os.fdopen(fd, "w") as handle:
            handle.write(traceback.format_exc())
        err.print(f"unexpected error: {sys.exc_info()[1]!r}; traceback in {log_path}")
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

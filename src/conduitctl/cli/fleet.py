"""The fleet: up, down, status, logs, scale."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conduitctl.cli.common import (
    ConfigOpt,
    JsonOpt,
    app,
    emit_json,
    fleet_parts,
    out,
    progress_printer,
)
from conduitctl.errors import BadInput
from conduitctl.settings import (
    find_config,
    load_settings,
)

if TYPE_CHECKING:
    from rich.table import Table

STALE_TICKS = 3  # the supervisor's last tick is trusted while younger than this many intervals


def print_fleet_plan(plan: Any) -> None:
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
            print_fleet_plan(whole)
        refuse(whole)  # exit 2 as `up` would, nothing changed either way
        return
    done = change.converge(
        fleet, new_keys=new_keys, start_supervisor=not no_daemon, progress=progress_printer(as_json)
    )
    result = done.result
    assert result is not None
    if as_json:
        emit_json({**result.to_dict(), "dry_run": False, "daemon_pid": done.daemon_pid})
        return
    verdict = "changed" if result.changed else "nothing to change"
    out.print(f"up: {verdict} ({change.summary(result)}) in {result.elapsed_s:.1f}s")


@app.command()
def down(
    config: ConfigOpt = None,
    purge: Annotated[
        bool,
        typer.Option(help="also delete the data (identity keys); needs --yes, backs them up first"),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="confirm --purge")] = False,
    discard_keys: Annotated[
        bool,
        typer.Option(help="--purge without backing the keys up first: they are lost for good"),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop everything conduitctl owns; keeps the data (identity keys) unless --purge."""
    from conduitctl.app import change
    from conduitctl.app.context import Fleet

    if purge and not yes:
        raise BadInput("down --purge deletes every station's identity key: add --yes "
                       "(the keys are backed up and verified first)")  # fmt: skip
    if discard_keys and not purge:
        raise BadInput("--discard-keys goes with --purge --yes")
    downed = change.down(
        Fleet.load(config),
        purge=purge,
        backup_keys=purge and not discard_keys,
        progress=progress_printer(as_json),
    )
    result = downed.result
    if as_json:
        emit_json({**result.to_dict(), "keys_backup": downed.keys_backup})
        return
    kept = "data purged" if purge else "data kept"
    saved = f"; keys backed up in {downed.keys_backup}" if downed.keys_backup else ""
    out.print(f"down: {len(result.stopped)} backends stopped, {kept}{saved}")


def status_table(view: Any) -> Table:
    from rich.table import Table

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


def front_line(front: Any) -> str:
    if not front.configured:
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
    from conduitctl import alerts as alert_engine
    from conduitctl import daemon_link as control
    from conduitctl.observe.fleet import collect as collect_now
    from conduitctl.supervise.files import last_tick_cpu, load_alert_state

    settings, _, runtime, front = fleet_parts(config)

    def collect() -> Any:
        # While the supervisor runs, its last tick has each backend's CPU rate: no need to
        # sample every process twice, a wait apart. Stale after a few missed ticks.
        recent = None
        if control.daemon_pid(settings.state_dir) is not None:
            max_age = STALE_TICKS * settings.health.interval
            recent = last_tick_cpu(settings.state_dir, time.time(), max_age)
        return collect_now(settings, runtime, front, recent)

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
            **collect().to_dict(),
            "supervisor": supervisor(),
            "rollout": None if state is None else {**state.to_dict(), "active": state.active},
        }

    if as_json and not watch:
        emit_json(document())
        return

    def render() -> Any:
        from rich.console import Group

        view = collect()
        sup = supervisor()
        line = (
            f"supervisor: pid {sup['pid']}, {len(sup['alerts_firing'])} alerts firing"
            if sup["pid"]
            else "supervisor: [red]not running[/] (conduitctl up starts it)"
        )
        lines: list[Any] = [status_table(view), front_line(view.front), line]
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
    from rich.live import Live

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
    from conduitctl.app.context import Fleet

    fleet = Fleet.load(config)
    for line in fleet.runtime.logs(fleet.backend(name), tail=tail, follow=follow):
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
    from conduitctl.ops.converge import with_container_count

    path = find_config(config)
    load_settings(path)  # the current file must be valid before it is edited
    text, settings = with_container_count(path, count)
    fleet = Fleet.of(settings, path)
    supervised = daemon_link.daemon_pid(fleet.state_dir) is not None
    done = change.converge(
        fleet,
        reason="scale",
        start_supervisor=supervised,
        config_text=text,
        progress=progress_printer(as_json),
    )
    result = done.result
    assert result is not None
    if as_json:
        emit_json({"containers": count, **result.to_dict()})
    else:
        out.print(f"scaled to {count} backends in {result.elapsed_s:.1f}s (front {result.front})")

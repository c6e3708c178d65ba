"""The fleet: up, down, status, logs, scale."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from conduitctl.cli.common import (
    ConfigOpt,
    JsonOpt,
    app,
    emit_json,
    out,
    progress_printer,
)
from conduitctl.errors import BadInput
from conduitctl.settings import (
    find_config,
    load_settings,
)


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


@app.command()
def status(
    config: ConfigOpt = None,
    watch: Annotated[bool, typer.Option(help="refresh every --interval seconds")] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes", min=0.2)] = 2.0,
    direct: Annotated[
        bool, typer.Option(help="read the fleet here, not through the running supervisor")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Per backend state, health, clients, CPU, RSS, restarts, uptime; totals; the front.

    While the supervisor runs, a plain `status` (or `status --json`) is answered by it over
    its status socket (conduitctl.fast_status), from the same code as --direct."""
    from conduitctl.app import status as shown
    from conduitctl.app.context import Fleet

    fleet = Fleet.load(config)
    if as_json and not watch:
        emit_json(shown.document(fleet, "direct"))
        return
    if not watch:
        out.print(shown.render(fleet))
        return
    if as_json:  # one JSON document per line, for scripts that follow
        while True:
            sys.stdout.write(json.dumps(shown.document(fleet, "direct"), default=str) + "\n")
            sys.stdout.flush()
            time.sleep(interval)
    from rich.live import Live

    with Live(shown.render(fleet), console=out, refresh_per_second=4) as live:
        while True:
            time.sleep(interval)
            live.update(shown.render(fleet))


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

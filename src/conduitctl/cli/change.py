"""Change and its safety nets: snapshots, rollback, rollout, keys backup/restore."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from conduitctl.cli.common import (
    ConfigOpt,
    JsonOpt,
    app,
    emit_json,
    load_config,
    out,
    progress_printer,
)
from conduitctl.cli.fleet import print_fleet_plan
from conduitctl.errors import BadInput, CheckFailed, ConduitctlError


@app.command("snapshots")
def snapshots_cmd(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The snapshots taken before each change (settings, front config, images, backends)."""
    from datetime import datetime

    from conduitctl.ops.snapshots import list_snapshots

    settings, _ = load_config(config)
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
    from conduitctl.app import revert
    from conduitctl.app.context import Fleet

    fleet = Fleet.load(config)
    if dry_run:
        planned = revert.rollback_plan(fleet, snapshot)
        chosen = planned.snapshot
        if as_json:
            emit_json({"snapshot": chosen.id, "dry_run": True, **planned.plan.to_dict()})
            return
        out.print(f"rollback to {chosen.id} ({chosen.reason}) would:")
        print_fleet_plan(planned.plan)
        return
    result = revert.roll_back(fleet, snapshot, batch=batch, progress=progress_printer(as_json))
    if as_json:
        emit_json(result.to_dict())
        return
    out.print(
        f"rolled back to {result.snapshot} in {result.elapsed_s:.1f}s (front {result.up.front}); "
        f"`conduitctl rollback {result.saved_as}` undoes it"
    )


def _rollback_legacy(config: Path | None, snapshot: str | None, as_json: bool) -> None:
    from conduitctl.app import revert
    from conduitctl.app.context import Fleet

    if snapshot is not None:
        raise BadInput("--legacy runs the current settings in conduit-manager's layout; "
                       "it takes no snapshot (roll back to one first)")  # fmt: skip
    result = revert.to_legacy(Fleet.load(config), progress=progress_printer(as_json))
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
    from conduitctl.app import revert
    from conduitctl.app.context import Fleet
    from conduitctl.rollout_plan import Gates
    from conduitctl.units import parse_duration

    if resume and abort:
        raise BadInput("--resume and --abort do not go together")
    fleet = Fleet.load(config)
    staging = None
    if not (abort or resume):
        try:
            soak_s = parse_duration(soak)
        except ValueError as exc:
            raise BadInput(f"--soak {soak!r}: {exc}") from None
        gates = Gates(max_cpu, max_memory, max_error_ratio)
        staging = revert.Staging(stages, soak_s, clients_steps, gates, drain_timeout)
    state = revert.rollout(fleet, staging=staging, abort=abort, progress=progress_printer(as_json))
    if as_json:
        emit_json(state.to_dict())
    else:
        out.print(state.summary(time.time()))
    if state.phase == "failed":
        raise ConduitctlError(state.message)
    if state.phase == "rolled_back" and not abort:
        raise CheckFailed(f"rolled back: {state.message}")


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

    settings, _ = load_config(config)
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
    from conduitctl.app import operate
    from conduitctl.app.context import Fleet

    report = operate.restore_keys(Fleet.load(config), directory, backend=backend, force=force)
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_keys(report)

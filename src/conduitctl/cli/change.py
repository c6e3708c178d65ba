"""Change and its safety nets: snapshots, rollback, rollout, keys backup/restore."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from conduitctl.cli.common import (
    ConfigOpt,
    JsonOpt,
    app,
    emit_json,
    fleet_parts,
    load_config,
    out,
    progress_printer,
)
from conduitctl.cli.fleet import print_fleet_plan
from conduitctl.errors import BadInput, CheckFailed, ConduitctlError
from conduitctl.hostinfo import render_env
from conduitctl.settings import (
    Settings,
)


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
    from conduitctl import daemon_link as control
    from conduitctl.front import front_for
    from conduitctl.ops import snapshots
    from conduitctl.ops.rollback import load_target
    from conduitctl.ops.rollback import rollback as roll_back
    from conduitctl.runtime import runtime_for

    settings, path = load_config(config)
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
        print_fleet_plan(whole)
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
            progress=progress_printer(as_json),
            batch=batch,
        )
    target, _ = load_config(path)
    if control.signal_daemon(target.state_dir, signal.SIGHUP):
        progress_printer(as_json)("supervisor re-read conduit.toml")
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
    settings, _, runtime, front = fleet_parts(config)
    refuse_if_active(settings.state_dir)
    taken = snapshots.take(settings, runtime, front.installed_config, "legacy")
    progress_printer(as_json)(f"snapshot {taken.id}")
    if control.stop(settings.state_dir):  # it would restart the backends being replaced
        progress_printer(as_json)("supervisor stopped")
    result = to_legacy(settings, runtime, front, progress=progress_printer(as_json))
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
    settings, path = load_config(config)
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
        progress=progress_printer(as_json),
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
    from conduitctl.ops.keys import restore

    settings, _ = load_config(config)
    report = restore(settings, directory, backend=backend, force=force)
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_keys(report)

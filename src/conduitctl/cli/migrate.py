"""`conduitctl migrate`: conduit-manager's stations into this fleet, every key carried."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from conduitctl.app import migrate as migrating
from conduitctl.cli.common import ConfigOpt, JsonOpt, app, emit_json, out, progress_printer
from conduitctl.runtime.docker_migrate import DockerManagerHost


@app.command()
def migrate(
    settings_conf: Annotated[
        Path | None,
        typer.Option(
            "--settings",
            help="conduit-manager's settings.conf (default: "
            "/opt/conduit/settings.conf when present)",
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="hand the stations over (without it: the plan only)")
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move conduit-manager's stations into this fleet one at a time, each on its own key."""
    migration = migrating.prepare(config, settings_conf, DockerManagerHost)
    plan = migration.surveyed.plan
    if not yes or plan.refusals:
        _show(migration, as_json)
        migrating.refuse(plan)  # exit 2, nothing changed, when refused
        if not as_json:
            out.print("nothing changed: run again with --yes to hand the stations over")
        return
    done = migrating.carry_out(migration, progress_printer(as_json))
    if as_json:
        emit_json(_document(done))
        return
    assert done.migrated is not None
    out.print(f"migrated {len(done.migrated.moved)} stations, each on its own key: "
              f"{', '.join(done.migrated.moved)}; conduit-manager's containers removed, "
              "their volumes kept")  # fmt: skip
    for leftover in done.migrated.left:
        out.print(f"left: {leftover}")


def _document(m: migrating.Migration) -> dict[str, Any]:
    plan = m.surveyed.plan
    return {
        "layout": plan.layout,
        "image": plan.image,
        "v1_flags": plan.v1_flags,
        "config": str(m.fleet.config_path),
        "config_written": m.config_text is not None,
        "not_carried_over": m.not_carried,
        "stations": [
            {
                "container": s.station.container,
                "volume": s.station.volume,
                "key_sha256": s.station.key_sha256,
                "backend": s.backend,
                "target_volume": s.target_volume,
                "running": s.station.running,
                "set_aside": s.station.set_aside,
                "moved_already": s.done,
            }
            for s in plan.steps
        ],
        "refusals": plan.refusals,
        "notes": plan.notes,
        "moved": m.migrated.moved if m.migrated else [],
        "removed": m.migrated.removed if m.migrated else [],
        "left": m.migrated.left if m.migrated else [],
    }


def _show(m: migrating.Migration, as_json: bool) -> None:
    if as_json:
        emit_json(_document(m))
        return
    plan = m.surveyed.plan
    out.print(f"conduit-manager layout: {plan.layout}; image {plan.image or '-'}"
              f"{' (CLI 1.x flags)' if plan.v1_flags else ''}")  # fmt: skip
    for step in plan.steps:
        s = step.station
        key = (s.key_sha256 or "no key")[:12]
        where = "its own volume" if step.shared_volume else step.target_volume
        if step.done:
            out.print(f"  {s.aside} ({s.volume}, key {key}): moved already, {step.backend} "
                      "runs on it; only its removal is left", highlight=False)  # fmt: skip
            continue
        state = "running" if s.running else "stopped"
        name = f"{s.aside}, set aside by an earlier migrate" if s.set_aside else s.container
        out.print(f"  {name} ({state}, {s.volume}, key {key}) -> {step.backend} on {where}",
                  highlight=False)  # fmt: skip
    if m.config_text is not None:
        out.print(f"conduit.toml to write: {m.fleet.config_path}")
    for line in m.not_carried:
        out.print(f"not carried over: {line}")
    for note in plan.notes:
        out.print(f"note: {note}")
    for refusal in plan.refusals:
        out.print(f"[red]refused[/]: {refusal}")

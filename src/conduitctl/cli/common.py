"""What every command module shares: the Typer app, the consoles, the common options and
the small helpers that load the fleet and show progress."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from conduitctl.settings import (
    Settings,
    find_config,
    load_settings,
)

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


def load_config(config: Path | None) -> tuple[Settings, Path]:
    path = find_config(config)
    return load_settings(path), path


def fleet_parts(config: Path | None) -> tuple[Settings, Path, Any, Any]:
    """The Fleet context, unpacked for the commands not yet moved onto it."""
    from conduitctl.app.context import Fleet

    fleet = Fleet.load(config)
    return fleet.settings, fleet.config_path, fleet.runtime, fleet.front


def progress_printer(as_json: bool) -> Any:
    def show(message: str) -> None:
        if not as_json:
            err.print(f"[dim]- {message}[/]", highlight=False)

    return show

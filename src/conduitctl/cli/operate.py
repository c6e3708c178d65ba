"""Acting on running backends: restart (one, graceful, rolling), drain, undrain."""

from __future__ import annotations

import time
from typing import Annotated

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
    from conduitctl.app import operate
    from conduitctl.app.context import Fleet
    from conduitctl.ops.drain import DrainResult, RestartAborted

    if (name is None) == (not all_backends):
        raise BadInput("restart takes a backend name or --all (not both, not neither)")
    fleet = Fleet.load(config)
    settings = fleet.settings
    if low_clients is not None and settings.front.enabled:
        raise BadInput(
            f'--low-clients is for a fleet without a front; this one has front.kind = "'
            f'{settings.front.kind}" (its backends are drained: drop --low-clients)'
        )
    if low_clients is not None and not (graceful or all_backends):
        raise BadInput("--low-clients goes with --graceful or --all")
    progress = progress_printer(as_json)
    started = time.monotonic()
    restarted: list[str] = []
    results: list[DrainResult] = []
    if all_backends:
        try:
            results = operate.rolling_restart(
                fleet, timeout=timeout, low_clients=low_clients, progress=progress
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
        one = operate.graceful_restart(
            fleet, name, timeout=timeout, low_clients=low_clients, progress=progress
        )
        results = [one]
        restarted = [name]
    else:
        assert name is not None
        operate.restart(fleet, name, progress=progress)
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
    from conduitctl.app import operate
    from conduitctl.app.context import Fleet

    fleet = Fleet.load(config)
    result = operate.drain(fleet, name, timeout=timeout, progress=progress_printer(as_json))
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
    from conduitctl.app import operate
    from conduitctl.app.context import Fleet

    operate.undrain(Fleet.load(config), name, progress=progress_printer(as_json))
    if as_json:
        emit_json({"undrained": name})
    else:
        out.print(f"{name} is back in the front")

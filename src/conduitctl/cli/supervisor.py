"""The supervisor and what it recorded: daemon, daemon-stop, events, history, alerts."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from conduitctl.cli.common import (
    ConfigOpt,
    JsonOpt,
    app,
    emit_json,
    load_config,
    out,
)
from conduitctl.errors import BadInput, CheckFailed
from conduitctl.hostinfo import render_env
from conduitctl.settings import (
    Settings,
)


@app.command()
def daemon(config: ConfigOpt = None) -> None:
    """Run the supervisor in the foreground (the systemd unit runs this; `up` starts it)."""
    from conduitctl.logs import setup_logging
    from conduitctl.supervise.service import run as run_daemon

    settings, path = load_config(config)
    setup_logging(
        level=settings.daemon.log_level,
        json=settings.daemon.log_json,
        file=render_env(settings, path).log_dir / "daemon.log",
        secret_urls=settings.alerts.notifiers,
    )
    run_daemon(settings, path)  # conduit.toml parsed once


@app.command("daemon-stop")
def daemon_stop(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Stop the supervisor; the fleet keeps running."""
    from conduitctl import daemon_link as control

    settings, _ = load_config(config)
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

    settings, _ = load_config(config)
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
    settings, _ = load_config(config)
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

    settings, _ = load_config(config)
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

    settings, _ = load_config(config)
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

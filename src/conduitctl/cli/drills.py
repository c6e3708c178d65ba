"""Drills: loadtest, chaos, demo."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from conduitctl.cli.common import (
    ConfigOpt,
    JsonOpt,
    app,
    emit_json,
    err,
    load_config,
    out,
    progress_printer,
)
from conduitctl.errors import CheckFailed
from conduitctl.settings import (
    Settings,
)


def default_target(settings: Settings, udp: bool) -> str:
    """The first front listener of the wanted protocol, as HOST:PORT."""
    from conduitctl.drills.loadtest import front_target
    from conduitctl.settings import Proto

    proto = Proto.UDP if udp else Proto.TCP
    host, port = front_target(settings, proto, fix="pass --target HOST:PORT")
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
        settings, _ = load_config(config)
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

    settings, path = load_config(config)
    report = run_chaos(
        settings,
        path,
        scenario,
        load,
        duration,
        rate_kbps=rate,
        seed=seed,
        progress=progress_printer(as_json),
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
    from conduitctl.app import change
    from conduitctl.app.context import Fleet
    from conduitctl.drills.loadtest import LoadSpec, Snapshot, run_load
    from conduitctl.observe.fleet import collect
    from conduitctl.ops.converge import down as converge_down

    fleet = Fleet.load(config)
    settings, runtime, front = fleet.settings, fleet.runtime, fleet.front
    watch = sys.stdout.isatty() if keep_watching is None else keep_watching
    try:
        done = change.converge(fleet)
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

        from conduitctl.app.status import front_line, status_table

        def screen() -> Any:
            view = collect(settings, runtime, front)
            snap = latest[-1] if latest else None
            load_line = (
                f"loadtest: {snap.elapsed_s:4.1f}s, {snap.open:,} open, {snap.connected:,} "
                f"connected, {snap.failed:,} failed, {snap.dropped:,} dropped"
                if snap
                else "loadtest: starting"
            )
            return Group(status_table(view), front_line(view.front), load_line)

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
        converge_down(settings, runtime, front, progress=progress_printer(False))
        out.print("demo stopped: nothing left running (data kept in the state dir)")

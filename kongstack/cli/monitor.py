"""``kongstack monitor``: a live per-instance view (CPU, memory, request rate, latency) with
values above thresholds highlighted, an alert list, a JSON export, and a history summary."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kongstack.cli.exits import fail
from kongstack.cli.stackopts import DriverOpt, GatewayOpt, JsonOpt, StackOpt, options
from kongstack.cli.views import InstanceRow, Sample, StackOptions, Thresholds, rates, scrape
from kongstack.core.errors import StackError
from kongstack.core.files import write_atomic
from tasks.instances.base import InstanceDriver
from tasks.tick.pool import build_driver

console = Console()


class Monitor:
    """Keeps the previous scrape per instance so each refresh shows rates since the last."""

    def __init__(self, opts: StackOptions, thresholds: Thresholds) -> None:
        self.opts = opts
        self.thresholds = thresholds
        self.driver: InstanceDriver = build_driver(opts.pool())
        self.previous: dict[str, Sample | None] = {}

    def sample(self) -> list[InstanceRow]:
        rows = []
        for inst in sorted(self.driver.list(), key=lambda i: i.name):
            try:
                stats = self.driver.stats(inst.id)
                cpu, mem = stats.cpu_percent, stats.memory_percent
            except StackError:
                cpu = mem = None
            now = scrape(inst.address)
            rps, mean, p95 = rates(self.previous.get(inst.id), now)
            self.previous[inst.id] = now
            rows.append(InstanceRow(inst.name, inst.address, str(inst.state), cpu, mem, rps,
                                    mean, p95))
        return rows

    def snapshot(self, rows: list[InstanceRow]) -> dict[str, Any]:
        return {
            "taken_at": datetime.now(UTC).isoformat(),
            "stack": self.opts.name,
            "thresholds": self.thresholds.__dict__,
            "instances": [r.as_dict() for r in rows],
            "alerts": [a for r in rows for a in self.thresholds.breaches(r)],
        }


def render(rows: list[InstanceRow], thresholds: Thresholds, stack: str) -> Group:
    table = Table(title=f"{stack}: {len(rows)} instance(s) at "
                        f"{datetime.now(UTC):%H:%M:%S} UTC")
    for col in ("instance", "address", "state", "CPU %", "mem %", "req/s", "mean ms", "p95 ms"):
        table.add_column(col, justify="right" if "%" in col or "/" in col or "ms" in col
                         else "left")

    def cell(value: float | None, limit: float | None, digits: int = 1) -> Text:
        if value is None:
            return Text("-", style="dim")
        style = "bold red" if limit is not None and value > limit else ""
        return Text(f"{value:.{digits}f}", style=style)

    for r in rows:
        table.add_row(r.name, r.address, r.state, cell(r.cpu_percent, thresholds.cpu_percent),
                      cell(r.memory_percent, thresholds.memory_percent),
                      cell(r.rps, thresholds.rps), cell(r.mean_ms, None),
                      cell(r.p95_ms, thresholds.p95_ms))
    alerts = [a for r in rows for a in thresholds.breaches(r)]
    notes = Text("\n".join(f"ALERT {a}" for a in alerts) or "no value above its threshold",
                 style="bold red" if alerts else "green")
    return Group(table, notes)


def _export(path: Path, snapshots: list[dict[str, Any]]) -> None:
    write_atomic(path, json.dumps(snapshots, indent=1))  # a reader never sees half a file


def history_summary(opts: StackOptions, days: float) -> None:
    from tasks.maintenance.analysis import AnalysisConfig, analyse, load_scaling_log_frame

    path = opts.history().path
    now = datetime.now(UTC)
    result = analyse(load_scaling_log_frame(path, since=now - timedelta(days=days), until=now),
                     AnalysisConfig(), until=now)
    if not result.events:
        console.print(f"no scaling events in the last {days:g} day(s) ({path})")
        return
    r = result.reaction_summary
    console.print(f"[bold]Scaling log, last {days:g} day(s)[/]: {result.events} events, "
                  f"{result.instance_hours:.1f} instance-hours, {len(result.flaps)} flap(s), "
                  f"reaction median {r['median_s'] if r['median_s'] is not None else '-'}s "
                  f"({r['answered']} answered, {r['unanswered']} unanswered)")
    daily = Table(title="Per day")
    for col in ("date", "scale_up", "scale_down", "manual", "repair", "failed", "total"):
        daily.add_column(col)
    for day, row in result.actions_per_day.iterrows():
        daily.add_row(str(day), *(str(int(row[c])) for c in
                                  ("scale_up", "scale_down", "manual", "repair", "failed",
                                   "total")))
    console.print(daily)
    counts = Table(title="Time at each instance count")
    for col in ("instances", "hours", "share"):
        counts.add_column(col)
    for t in result.time_at_count.itertuples():
        counts.add_row(str(t.instances), f"{t.hours:.2f}", f"{t.share:.1%}")
    console.print(counts)


def monitor(
    interval: Annotated[float, typer.Option(min=0.5, max=3600, help="Seconds between "
                                            "refreshes.")] = 5.0,
    once: Annotated[bool, typer.Option(help="One reading (two scrapes --sample-seconds "
                                       "apart for the rates), printed, then exit.")] = False,
    sample_seconds: Annotated[float, typer.Option(min=0.1, max=60)] = 1.0,
    export: Annotated[Path | None, typer.Option("--export", help="Write the readings to "
                                                "this JSON file.")] = None,
    history: Annotated[float | None, typer.Option("--history", min=0.01, max=3650,
                                                  help="Summarise the scaling log of "
                                                  "the last DAYS instead.")] = None,
    cpu_threshold: Annotated[float, typer.Option(min=0, max=100)] = 80.0,
    memory_threshold: Annotated[float, typer.Option(min=0, max=100)] = 80.0,
    rps_threshold: Annotated[float, typer.Option(min=0)] = 150.0,
    latency_threshold_ms: Annotated[float, typer.Option(min=0)] = 1000.0,
    duration: Annotated[float | None, typer.Option(hidden=True)] = None,
    stack: StackOpt = None, driver: DriverOpt = None, gateway: GatewayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Live view of every instance; values above a threshold are shown in red."""
    # --json: with --once one document; otherwise one JSON object per reading (JSON Lines).
    opts = options(stack, driver, gateway, as_json=as_json)
    if export is not None and export.suffix.lower() != ".json":
        raise typer.BadParameter(f"{export}: the export is JSON, name it *.json",
                                 param_hint="--export")
    if history is not None:
        try:
            history_summary(opts, history)
        except StackError as exc:  # MissingExtra on an install without [analysis]
            raise fail(exc, as_json=as_json) from None
        return
    thresholds = Thresholds(cpu_threshold, memory_threshold, rps_threshold, latency_threshold_ms)
    try:
        mon = Monitor(opts, thresholds)
        snapshots: list[dict[str, Any]] = []
        if once:
            mon.sample()
            time.sleep(sample_seconds)  # the rate window, not a readiness wait
            rows = mon.sample()
            snapshots.append(mon.snapshot(rows))
            if as_json:
                typer.echo(json.dumps(snapshots[-1], indent=1))
            else:
                console.print(render(rows, thresholds, opts.name))
        elif as_json:
            deadline = None if duration is None else time.monotonic() + duration
            mon.sample()
            try:
                while deadline is None or time.monotonic() < deadline:
                    time.sleep(interval)
                    snapshots.append(mon.snapshot(mon.sample()))
                    typer.echo(json.dumps(snapshots[-1]))
                    if export is not None:
                        _export(export, snapshots)
            except KeyboardInterrupt:
                pass
        else:
            deadline = None if duration is None else time.monotonic() + duration
            mon.sample()
            with Live(console=console, refresh_per_second=4, transient=False) as live:
                try:
                    while deadline is None or time.monotonic() < deadline:
                        time.sleep(interval)
                        rows = mon.sample()
                        live.update(render(rows, thresholds, opts.name))
                        snapshots.append(mon.snapshot(rows))
                        if export is not None:
                            _export(export, snapshots)
                except KeyboardInterrupt:
                    pass
    except StackError as exc:
        raise fail(exc, as_json=as_json) from None
    if export is not None:
        _export(export, snapshots)
        Console(stderr=as_json).print(f"exported {len(snapshots)} reading(s) to {export}")


def register(app: typer.Typer) -> None:
    app.command()(monitor)

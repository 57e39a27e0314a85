"""``kongstack simulate``: replay a request-rate trace through autoscaling configurations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from autoscaler.config import AutoscalePolicy
from autoscaler.presets import PRESETS
from autoscaler.replay import oracle, simulate
from autoscaler.scoring import score, total
from autoscaler.service_model import ServiceModel, fit_factor
from kongstack.core.errors import ConfigError
from tasks.simulation.traces import format_table, plot_png, read_trace, write_json
from tasks.tick.config import load_autoscale_config

HELP = (
    "Replay request-rate traces through autoscaling configurations and score them.\n\n"
    "TRACE is a CSV with the header `t_seconds,rps`: each row is a bin starting at t_seconds "
    "(seconds from the trace start, increasing; any bin width, also irregular) holding the "
    "bin's mean request rate. Replay holds each value for its bin (step-hold), second by "
    "second. By default each trace is scaled so the 99th percentile of its 60 s means needs "
    "--fit-pool instances at the SLO.\n\n"
    "Each configuration runs the real decision core every tick, as the autoscale flow does "
    "(learn the capacity, decide, record), on the metrics Prometheus would have scraped from "
    "a modelled service: each ready instance serves --capacity-rps at 100 % CPU and reports "
    "the CPU that load gives (with jitter and rare spikes); new instances start for "
    "--startup-seconds; metrics are scraped every --scrape-interval as the mean over "
    "--rate-window; p95 latency = --base-p95-ms / (1 - u) for utilisation u; demand over "
    "capacity is dropped (and counted as failed requests). A second violates the SLO when "
    "its utilisation is over --slo-utilisation (0: when p95 > --slo-p95-ms) or a request is "
    "dropped.\n\n"
    "--config takes a preset (default: AutoscalePolicy() with only the pool bounds, no "
    "tuning: it learns the capacity; tuned: the same with the rate target an operator would "
    "set; threshold: the seed's rules; hpa: a Kubernetes-HPA-style baseline) or an autoscale "
    "config file (as deployments/autoscale.yaml: AutoscalePolicy fields under `policy:`, read "
    "as the autoscale flow reads it; the file's stem names the column).\n\n"
    "Prints per trace, and summed over the traces, a side-by-side table: SLO-violation "
    "seconds, dropped %, instance-seconds and their ratio to the foresight oracle (each second "
    "exactly the instances it needs, ready in advance) and to the oracle that may change the "
    "pool only once per --oracle-tick seconds, scale actions, direction reversals, reaction "
    "time to load steps and the capacity each policy learned. Writes <out>/<trace>.json and "
    "<out>/<trace>.png (and <out>/summed.json)."
)


def _policies(
    configs: list[str], model: ServiceModel, lo: int, hi: int
) -> dict[str, AutoscalePolicy]:
    chosen: dict[str, AutoscalePolicy] = {}
    for config in configs:
        if config in PRESETS:
            chosen[config] = PRESETS[config](model, lo, hi)
            continue
        path = Path(config)
        if not path.exists():
            raise ConfigError(
                f"--config: {config!r} is neither a preset ({', '.join(PRESETS)}) nor a file"
            )
        # The autoscale flow's loader: the file, its KONGSTACK_AUTOSCALE_* overrides, then
        # the bounds given here.
        loaded = load_autoscale_config(file=path,
                                       parameters={"min_instances": lo, "max_instances": hi})
        chosen[path.stem] = loaded.policy
    return chosen


def simulate_command(
    traces: Annotated[list[Path], typer.Argument(help="Trace CSV file(s): t_seconds,rps.")],
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config",
            "-c",
            help="Preset (default|tuned|threshold|hpa) or config file; repeat it. "
            "Default: default, threshold, hpa.",
        ),
    ] = None,
    min_instances: Annotated[int, typer.Option(help="Pool lower bound for every config.")] = 1,
    max_instances: Annotated[int, typer.Option(help="Pool upper bound for every config.")] = 20,
    fit_pool: Annotated[
        int,
        typer.Option(
            help="Scale each trace so the p99 of its --fit-window means needs this many "
            "instances at the SLO (0 = do not scale)."
        ),
    ] = 12,
    fit_window: Annotated[
        int, typer.Option(help="Seconds averaged before the p99 of --fit-pool is taken.")
    ] = 60,
    scale: Annotated[float, typer.Option(help="Multiply the rates by this (after fitting).")] = 1.0,
    capacity_rps: Annotated[
        float, typer.Option(help="Requests/s one instance serves at 100 % CPU.")
    ] = 100.0,
    startup_seconds: Annotated[int, typer.Option(help="Start-up time of a new instance.")] = 20,
    drain_seconds: Annotated[int, typer.Option(help="Drain time of a removed instance.")] = 10,
    scrape_interval: Annotated[int, typer.Option(help="Metric scrape interval, seconds.")] = 15,
    rate_window: Annotated[
        int, typer.Option(help="Metrics average over this window, seconds.")
    ] = 60,
    tick: Annotated[
        float | None, typer.Option(min=1, max=3600, help=(
            "Decision interval, 1..3600 s (default: each policy's)."))
    ] = None,
    oracle_tick: Annotated[
        int, typer.Option(help="The per-tick oracle changes the pool once per this many s.")
    ] = 30,
    base_p95_ms: Annotated[float, typer.Option(help="p95 latency of an idle instance.")] = 100.0,
    slo_utilisation: Annotated[
        float, typer.Option(help="SLO: per-second utilisation at most this (0: use latency).")
    ] = 0.9,
    slo_p95_ms: Annotated[
        float, typer.Option(help="SLO when --slo-utilisation is 0: p95 latency limit, ms.")
    ] = 500.0,
    out: Annotated[Path, typer.Option(help="Directory for the JSON and PNG output.")] = Path(
        "var/simulate"
    ),
    plot: Annotated[bool, typer.Option("--plot/--no-plot")] = True,
) -> None:
    try:
        model = ServiceModel(
            capacity_rps=capacity_rps,
            startup_seconds=startup_seconds,
            drain_seconds=drain_seconds,
            scrape_interval_seconds=scrape_interval,
            rate_window_seconds=rate_window,
            base_p95_ms=base_p95_ms,
            slo_p95_ms=slo_p95_ms,
            slo_utilisation=slo_utilisation or None,
        )
        if oracle_tick < 1:
            raise ConfigError(f"--oracle-tick: must be at least 1 s, got {oracle_tick}")
        policies = _policies(
            config or ["default", "threshold", "hpa"], model, min_instances, max_instances
        )
        fit = Fit(pool=fit_pool, window=fit_window, scale=scale)
        per_trace = [
            _replay_one(path, policies, model, fit, tick, oracle_tick, out, plot)
            for path in traces
        ]
        if len(per_trace) > 1:
            summed = total(per_trace)
            typer.echo(f"\nSummed over {len(per_trace)} traces")
            typer.echo(format_table(summed))
            write_json(out / "summed.json", {"traces": [str(p) for p in traces],
                                             "results": summed})
    except (ConfigError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc


@dataclass(frozen=True)
class Fit:
    pool: int
    window: int
    scale: float

    def factor(self, demand: list[float], model: ServiceModel) -> float:
        fitted = fit_factor(demand, model, self.pool, window=self.window) if self.pool else 1.0
        return fitted * self.scale


def _replay_one(
    path: Path,
    policies: dict[str, AutoscalePolicy],
    model: ServiceModel,
    fit: Fit,
    tick: float | None,
    oracle_tick: int,
    out: Path,
    plot: bool,
) -> list[dict[str, Any]]:
    trace = read_trace(path)
    demand = trace.per_second()
    factor = fit.factor(demand, model)
    demand = [d * factor for d in demand]
    results = [
        simulate(p, demand, model, name=name, tick_seconds=tick) for name, p in policies.items()
    ]
    lo = min(p.min_instances for p in policies.values())
    hi = max(p.max_instances for p in policies.values())
    best = oracle(demand, model, lo, hi)
    per_tick = oracle(demand, model, lo, hi, block=oracle_tick)
    rows = score(results, best, per_tick)
    typer.echo(f"\n{trace.name}: {len(demand):,} s, rates x{factor:.4g}")
    typer.echo(format_table(rows))
    payload = {
        "trace": trace.name,
        "source": str(path),
        "seconds": len(demand),
        "scale_factor": factor,
        "service_model": model.model_dump(),
        "policies": {name: p.model_dump() for name, p in policies.items()},
        "results": rows,
    }
    write_json(out / f"{trace.name}.json", payload)
    written = [str(out / f"{trace.name}.json")]
    if plot:
        plot_png(
            out / f"{trace.name}.png",
            f"{trace.name} (x{factor:.3g})",
            demand,
            [*results, best],
            capacity_rps=model.capacity_rps,
        )
        written.append(str(out / f"{trace.name}.png"))
    typer.echo("wrote " + ", ".join(written))
    return rows


def register(app: typer.Typer) -> None:
    app.command("simulate", help=HELP)(simulate_command)

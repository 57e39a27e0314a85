"""``kongstack simulate``: replay a request-rate trace through autoscaling configurations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autoscaler.config import AutoscalePolicy
from autoscaler.presets import PRESETS
from autoscaler.replay import ReplayResult, oracle, simulate
from autoscaler.service_model import ServiceModel, fit_factor
from kongstack.core.errors import ConfigError
from tasks.simulation.traces import format_table, plot_png, read_trace, write_json
from tasks.tick.config import load_autoscale_config

HELP = (
    "Replay a request-rate trace through one or more autoscaling configurations.\n\n"
    "TRACE is a CSV with the header `t_seconds,rps`: each row is a bin starting at t_seconds "
    "(seconds from the trace start, increasing; any bin width, also irregular) holding the "
    "bin's mean request rate. Replay holds each value for its bin (step-hold), second by "
    "second.\n\n"
    "Each configuration runs the real decision core (autoscaler.decide) every tick on the "
    "metrics Prometheus would have scraped from a modelled service: each ready instance "
    "serves --capacity-rps at 100 % CPU; new instances start for --startup-seconds; metrics "
    "are scraped every --scrape-interval as the mean over --rate-window; p95 latency = "
    "--base-p95-ms / (1 - u) for utilisation u; demand over capacity is dropped. A second "
    "violates the SLO when p95 > --slo-p95-ms (or u > --slo-utilisation) or a request is "
    "dropped.\n\n"
    "--config takes a preset (default: the shipped proportional policy with an rps target of "
    "capacity x target CPU; threshold: the seed's rules; hpa: a Kubernetes-HPA-style "
    "baseline) or an autoscale config file (as deployments/autoscale.yaml: AutoscalePolicy "
    "fields under `policy:`, read as the autoscale flow reads it; the file's stem names the "
    "column). The foresight oracle (each second exactly the instances it needs, ready in "
    "advance) is added unless --no-oracle.\n\n"
    "Prints a side-by-side table (SLO-violation seconds, dropped %, instance-seconds, scale "
    "actions, direction reversals, reaction time to load steps) and writes <out>/<trace>.json "
    "and <out>/<trace>.png."
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
            help="Preset (default|threshold|hpa) or policy file; repeat it. Default: all three.",
        ),
    ] = None,
    min_instances: Annotated[int, typer.Option(help="Pool lower bound for every config.")] = 1,
    max_instances: Annotated[int, typer.Option(help="Pool upper bound for every config.")] = 20,
    fit_pool: Annotated[
        int | None,
        typer.Option(
            help="Scale the trace so its p99 per-second rate needs this many "
            "instances at the SLO (default: --max-instances; 0 = do not scale)."
        ),
    ] = None,
    scale: Annotated[float, typer.Option(help="Multiply the rates by this (after fitting).")] = 1.0,
    capacity_rps: Annotated[
        float, typer.Option(help="Requests/s one instance serves at 100 % CPU.")
    ] = 100.0,
    startup_seconds: Annotated[int, typer.Option(help="Start-up time of a new instance.")] = 30,
    drain_seconds: Annotated[int, typer.Option(help="Drain time of a removed instance.")] = 10,
    scrape_interval: Annotated[int, typer.Option(help="Metric scrape interval, seconds.")] = 15,
    rate_window: Annotated[
        int, typer.Option(help="Metrics average over this window, seconds.")
    ] = 60,
    tick: Annotated[
        float | None, typer.Option(min=1, max=3600, help=(
            "Decision interval, 1..3600 s (default: each policy's)."))
    ] = None,
    base_p95_ms: Annotated[float, typer.Option(help="p95 latency of an idle instance.")] = 100.0,
    slo_p95_ms: Annotated[float, typer.Option(help="SLO: p95 latency limit, ms.")] = 500.0,
    slo_utilisation: Annotated[
        float | None, typer.Option(help="SLO as a utilisation limit instead of latency.")
    ] = None,
    oracle_column: Annotated[bool, typer.Option("--oracle/--no-oracle")] = True,
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
            slo_utilisation=slo_utilisation,
        )
        policies = _policies(
            config or ["default", "threshold", "hpa"], model, min_instances, max_instances
        )
        for path in traces:
            _replay_one(
                path,
                policies,
                model,
                fit_pool if fit_pool is not None else max_instances,
                scale,
                tick,
                oracle_column,
                out,
                plot,
            )
    except (ConfigError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc


def _replay_one(
    path: Path,
    policies: dict[str, AutoscalePolicy],
    model: ServiceModel,
    fit_pool: int,
    scale: float,
    tick: float | None,
    with_oracle: bool,
    out: Path,
    plot: bool,
) -> list[ReplayResult]:
    trace = read_trace(path)
    demand = trace.per_second()
    factor = (fit_factor(demand, model, fit_pool) if fit_pool else 1.0) * scale
    demand = [d * factor for d in demand]
    results = [
        simulate(p, demand, model, name=name, tick_seconds=tick) for name, p in policies.items()
    ]
    lo = min(p.min_instances for p in policies.values())
    hi = max(p.max_instances for p in policies.values())
    if with_oracle:
        results.append(oracle(demand, model, lo, hi))
    rows = [r.summary() for r in results]
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
            results,
            capacity_rps=model.capacity_rps,
        )
        written.append(str(out / f"{trace.name}.png"))
    typer.echo("wrote " + ", ".join(written))
    return results


def register(app: typer.Typer) -> None:
    app.command("simulate", help=HELP)(simulate_command)

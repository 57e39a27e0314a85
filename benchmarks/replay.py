"""Replay benchmarks: simulator speed and policy quality.

    .venv/bin/python benchmarks/replay.py             # prints markdown (docs/benchmarks.md)
    .venv/bin/python benchmarks/replay.py --variants  # what each part of the default buys

1. Speed: one week at 1 s resolution (the shipped diurnal day repeated 7 times) through the
   default policy (30 s ticks) and the HPA-style baseline (15 s ticks).
2. Quality: the shipped traces and the five real traces in ../shared/traces, each fitted so its
   p99 per-second rate needs 20 instances at the SLO, on a 1..20 pool: the default proportional
   policy vs the seed's threshold rules vs an HPA-style baseline vs the foresight oracle.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoscaler.config import AutoscalePolicy  # noqa: E402
from autoscaler.presets import PRESETS  # noqa: E402
from autoscaler.replay import ReplayResult, oracle, simulate  # noqa: E402
from autoscaler.service_model import ServiceModel, fit_factor  # noqa: E402
from tasks.simulation.traces import plot_png, read_trace  # noqa: E402

SHIPPED = ROOT / "benchmarks" / "traces"
REAL = Path("/work/shared/traces")
POOL = (1, 20)
CONFIGS = ("default", "threshold", "hpa")
BLOCK = 300
"""A hindsight reference: the oracle holding its size for BLOCK s (see ``oracle``)."""
TARGETS = {"violations": 0.25, "cost": 1.2, "reversals": 1 / 3}
_OFF = 1e12
# --variants: what each part of the default buys (overrides of the default preset).
VARIANTS: dict[str, dict[str, Any]] = {
    "shipped default": {},
    "previous default (65 %, 1-tick latency trigger, no peak window, 1800 s memory, "
    "600 s cooldown)": {
        "target_cpu_percent": 65,
        "target_rps_per_instance": 65,
        "latency_trigger_ticks": 1,
        "scale_down_peak_window_seconds": 0,
        "slow_load_memory_seconds": 1800,
        "scale_down_cooldown_seconds": 600,
    },
    "target 65 % (not 68 %)": {"target_cpu_percent": 65, "target_rps_per_instance": 65},
    "latency trigger on 1 tick (not 3)": {"latency_trigger_ticks": 1},
    "no peak window (scale-in sized by the current rate)": {"scale_down_peak_window_seconds": 0},
    "1200 s peak window": {"scale_down_peak_window_seconds": 1200},
    "always the long peak (no steady-load exemption)": {"scale_down_steady_spread": None},
    "slow-load memory 1800 s": {"slow_load_memory_seconds": 1800},
    "latency trigger off": {"response_time_threshold_ms": _OFF},
    "no trend forecast": {"forecast_seconds": 0},
    "600 s scale-down cooldown": {"scale_down_cooldown_seconds": 600},
    "cost-leaning: target 70 %, no latency trigger, no down cooldown, down band 0.1, no forecast": {
        "target_cpu_percent": 70,
        "target_rps_per_instance": 70,
        "response_time_threshold_ms": _OFF,
        "scale_down_cooldown_seconds": 0,
        "scale_down_tolerance": 0.1,
        "forecast_seconds": 0,
    },
    "SLO-leaning: target 60 %, 120 s forecast, down band 0.35": {
        "target_cpu_percent": 60,
        "target_rps_per_instance": 60,
        "forecast_seconds": 120,
        "scale_down_tolerance": 0.35,
    },
}


def week_speed(model: ServiceModel) -> list[str]:
    day = read_trace(SHIPPED / "diurnal_flash.csv").per_second()
    factor = fit_factor(day, model, POOL[1])
    week = [x * factor for x in day] * 7
    lines = [f"One week at 1 s resolution ({len(week):,} s):", ""]
    lines += ["| policy | tick | decisions | wall time s |", "|---|---|---|---|"]
    for name in ("default", "hpa"):
        policy = PRESETS[name](model, *POOL)
        start = time.perf_counter()
        simulate(policy, week, model, name=name)
        took = time.perf_counter() - start
        ticks = len(week) // int(policy.check_interval_seconds)
        lines.append(f"| {name} | {policy.check_interval_seconds:g} s | {ticks:,} | {took:.2f} |")
    return lines


def traces(extra: Path) -> list[Path]:
    found = sorted(SHIPPED.glob("*.csv"))
    if extra.is_dir():
        found += sorted(extra.glob("*.csv"))
    else:
        print(f"note: {extra} not found; real traces skipped", file=sys.stderr)
    return found


def run_trace(path: Path, model: ServiceModel, plots: Path | None) -> list[ReplayResult]:
    raw = read_trace(path).per_second()
    factor = fit_factor(raw, model, POOL[1])
    demand = [x * factor for x in raw]
    results = [simulate(PRESETS[c](model, *POOL), demand, model, name=c) for c in CONFIGS]
    results.append(oracle(demand, model, *POOL, block=BLOCK))
    results.append(oracle(demand, model, *POOL))
    if plots is not None:
        plot_png(
            plots / f"{path.stem}.png",
            f"{path.stem} (x{factor:.3g})",
            demand,
            results,
            capacity_rps=model.capacity_rps,
        )
    return results


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "—" if value is None else format(value, spec)


def quality(paths: Sequence[Path], model: ServiceModel, plots: Path | None) -> list[str]:
    header = (
        "| trace | policy | SLO-violation s | dropped % | instance-s | x oracle | actions "
        "| reversals | load steps | reaction median / max s | not met |"
    )
    lines = [header, "|" + "---|" * 11]
    names = (*CONFIGS, f"oracle/{BLOCK}s", "oracle")
    sums: dict[str, list[float]] = {c: [0, 0, 0] for c in names}
    for path in paths:
        started = time.perf_counter()
        results = run_trace(path, model, plots)
        print(f"  {path.stem}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
        floor = results[-1].instance_seconds
        for r in results:
            s: dict[str, Any] = r.summary()
            sums[r.name][0] += r.slo_violation_seconds
            sums[r.name][1] += r.instance_seconds
            sums[r.name][2] += r.reversals
            lines.append(
                f"| {path.stem} | {r.name} | {r.slo_violation_seconds:,} "
                f"| {r.dropped_percent:.3f} | {r.instance_seconds:,.0f} "
                f"| {r.instance_seconds / floor:.2f} | {r.scale_actions:,} | {r.reversals:,} "
                f"| {s['load_steps']} | {_fmt(s['reaction_median_seconds'])} / "
                f"{_fmt(s['reaction_max_seconds'])} | {s['steps_not_met']} |"
            )
    hpa, best, ours = sums["hpa"], sums["oracle"], sums["default"]
    lines += ["", "Sums over all traces:", ""]
    lines += ["| policy | SLO-violation s | instance-s | reversals |", "|---|---|---|---|"]
    for name, (v, c, rev) in sums.items():
        lines.append(f"| {name} | {v:,.0f} | {c:,.0f} | {rev:,.0f} |")
    checks = [
        ("SLO-violation s vs HPA-style", ours[0] / hpa[0], TARGETS["violations"]),
        ("instance-s vs oracle", ours[1] / best[1], TARGETS["cost"]),
        ("reversals vs HPA-style", ours[2] / max(hpa[2], 1), TARGETS["reversals"]),
    ]
    lines += [
        "",
        "| target (default policy, summed) | measured | limit | met? |",
        "|---|---|---|---|",
    ]
    for label, measured, limit in checks:
        lines.append(
            f"| {label} | {measured:.3f} | {limit:.3f} | "
            f"{'yes' if measured <= limit else '**no**'} |"
        )
    return lines


def variants(paths: Sequence[Path], model: ServiceModel) -> list[str]:
    demands = []
    for path in paths:
        raw = read_trace(path).per_second()
        factor = fit_factor(raw, model, POOL[1])
        demands.append([x * factor for x in raw])

    def summed(results: Sequence[ReplayResult]) -> tuple[float, float, float]:
        return (
            sum(r.slo_violation_seconds for r in results),
            sum(r.instance_seconds for r in results),
            sum(r.reversals for r in results),
        )

    hpa = summed([simulate(PRESETS["hpa"](model, *POOL), d, model) for d in demands])
    best = summed([oracle(d, model, *POOL) for d in demands])
    base = PRESETS["default"](model, *POOL)
    lines = [
        "| variant of the default | violations vs HPA | cost vs oracle | reversals vs HPA |",
        "|---|---|---|---|",
    ]
    for label, overrides in VARIANTS.items():
        # build, not with_overrides: a None here means "switch off", not "leave as is".
        policy = AutoscalePolicy.build({**base.model_dump(), **overrides}, source=label)
        v, c, r = summed([simulate(policy, d, model) for d in demands])
        lines.append(f"| {label} | {v / hpa[0]:.3f} | {c / best[1]:.3f} | {r / hpa[2]:.3f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=REAL, help="directory of real traces")
    parser.add_argument("--variants", action="store_true", help="only the variants table")
    parser.add_argument("--plots", type=Path, default=ROOT / "var" / "bench" / "autoscaler")
    args = parser.parse_args()
    model = ServiceModel()
    if args.variants:
        print("\n".join(variants(traces(args.traces), model)))
        print("Reproduce: `.venv/bin/python benchmarks/replay.py --variants`")
        return
    started = time.perf_counter()
    speed = week_speed(model)
    table = quality(traces(args.traces), model, args.plots)
    total = time.perf_counter() - started
    plots = args.plots.relative_to(ROOT) if args.plots.is_relative_to(ROOT) else args.plots
    report = [
        *speed,
        "",
        *table,
        "",
        f"Total benchmark wall time: {total:.0f} s.",
        f"Reproduce: `.venv/bin/python benchmarks/replay.py` (plots in `{plots}/`).",
    ]
    print("\n".join(report))


if __name__ == "__main__":
    main()

"""Replay benchmarks (issue 12): the shipped default, untuned, against the seed, HPA and oracles.

    .venv/bin/python benchmarks/replay.py             # prints markdown (docs/benchmarks.md)
    .venv/bin/python benchmarks/replay.py --variants  # what some parts of the default buy

1. Speed: one week at 1 s resolution (the shipped diurnal day repeated 7 times) through the
   default policy (30 s ticks) and the HPA-style baseline (15 s ticks).
2. Quality, under the issue's conditions (the defaults of ``kongstack simulate``): capacity
   100 rps per instance, 20 s start-up, 15 s scrape, 60 s rate window, SLO = per-second
   utilisation <= 0.9; each real trace in ../shared/traces scaled so the p99 of its 60 s means
   needs 12 instances; pools 1..20 and the seed's 3..6. Policies: ``default`` =
   ``AutoscalePolicy()`` with only the pool bounds (it learns the capacity), the seed's
   ``threshold`` rules, the ``hpa`` baseline, the per-tick oracle (``oracle/30s``) and the
   foresight ``oracle``. Scores: ``autoscaler.scoring`` (the same as ``kongstack simulate``).
3. A reference for what is reachable at all on noisy traces: a policy that knows the load's
   centred 5-minute mean in advance and holds k x that mean for each 30 s tick.
4. A frontier (``--frontier``): each 30 s tick, a policy that knows the whole distribution of
   the per-second needs in the centred 5-minute window (not which second gets which) and
   picks the pool that minimises instance-seconds + lambda x expected violation seconds, with
   no start-up delay. Sweeping lambda traces the lowest cost at each number of violation
   seconds such a policy reaches, summed over the traces (one lambda for all: the optimal
   split of a violation budget between traces and ticks).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoscaler.config import AutoscalePolicy  # noqa: E402
from autoscaler.presets import PRESETS  # noqa: E402
from autoscaler.replay import LEARNED_AFTER, oracle, simulate  # noqa: E402
from autoscaler.scoring import score, total  # noqa: E402
from autoscaler.service_model import ServiceModel, fit_factor  # noqa: E402
from tasks.simulation.traces import plot_png, read_trace  # noqa: E402

SHIPPED = ROOT / "benchmarks" / "traces"
REAL = Path("/work/shared/traces")
POOLS = ((1, 20), (3, 6))
FIT_POOL = 12
FIT_WINDOW = 60
ORACLE_TICK = 30
CONFIGS = ("default", "threshold", "hpa")
TARGETS = {"violations": 0.25, "cost": 1.30, "reversals": 0.30, "capacity": 0.15}
"""Issue 12, summed over the real traces on the 1..20 pool (cost also at most HPA's)."""
VARIANTS: dict[str, dict[str, Any]] = {
    "shipped default (learns the capacity)": {},
    "no learning (CPU only: the policy before the learner)": {"learn_capacity": False},
    "tuned: rps target set (capacity x CPU target)": {"target_rps_per_instance": 72.0},
    "no short-burst regime": {"short_burst_seconds": 0},
    "no trend forecast": {"forecast_seconds": 0},
    "no peak window (scale-in sized by the current rate)": {"scale_down_peak_window_seconds": 0},
    "down band 0.1 (as HPA's)": {"scale_down_tolerance": 0.1},
}


def fitted(path: Path, model: ServiceModel) -> tuple[list[float], float]:
    raw = read_trace(path).per_second()
    factor = fit_factor(raw, model, FIT_POOL, window=FIT_WINDOW)
    return [x * factor for x in raw], factor


def week_speed(model: ServiceModel) -> list[str]:
    day, _ = fitted(SHIPPED / "diurnal_flash.csv", model)
    week = day * 7
    lines = [f"One week at 1 s resolution ({len(week):,} s):", ""]
    lines += [
        "| policy | tick | decisions | wall time s | CPU time s |",
        "|---|---|---|---|---|",
    ]
    load = os.getloadavg()[0]
    for name in ("default", "hpa"):
        policy = PRESETS[name](model, *POOLS[0])
        start, cpu = time.perf_counter(), time.process_time()
        simulate(policy, week, model, name=name)
        took, used = time.perf_counter() - start, time.process_time() - cpu
        ticks = len(week) // int(policy.check_interval_seconds)
        lines.append(
            f"| {name} | {policy.check_interval_seconds:g} s | {ticks:,} | {took:.2f} "
            f"| {used:.2f} |"
        )
    # Wall time on a shared machine is mostly waiting for a core; CPU time is less so.
    lines += ["", f"1-min load average before / after: {load:.1f} / {os.getloadavg()[0]:.1f}"]
    return lines


def run_trace(
    demand: Sequence[float], model: ServiceModel, pool: tuple[int, int]
) -> tuple[list[dict[str, Any]], list[Any]]:
    results = [simulate(PRESETS[c](model, *pool), demand, model, name=c) for c in CONFIGS]
    best = oracle(demand, model, *pool)
    per_tick = oracle(demand, model, *pool, block=ORACLE_TICK)
    return score(results, best, per_tick), [*results, best]


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "—" if value is None else format(value, spec)


_HEADER = (
    "| trace | policy | SLO-violation s | dropped % | instance-s | x oracle | x oracle/30s "
    "| actions | reversals | load steps | reaction median / max s | learned rps after "
    f"{LEARNED_AFTER} s / at end |"
)


def _row(trace: str, r: dict[str, Any]) -> str:
    learned = r.get("learned_capacity_rps")
    early = r.get(f"learned_capacity_rps_at_{LEARNED_AFTER}s")
    capacity = (
        "—" if learned is None and early is None
        else f"{_fmt(early, '.1f')} / {_fmt(learned, '.1f')}"
    )
    reaction = (
        "—"
        if not r.get("load_steps")
        else f"{_fmt(r.get('reaction_median_seconds'))} / {_fmt(r.get('reaction_max_seconds'))}"
    )
    return (
        f"| {trace} | {r['name']} | {r['slo_violation_seconds']:,.0f} | {r['dropped_percent']:.3f} "
        f"| {r['instance_seconds']:,.0f} | {_fmt(r['x_oracle'], '.3f')} "
        f"| {_fmt(r['x_oracle_tick'], '.3f')} | {r['scale_actions']:,.0f} | {r['reversals']:,.0f} "
        f"| {r.get('load_steps', '—')} | {reaction} | {capacity} |"
    )


def quality(
    paths: Sequence[Path], model: ServiceModel, pool: tuple[int, int], plots: Path | None
) -> tuple[list[str], list[dict[str, Any]], list[list[dict[str, Any]]]]:
    lines = [f"Pool {pool[0]}..{pool[1]}:", "", _HEADER, "|" + "---|" * 12]
    per_trace = []
    for path in paths:
        started = time.perf_counter()
        demand, factor = fitted(path, model)
        rows, results = run_trace(demand, model, pool)
        print(f"  {path.stem} {pool}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
        per_trace.append(rows)
        lines += [_row(path.stem, r) for r in rows]
        if plots is not None and pool == POOLS[0]:
            plot_png(
                plots / f"{path.stem}.png",
                f"{path.stem} (x{factor:.3g}, pool {pool[0]}..{pool[1]})",
                demand,
                results,
                capacity_rps=model.capacity_rps,
            )
    summed = total(per_trace)
    lines += [_row(f"**sum of {len(paths)}**", r) for r in summed]
    return lines, summed, per_trace


def checks(
    summed: Sequence[dict[str, Any]], per_trace: Sequence[Sequence[dict[str, Any]]],
    paths: Sequence[Path], model: ServiceModel,
) -> list[str]:
    by = {r["name"]: r for r in summed}
    ours, hpa = by["default"], by["hpa"]
    rows = [
        ("SLO-violation s vs HPA", ours["slo_violation_seconds"] / hpa["slo_violation_seconds"],
         TARGETS["violations"]),
        ("instance-s vs foresight oracle", ours["x_oracle"], TARGETS["cost"]),
        ("instance-s vs HPA", ours["instance_seconds"] / hpa["instance_seconds"], 1.0),
        ("direction reversals vs HPA", ours["reversals"] / max(hpa["reversals"], 1),
         TARGETS["reversals"]),
    ]
    for path, trace_rows in zip(paths, per_trace, strict=True):
        early = trace_rows[0].get(f"learned_capacity_rps_at_{LEARNED_AFTER}s")
        error = None if early is None else abs(early / model.capacity_rps - 1)
        rows.append((f"learned capacity after {LEARNED_AFTER} s, {path.stem}: |error|", error,
                     TARGETS["capacity"]))
    lines = ["| target (default, summed, pool 1..20) | measured | limit | met? |",
             "|---|---|---|---|"]
    for label, measured, limit in rows:
        met = "no estimate" if measured is None else ("yes" if measured <= limit else "**no**")
        lines.append(f"| {label} | {_fmt(measured, '.3f')} | {limit:.3f} | {met} |")
    return lines


def mean_clairvoyant(paths: Sequence[Path], model: ServiceModel) -> list[str]:
    """Cost and violations of holding ``k`` x the load's centred 5-minute mean for each 30 s
    tick (known in advance): what knowing the load, but not its per-second noise, allows."""
    lines = [
        "| trace | k | SLO-violation s | x oracle |",
        "|---|---|---|---|",
    ]
    for path in paths:
        demand, _ = fitted(path, model)
        n, half = len(demand), 150
        cum = [0.0]
        for x in demand:
            cum.append(cum[-1] + x)
        floor = oracle(demand, model, *POOLS[0]).instance_seconds
        per_instance = model.capacity_rps * model.max_utilisation
        for k in (1.2, 1.5, 2.0, 2.5):
            cost = violations = 0
            for t in range(0, n, ORACLE_TICK):
                lo, hi = max(0, t - half), min(n, t + half)
                mean = (cum[hi] - cum[lo]) / (hi - lo)
                held = min(POOLS[0][1], max(POOLS[0][0], math.ceil(k * mean / per_instance)))
                for s in range(t, min(n, t + ORACLE_TICK)):
                    cost += held
                    violations += demand[s] > held * per_instance * (1 + 1e-12)
            lines.append(f"| {path.stem} | {k:g} | {violations:,} | {cost / floor:.3f} |")
    return lines


LAMBDAS = (0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


def _window_ticks(
    need: Sequence[int], lo: int, hi: int
) -> list[tuple[int, list[float], list[int]]]:
    """Per 30 s tick: its length, the share of the centred 5-minute window's seconds that need
    more than n instances (n = 0..hi), and the tick's own seconds that need more than n."""
    rows = []
    for t in range(0, len(need), ORACLE_TICK):
        a, b = max(0, t - 150), min(len(need), t + 150)
        counts = [0] * (hi + 2)
        for x in need[a:b]:
            counts[min(x, hi + 1)] += 1
        tail, above = [0.0] * (hi + 2), 0
        for n in range(hi + 1, -1, -1):
            tail[n] = above / (b - a)
            above += counts[n]
        seg = need[t : t + ORACLE_TICK]
        rows.append((len(seg), tail, [sum(1 for x in seg if x > n) for n in range(hi + 1)]))
    return rows


def _cheapest(tail: Sequence[float], lam: float, lo: int, hi: int) -> int:
    """The pool that minimises instances + lambda x the share of seconds it would not carry."""
    return min(range(lo, hi + 1), key=lambda n: n + lam * tail[n])


def frontier(paths: Sequence[Path], model: ServiceModel) -> list[str]:
    """Lowest cost for each number of violation seconds a distribution-clairvoyant policy
    reaches (see the module's point 4), against HPA's and the foresight oracle's."""
    lo, hi = POOLS[0]
    demands = [fitted(p, model)[0] for p in paths]
    # needs counted up to hi + 1: a second beyond the largest pool is a violation at any size
    ticks = [_window_ticks([model.needed(d, lo, hi + 1) for d in demand], lo, hi)
             for demand in demands]
    floors = [oracle(d, model, lo, hi).instance_seconds for d in demands]
    best = sum(floors)
    hpa = [simulate(PRESETS["hpa"](model, lo, hi), d, model) for d in demands]
    hpa_cost = sum(r.instance_seconds for r in hpa)
    hpa_violations = sum(r.slo_violation_seconds for r in hpa)
    budget = TARGETS["violations"] * hpa_violations
    lines = [
        "| lambda | SLO-violation s | x HPA's | instance-s x oracle | x HPA's | per trace: "
        "violation s / x oracle |",
        "|---|---|---|---|---|---|",
    ]
    cheapest: float | None = None
    for lam in LAMBDAS:
        cost = violations = 0
        per = []
        for path, rows, floor in zip(paths, ticks, floors, strict=True):
            c = v = 0
            for length, tail, over in rows:
                n = _cheapest(tail, lam, lo, hi)
                c += n * length
                v += over[n]
            per.append(f"{path.stem.split('_')[0]} {v:,} / {c / floor:.2f}")
            cost, violations = cost + c, violations + v
        if violations <= budget:
            cheapest = cost if cheapest is None else min(cheapest, cost)
        lines.append(f"| {lam:g} | {violations:,} | {violations / hpa_violations:.3f} "
                     f"| {cost / best:.3f} | {cost / hpa_cost:.3f} | {'; '.join(per)} |")
    lines += ["", f"HPA: {hpa_violations:,} violation s; the budget (x "
              f"{TARGETS['violations']:g}) is {budget:,.0f}. Cheapest point within it: "
              + ("none" if cheapest is None else
                 f"{cheapest / best:.3f}x the oracle, {cheapest / hpa_cost:.3f}x HPA's cost")
              + "."]
    return lines


def variants(paths: Sequence[Path], model: ServiceModel) -> list[str]:
    demands = [fitted(p, model)[0] for p in paths]
    pool = POOLS[0]

    def summed(policy: AutoscalePolicy) -> tuple[float, float, float]:
        results = [simulate(policy, d, model) for d in demands]
        return (
            sum(r.slo_violation_seconds for r in results),
            sum(r.instance_seconds for r in results),
            sum(r.reversals for r in results),
        )

    hpa = summed(PRESETS["hpa"](model, *pool))
    best = sum(oracle(d, model, *pool).instance_seconds for d in demands)
    base = PRESETS["default"](model, *pool)
    lines = [
        "| variant of the default | violations vs HPA | cost vs oracle | cost vs HPA "
        "| reversals vs HPA |",
        "|---|---|---|---|---|",
    ]
    for label, overrides in VARIANTS.items():
        policy = AutoscalePolicy.build({**base.model_dump(), **overrides}, source=label)
        v, c, r = summed(policy)
        lines.append(
            f"| {label} | {v / hpa[0]:.3f} | {c / best:.3f} | {c / hpa[1]:.3f} "
            f"| {r / max(hpa[2], 1):.3f} |"
        )
    return lines


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--traces", type=Path, default=REAL, help="directory of real traces")
    parser.add_argument("--variants", action="store_true", help="only the variants table")
    parser.add_argument("--frontier", action="store_true",
                        help="only the distribution-clairvoyant frontier (point 4)")
    parser.add_argument("--plots", type=Path, default=ROOT / "var" / "bench" / "autoscaler")
    args = parser.parse_args()
    paths = sorted(args.traces.glob("*.csv"))
    if not paths:
        raise SystemExit(f"no *.csv traces in {args.traces}")
    model = ServiceModel()
    if args.variants:
        print("\n".join(variants(paths, model)))
        print("\nReproduce: `.venv/bin/python benchmarks/replay.py --variants "
              f"--traces {args.traces}`")
        return
    if args.frontier:
        print("\n".join(frontier(paths, model)))
        print(f"\nReproduce: `.venv/bin/python benchmarks/replay.py --frontier --traces "
              f"{args.traces}`")
        return
    started = time.perf_counter()
    report = [*week_speed(model), ""]
    for pool in POOLS:
        table, summed, per_trace = quality(paths, model, pool, args.plots)
        report += [*table, ""]
        if pool == POOLS[0]:
            report += [*checks(summed, per_trace, paths, model), ""]
    report += [
        "Reference: k x the centred 5-minute mean, known in advance, held per 30 s tick "
        "(pool 1..20):",
        "",
        *mean_clairvoyant(paths, model),
        "",
        "Frontier: the whole distribution of the centred 5-minute window known in advance, "
        "one pool per 30 s tick, no start-up delay (pool 1..20, summed over the traces):",
        "",
        *frontier(paths, model),
        "",
    ]
    took = time.perf_counter() - started
    report += [
        f"Total benchmark wall time: {took:.0f} s.",
        f"Reproduce: `.venv/bin/python benchmarks/replay.py --traces {args.traces}` "
        f"(plots in `{_shown(args.plots)}/`; one trace, same numbers: "
        "`kongstack simulate <trace.csv> --min-instances 1 --max-instances 20`).",
    ]
    print("\n".join(report))


if __name__ == "__main__":
    main()

"""Benchmark: the maintenance analysis on a generated scaling log of N events.

Generates a realistic 30-second-tick history (a daily load wave with noise, the count following
the load with a lag, some flaps and failures) straight into the history's SQLite schema, then
times load -> analyse -> render (markdown, tables, PNG chart, CSV) and reports peak memory.

Run: .venv/bin/python benchmarks/analysis.py --events 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.maintenance.analysis import AnalysisConfig, analyse, load_scaling_log_frame  # noqa: E402
from tasks.maintenance.report import render_report  # noqa: E402
from tasks.tick.scaling_log import ScalingLog  # noqa: E402


def generate(path: Path, events: int, seed: int = 7) -> float:
    """Write ``events`` ticks 30 s apart ending now; return the seconds it took."""
    started = time.perf_counter()
    ScalingLog(path)  # creates the schema
    rng = np.random.default_rng(seed)
    t0 = time.time() - events * 30.0
    ts = t0 + np.arange(events) * 30.0
    hour = (ts % 86400) / 3600.0
    load = 300 + 250 * np.sin((hour - 8) / 24 * 2 * np.pi) + rng.normal(0, 40, events)
    load = load.clip(min=5)
    desired = np.clip(np.ceil(load / 100.0), 3, 8).astype(int)
    current = np.empty(events, dtype=int)
    current[0] = desired[0]
    for i in range(1, events):  # the pool follows the desired count one tick late
        current[i] = desired[i - 1]
    prev = np.concatenate(([current[0]], current[:-1]))
    kinds = np.where(current > prev, "scale_up", np.where(current < prev, "scale_down", "decision"))
    outcomes = np.where(rng.random(events) < 0.01, "failed", "ok")
    outcomes = np.where(kinds == "decision", "noop", outcomes)
    rows = (
        (float(ts[i]), str(kinds[i]), int(prev[i]), int(current[i]), f"load {load[i]:.0f}",
         "request_rate", json.dumps({"request_rate": round(float(load[i]), 2), "cpu": 50.0}),
         0.1, str(outcomes[i]), "autoscale")
        for i in range(events)
    )
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executemany(
        "INSERT INTO scaling_events (ts, kind, from_count, to_count, reason, metric, metrics,"
        " duration_s, outcome, source) VALUES (?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    conn.commit()
    conn.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also measure Python heap peak (slows the run down)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "history.sqlite"
        gen_s = generate(db, args.events)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if args.tracemalloc:
            tracemalloc.start()
        t0 = time.perf_counter()
        frame = load_scaling_log_frame(db)
        t1 = time.perf_counter()
        config = AnalysisConfig(target_load_per_instance=100, min_instances=3, max_instances=8)
        result = analyse(frame, config)
        t2 = time.perf_counter()
        report = render_report(result, Path(tmp) / "report", config)
        t3 = time.perf_counter()
        heap_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"events            {args.events:,} (generated in {gen_s:.1f}s)")
    print(f"read SQLite       {t1 - t0:.2f}s")
    print(f"analyse           {t2 - t1:.2f}s")
    print(f"render (md/png/csv) {t3 - t2:.2f}s  -> {', '.join(p.name for p in report.files)}")
    print(f"total             {t3 - t0:.2f}s  (limit 10s)")
    print(f"peak RSS          {rss_after / 1024:.0f} MiB "
          f"(before analysis {rss_before / 1024:.0f} MiB)")
    if heap_peak is not None:
        print(f"peak Python heap  {heap_peak / 2**20:.0f} MiB (tracemalloc)")
    print(f"instance-hours {result.instance_hours:.1f}, flaps {len(result.flaps)}, "
          f"reactions {result.reaction_summary}")
    print(f"command: .venv/bin/python benchmarks/analysis.py --events {args.events}"
          + (" --tracemalloc" if args.tracemalloc else ""))


if __name__ == "__main__":
    main()

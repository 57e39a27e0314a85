"""Benchmark: the Prefect database's growth per autoscale tick, and the tick's wall time, on
SQLite and on PostgreSQL in the same run against the same stack.

One small real stack (nginx, Prometheus, a pool of 2 gunicorn instances, Redis) is started
once; for each backend a fresh ``prefect server start`` (as ``kongstack up`` starts it) gets
3 warm-up ticks, then --ticks no-op ticks (observe, decide "hold", record), each a full flow
run timed from the client. Growth: SQLite's used pages (WAL included) and ``dbstat`` per
table/index; PostgreSQL's relation sizes (tables with their TOAST, and indexes) in the
``prefect`` database. Extrapolated to a day of 30 s ticks (2,880).

Run: .venv/bin/python benchmarks/prefect_db.py [--ticks 30] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

# SQLite's sizes are measured as the single-backend tick benchmark measures them.
from benchmarks.autoscale import db_bytes, table_bytes  # noqa: E402
from flows.autoscale import autoscale  # noqa: E402
from kongstack.cli.localprefect import api_url  # noqa: E402
from kongstack.core import prefectdb  # noqa: E402
from kongstack.core.settings import LocalSettings  # noqa: E402
from tasks.tick.config import AutoscaleConfig  # noqa: E402
from tests.support.autoscale_stack import Stack, autoscale_stack  # noqa: E402
from tests.support.prefect_servers import Backend, prefect_server  # noqa: E402
from tests.support.services import redis_server  # noqa: E402

TICKS_PER_DAY = 2880


def relation_bytes(backend: Backend, settings: LocalSettings) -> dict[str, int]:
    """Bytes per table/index of the server's database."""
    if backend == "sqlite":
        return table_bytes(settings.home / "prefect")
    out = prefectdb.local_cluster(settings).psql(
        "SELECT c.relname, pg_relation_size(c.oid) + CASE WHEN c.reltoastrelid = 0 THEN 0 "
        "ELSE pg_total_relation_size(c.reltoastrelid) END FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')",
        database="prefect", what="relation sizes")
    sizes = {}
    for line in out.splitlines():
        name, size = line.split("|")
        sizes[name] = int(size)
    return sizes


def used_bytes(backend: Backend, settings: LocalSettings) -> int:
    if backend == "postgresql":
        return sum(relation_bytes(backend, settings).values())
    return db_bytes(settings.home / "prefect")


def tick(config: AutoscaleConfig) -> dict[str, Any]:
    return asyncio.run(autoscale(config=config, trigger="bench"))


def bench_backend(backend: Backend, stack: Stack, ticks: int) -> dict[str, Any]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with prefect_server(backend) as settings, \
            temporary_settings(updates={PREFECT_API_URL: api_url(settings)}):
        for _ in range(3):  # warm: pool at min, state block saved, Prometheus scraping
            tick(stack.config)
        before, tables = used_bytes(backend, settings), relation_bytes(backend, settings)
        walls = []
        for _ in range(ticks):
            t0 = time.perf_counter()
            result = tick(stack.config)
            walls.append(time.perf_counter() - t0)
            if result["actions"]:
                raise RuntimeError(f"a no-op tick acted: {result['actions']}")
        growth = (used_bytes(backend, settings) - before) / ticks
        after = relation_bytes(backend, settings)
    delta = {k: (v - tables.get(k, 0)) / ticks for k, v in after.items()}
    top = [(k, v) for k, v in sorted(delta.items(), key=lambda kv: -kv[1])[:8] if v > 0]
    walls.sort()
    return {"backend": backend, "growth": growth, "top": top,
            "median_s": statistics.median(walls), "p95_s": walls[int(0.95 * (len(walls) - 1))],
            "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--driver", default="process", choices=["process", "docker"])
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    for name in backends:
        if name not in ("sqlite", "postgresql"):
            parser.error(f"--backends: unknown backend {name!r} (sqlite, postgresql)")
    started = datetime.now(UTC)
    results = []
    with tempfile.TemporaryDirectory(prefix="kongstack-dbgrowth-") as tmp:
        work = Path(tmp)
        with redis_server(work) as (host, port, _), \
                autoscale_stack(work, driver=args.driver,
                                redis_url=f"redis://{host}:{port}/0") as stack:
            for backend in backends:
                results.append(bench_backend(backend, stack, args.ticks))
                r = results[-1]
                print(f"{backend}: {r['growth'] / 1024:.1f} KiB per tick -> "
                      f"{r['growth'] * TICKS_PER_DAY / 1e6:.0f} MB per day; tick median "
                      f"{r['median_s']:.2f} s, p95 {r['p95_s']:.2f} s (load {r['load']:.1f})")
                print("  by table/index: " + ", ".join(f"{k} {v / 1024:.1f} KiB"
                                                       for k, v in r["top"]), flush=True)
    print(f"\nsummary ({started:%Y-%m-%d %H:%M} UTC, {args.ticks} no-op ticks per backend)")
    print("| backend | growth per tick | per day of 30 s ticks | tick median | tick p95 |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['backend']} | {r['growth'] / 1024:.1f} KiB | "
              f"{r['growth'] * TICKS_PER_DAY / 1e6:.0f} MB | {r['median_s']:.2f} s | "
              f"{r['p95_s']:.2f} s |")
    print(f"command: .venv/bin/python benchmarks/prefect_db.py --ticks {args.ticks} "
          f"--backends {args.backends} --driver {args.driver}")


if __name__ == "__main__":
    main()

"""Benchmark: pruning old flow runs of the autoscale deployment (a 30 s schedule makes
2,880 a day) from a real Prefect server, on SQLite and on PostgreSQL in the same run.

Each backend gets its own ``prefect server start``, started as ``kongstack up`` starts it
(kongstack.cli.localprefect.start_server; PostgreSQL: a private cluster on loopback,
KONGSTACK_PREFECT_DB=postgresql). How the runs are made: --client-runs runs are created
through the Prefect client (to time that path and to get real template rows); the rest are
cloned in SQL from those rows (a new id per flow run and per state row), because creating
100,000 runs through the API takes hours on 2 cores (rate printed below). On PostgreSQL the
clone ends with ANALYZE, as autovacuum would soon after such an insert. Then
``tasks.maintenance.prune.prune_flow_runs`` deletes them through the API: first the per-run
path (read_flow_runs + delete_flow_run, bounded concurrency) on --each-runs runs, then the
server's bulk endpoint on the rest, in timed chunks.

Run: .venv/bin/python benchmarks/prune.py --runs 100000 [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sqlite3
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from kongstack.cli.localprefect import api_url, server_daemon  # noqa: E402
from kongstack.core import prefectdb  # noqa: E402
from kongstack.core.settings import LocalSettings  # noqa: E402
from tasks.maintenance.prune import bulk_concurrency_for, prune_flow_runs  # noqa: E402
from tests.support.prefect_servers import Backend, prefect_server  # noqa: E402


async def create_via_client(deployment: str, n: int) -> tuple[float, uuid.UUID]:
    from prefect import get_client
    from prefect.states import Completed

    async with get_client() as client:
        flow_id = await client.create_flow_from_name("autoscale")
        dep_id = await client.create_deployment(flow_id=flow_id, name=deployment)
        started = time.perf_counter()
        for _ in range(n):
            await client.create_flow_run_from_deployment(dep_id, state=Completed())
        return time.perf_counter() - started, dep_id


# Clones are spread back in time as the 30 s schedule spreads real runs (the pruner's
# concurrent path slices by end time; identical times would make one slice).
SPACING_S = 30
SHIFTED = ("expected_start_time", "start_time", "end_time")


def _earlier(value: Any, seconds: int) -> Any:
    """A SQLite timestamp ``seconds`` earlier, in SQLAlchemy's sqlite.DATETIME text form
    (naive UTC, microseconds), which is how Prefect stores it there."""
    if value is None:
        return None
    moved = datetime.fromisoformat(str(value)) - timedelta(seconds=seconds)
    return moved.strftime("%Y-%m-%d %H:%M:%S.%f")


def clone_sqlite(db: Path, deployment_id: uuid.UUID, n: int) -> float:
    """Insert ``n`` more runs of the deployment, each a copy of a real one with new ids."""
    started = time.perf_counter()
    conn = sqlite3.connect(db, timeout=60)
    conn.execute("PRAGMA busy_timeout=60000")
    run_cols = [r[1] for r in conn.execute("PRAGMA table_info(flow_run)")]
    state_cols = [r[1] for r in conn.execute("PRAGMA table_info(flow_run_state)")]
    run = conn.execute("SELECT * FROM flow_run WHERE deployment_id = ? LIMIT 1",
                       (str(deployment_id),)).fetchone()
    if run is None:  # ids may be stored without dashes
        run = conn.execute("SELECT * FROM flow_run WHERE deployment_id = ? LIMIT 1",
                           (deployment_id.hex,)).fetchone()
    template = dict(zip(run_cols, run, strict=True))
    state = dict(zip(state_cols, conn.execute("SELECT * FROM flow_run_state WHERE id = ?",
                                              (template["state_id"],)).fetchone(), strict=True))
    dashed = "-" in str(template["id"])
    runs, states = [], []
    for i in range(n):
        rid, sid = uuid.uuid4(), uuid.uuid4()
        rid_s, sid_s = (str(rid), str(sid)) if dashed else (rid.hex, sid.hex)
        runs.append([rid_s if c == "id" else sid_s if c == "state_id" else
                     f"bench-{i}" if c == "name" else
                     _earlier(template[c], SPACING_S * (i + 1)) if c in SHIFTED else
                     template[c] for c in run_cols])
        states.append([sid_s if c == "id" else rid_s if c == "flow_run_id" else state[c]
                       for c in state_cols])
    with conn:
        conn.executemany(f"INSERT INTO flow_run_state ({','.join(state_cols)}) VALUES "
                         f"({','.join('?' * len(state_cols))})", states)
        conn.executemany(f"INSERT INTO flow_run ({','.join(run_cols)}) VALUES "
                         f"({','.join('?' * len(run_cols))})", runs)
    conn.close()
    return time.perf_counter() - started


def clone_postgres(settings: LocalSettings, deployment_id: uuid.UUID, n: int) -> float:
    """The same clone in one transaction, rows made server-side. The state FK is not
    deferrable, so runs go in without a state, states next, then the runs point at them."""
    cluster = prefectdb.local_cluster(settings)

    def columns(table: str) -> list[str]:
        out = cluster.psql(f"SELECT column_name FROM information_schema.columns WHERE "
                           f"table_name = '{table}' ORDER BY ordinal_position",
                           database="prefect", what=f"columns of {table}")
        return out.split()

    run_exprs = {"id": "b.rid", "state_id": "NULL", "name": "'bench-' || b.i",
                 "idempotency_key": "NULL"}
    run_exprs |= {c: f"t.{c} - b.i * interval '{SPACING_S} seconds'" for c in SHIFTED}
    state_exprs = {"id": "b.sid", "flow_run_id": "b.rid"}
    run_cols, state_cols = columns("flow_run"), columns("flow_run_state")
    template = f"(SELECT id FROM flow_run WHERE deployment_id = '{deployment_id}' LIMIT 1)"
    sql = f"""
BEGIN;
CREATE TEMP TABLE b ON COMMIT DROP AS
  SELECT gen_random_uuid() AS rid, gen_random_uuid() AS sid, g AS i FROM generate_series(1, {n}) g;
INSERT INTO flow_run ({', '.join(run_cols)})
  SELECT {', '.join(run_exprs.get(c, f't.{c}') for c in run_cols)}
  FROM b, flow_run t WHERE t.id = {template};
INSERT INTO flow_run_state ({', '.join(state_cols)})
  SELECT {', '.join(state_exprs.get(c, f's.{c}') for c in state_cols)}
  FROM b, flow_run t JOIN flow_run_state s ON s.id = t.state_id WHERE t.id = {template};
UPDATE flow_run r SET state_id = b.sid FROM b WHERE r.id = b.rid;
COMMIT;
ANALYZE flow_run;
ANALYZE flow_run_state;
"""
    started = time.perf_counter()
    cluster.psql(sql, database="prefect", what=f"cloning {n} flow runs")
    return time.perf_counter() - started


def db_size(backend: Backend, settings: LocalSettings) -> int:
    if backend == "sqlite":
        db = settings.home / "prefect" / "prefect.db"
        wal = db.with_name(db.name + "-wal")
        return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    out = prefectdb.local_cluster(settings).psql(
        "SELECT pg_database_size('prefect')", database="prefect", what="database size")
    return int(out.strip())


async def count_runs(deployment_id: uuid.UUID) -> int:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

    async with get_client() as client:
        return await client.count_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])))


def _proc_cpu(pid: int, *, reaped: bool) -> float:
    """CPU seconds of one process from /proc (with its reaped children's if ``reaped``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = sum(int(f) for f in fields[11:15 if reaped else 13])  # utime stime [cutime cstime]
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int | None) -> float:
    """CPU seconds of ``root`` and all its descendants, live and reaped: where the pruning's
    CPU goes (the API server's processes; PostgreSQL's postmaster and backends)."""
    if root is None:
        return 0.0
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        tree.update(children)
        frontier += children
    return sum(_proc_cpu(pid, reaped=True) for pid in tree)


def cpu_now(backend: Backend, settings: LocalSettings) -> dict[str, float]:
    """CPU seconds so far of the API server, the database server and this client."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    database = (tree_cpu(prefectdb.local_cluster(settings).daemon.pid())
                if backend == "postgresql" else 0.0)
    return {"server": tree_cpu(server_daemon(settings).pid()), "database": database,
            "client": usage.ru_utime + usage.ru_stime}


def prune(cutoff: datetime, *, bulk: bool, max_runs: int,
          bulk_concurrency: int = 1) -> tuple[int, float]:
    t0 = time.perf_counter()
    result = asyncio.run(prune_flow_runs(cutoff, flow_name="autoscale",
                                         deployment_name="autoscale", bulk=bulk,
                                         bulk_concurrency=bulk_concurrency,
                                         max_runs=max_runs))
    return result.removed, time.perf_counter() - t0


def bench_backend(backend: Backend, args: argparse.Namespace) -> dict[str, Any]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    print(f"\n== {backend} (load {os.getloadavg()[0]:.1f})", flush=True)
    with prefect_server(backend) as settings, \
            temporary_settings(updates={PREFECT_API_URL: api_url(settings)}):
        client_s, dep_id = asyncio.run(create_via_client("autoscale", args.client_runs))
        rest = args.runs - args.client_runs
        clone_s = (clone_sqlite(settings.home / "prefect" / "prefect.db", dep_id, rest)
                   if backend == "sqlite" else clone_postgres(settings, dep_id, rest))
        total = asyncio.run(count_runs(dep_id))
        size = db_size(backend, settings)
        cutoff = datetime.now(UTC)
        rate = args.client_runs / client_s
        print(f"{prefectdb.describe(settings)}: {size / 2**20:.0f} MiB with {total:,} "
              f"autoscale runs; create via client {rate:.0f}/s; SQL clone of {rest:,} in "
              f"{clone_s:.1f}s", flush=True)

        each_n, each_s = prune(cutoff, bulk=False, max_runs=args.each_runs)
        print(f"per-run path (read_flow_runs + delete_flow_run, concurrency 4): {each_n:,} in "
              f"{each_s:.1f}s = {each_n / each_s:.0f}/s", flush=True)
        bulk_n, bulk_s, chunk_rates = 0, 0.0, []
        cpu_before = cpu_now(backend, settings)
        inflight = (args.bulk_concurrency if args.bulk_concurrency
                    else bulk_concurrency_for(backend == "postgresql"))
        while True:
            before = asyncio.run(count_runs(dep_id))
            removed, took = prune(cutoff, bulk=True, max_runs=args.chunk,
                                  bulk_concurrency=inflight)
            if not removed:
                break
            bulk_n, bulk_s = bulk_n + removed, bulk_s + took
            chunk_rates.append(removed / took)
            print(f"  bulk chunk: {removed:,} of {before:,} runs in {took:.1f}s = "
                  f"{removed / took:.0f}/s (load {os.getloadavg()[0]:.1f})", flush=True)
        cpu_after = cpu_now(backend, settings)
        left = asyncio.run(count_runs(dep_id))
    # CPU per 1,000 runs of the bulk phase: on 2 cores, what bounds the rate.
    cpu = {k: (cpu_after[k] - cpu_before[k]) * 1000 / max(bulk_n, 1) for k in cpu_before}
    print("bulk path CPU per 1,000 runs: " + ", ".join(f"{k} {v:.1f}s" for k, v in cpu.items())
          + f" (wall {bulk_s * 1000 / max(bulk_n, 1):.1f}s)", flush=True)
    result = {"cpu": cpu, "backend": backend, "runs": total, "db_mib": size / 2**20,
              "client_rate": rate, "each_n": each_n, "each_s": each_s,
              "bulk_n": bulk_n, "bulk_s": bulk_s, "left": left, "inflight": inflight,
              "chunk_min": min(chunk_rates, default=0.0),
              "chunk_max": max(chunk_rates, default=0.0)}
    print(f"bulk path (POST /flow_runs/bulk_delete x50, {inflight} in flight): "
          f"{bulk_n:,} in {bulk_s:.1f}s = "
          f"{bulk_n / bulk_s:.0f}/s; all {each_n + bulk_n:,} in {each_s + bulk_s:.1f}s; "
          f"left {left}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--client-runs", type=int, default=300)
    parser.add_argument("--each-runs", type=int, default=1_000,
                        help="runs deleted one by one (the rest in bulk)")
    parser.add_argument("--chunk", type=int, default=5_000, help="bulk runs per timed chunk")
    parser.add_argument("--bulk-concurrency", type=int, default=0,
                        help="bulk requests in flight on every backend (default: what the "
                        "maintenance flow uses, bulk_concurrency_for: 1 SQLite, 4 PostgreSQL)")
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="comma-separated, measured in this order in one run")
    args = parser.parse_args()
    backends: list[Backend] = []
    for name in args.backends.split(","):
        if name not in ("sqlite", "postgresql"):
            parser.error(f"--backends: unknown backend {name!r} (sqlite, postgresql)")
        backends.append(name)
    started = datetime.now(UTC)
    results = [bench_backend(b, args) for b in backends]

    print(f"\nsummary ({started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores)")
    print("| backend | runs | DB before | per-run path | bulk path | all pruned |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        overall = (r["each_n"] + r["bulk_n"]) / (r["each_s"] + r["bulk_s"])
        print(f"| {r['backend']} | {r['runs']:,} | {r['db_mib']:.0f} MiB | "
              f"{r['each_n'] / r['each_s']:.0f}/s | {r['bulk_n'] / r['bulk_s']:.0f}/s, "
              f"{r['inflight']} in flight "
              f"(chunks {r['chunk_min']:.0f}-{r['chunk_max']:.0f}/s) | "
              f"{r['each_n'] + r['bulk_n']:,} in {r['each_s'] + r['bulk_s']:.0f}s = "
              f"{overall:.0f}/s, left {r['left']} |")
    print("\n| backend | bulk path CPU s per 1,000 runs: API server | database server | "
          "client | wall s per 1,000 runs |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        c = r["cpu"]
        print(f"| {r['backend']} | {c['server']:.1f} | {c['database']:.1f} | "
              f"{c['client']:.1f} | {1000 * r['bulk_s'] / max(r['bulk_n'], 1):.1f} |")
    by = {r["backend"]: r for r in results}
    if {"sqlite", "postgresql"} <= by.keys():
        def overall(r: dict[str, Any]) -> float:
            return float((r["each_n"] + r["bulk_n"]) / (r["each_s"] + r["bulk_s"]))
        pg, lite = by["postgresql"], by["sqlite"]
        print(f"PostgreSQL / SQLite, same run: bulk "
              f"{(pg['bulk_n'] / pg['bulk_s']) / (lite['bulk_n'] / lite['bulk_s']):.1f}x, "
              f"per-run {(pg['each_n'] / pg['each_s']) / (lite['each_n'] / lite['each_s']):.1f}x, "
              f"overall {overall(pg) / overall(lite):.1f}x (target >= 3x)")
    print(f"command: .venv/bin/python benchmarks/prune.py --runs {args.runs} "
          f"--client-runs {args.client_runs} --each-runs {args.each_runs} --chunk {args.chunk} "
          f"--backends {args.backends}"
          + (f" --bulk-concurrency {args.bulk_concurrency}" if args.bulk_concurrency else ""))


if __name__ == "__main__":
    main()

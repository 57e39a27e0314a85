"""Benchmark: pruning old flow runs of the autoscale deployment (a 30 s schedule makes
2,880 a day) from a real Prefect server (the test harness: a subprocess API server on a
temporary SQLite database).

How the runs are made: --client-runs runs are created through the Prefect client (to time
that path and to get real template rows); the rest are cloned in SQL from those rows (a new
id per flow run and per state row) because creating 100,000 runs through the API takes
~30 min on 2 cores (measured rate printed below). Then ``tasks.maintenance.prune.prune_flow_runs``
deletes them through the API, first with the per-run path (read_flow_runs + delete_flow_run,
bounded concurrency) on --each-runs runs, then with the server's bulk endpoint on the rest.

Run: .venv/bin/python benchmarks/prune.py --runs 100000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from tasks.maintenance.prune import prune_flow_runs  # noqa: E402


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


def clone_runs(db: Path, deployment_id: uuid.UUID, n: int) -> float:
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
                     f"bench-{i}" if c == "name" else template[c] for c in run_cols])
        states.append([sid_s if c == "id" else rid_s if c == "flow_run_id" else state[c]
                       for c in state_cols])
    with conn:
        conn.executemany(f"INSERT INTO flow_run_state ({','.join(state_cols)}) VALUES "
                         f"({','.join('?' * len(state_cols))})", states)
        conn.executemany(f"INSERT INTO flow_run ({','.join(run_cols)}) VALUES "
                         f"({','.join('?' * len(run_cols))})", runs)
    conn.close()
    return time.perf_counter() - started


async def count_runs(deployment_id: uuid.UUID) -> int:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

    async with get_client() as client:
        return await client.count_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--client-runs", type=int, default=300)
    parser.add_argument("--each-runs", type=int, default=1_000,
                        help="runs deleted one by one (the rest in bulk)")
    parser.add_argument("--chunk", type=int, default=5_000, help="bulk runs per timed chunk")
    args = parser.parse_args()
    from prefect.settings import get_current_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        url = get_current_settings().server.database.connection_url
        db = Path(str(url.get_secret_value() if url else "").split("///", 1)[-1])
        client_s, dep_id = asyncio.run(create_via_client("autoscale", args.client_runs))
        clone_s = clone_runs(db, dep_id, args.runs - args.client_runs)
        total = asyncio.run(count_runs(dep_id))
        cutoff = datetime.now(UTC)
        print(f"server DB {db.stat().st_size / 2**20:.0f} MiB with {total:,} autoscale runs")
        rate = args.client_runs / client_s
        print(f"create via client: {args.client_runs} runs in {client_s:.1f}s ({rate:.0f}/s "
              f"-> {args.runs / rate / 60:.0f} min for {args.runs:,}); "
              f"SQL clone of {args.runs - args.client_runs:,} in {clone_s:.1f}s")

        t0 = time.perf_counter()
        each = asyncio.run(prune_flow_runs(cutoff, flow_name="autoscale",
                                           deployment_name="autoscale", bulk=False,
                                           max_runs=args.each_runs))
        each_s = time.perf_counter() - t0
        print(f"per-run path (read_flow_runs + delete_flow_run, concurrency 4): "
              f"{each.removed:,} in {each_s:.1f}s = {each.removed / each_s:.0f}/s", flush=True)
        # The bulk path in chunks, so the rate can be seen against the table's size.
        bulk_n, bulk_s = 0, 0.0
        while True:
            before = asyncio.run(count_runs(dep_id))
            t0 = time.perf_counter()
            chunk = asyncio.run(prune_flow_runs(cutoff, flow_name="autoscale",
                                                deployment_name="autoscale", bulk=True,
                                                max_runs=args.chunk))
            took = time.perf_counter() - t0
            if not chunk.removed:
                break
            bulk_n, bulk_s = bulk_n + chunk.removed, bulk_s + took
            print(f"  bulk chunk: {chunk.removed:,} of {before:,} runs in {took:.1f}s = "
                  f"{chunk.removed / took:.0f}/s (load {os.getloadavg()[0]:.1f})", flush=True)
        left = asyncio.run(count_runs(dep_id))
    total_s = each_s + bulk_s
    print(f"bulk path (prune_flow_runs, POST /flow_runs/bulk_delete x50): {bulk_n:,} in "
          f"{bulk_s:.1f}s = {bulk_n / bulk_s:.0f}/s; left {left}")
    print(f"all {each.removed + bulk_n:,} pruned in {total_s:.1f}s "
          f"({(each.removed + bulk_n) / total_s:.0f}/s overall)")
    print(f"command: .venv/bin/python benchmarks/prune.py --runs {args.runs} "
          f"--client-runs {args.client_runs} --each-runs {args.each_runs} --chunk {args.chunk}")


if __name__ == "__main__":
    main()

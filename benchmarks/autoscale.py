"""Benchmark the autoscale flow on a real local stack and a real Prefect server.

1. Tick cost: wall time of no-op ticks (flow run created on the server, Prefect overhead
   included), median and p95; the Prefect database's growth per tick, extrapolated to a day
   of 30-second ticks (2,880).
2. Reaction to a load step (0 -> 60 rps with a 10 rps-per-instance target, pool 2 of max 4):
   time until the first new instance serves traffic through the gateway, and until the pool
   is at 4 and all serve, for the ``proportional`` and ``threshold`` strategies, each on the
   30-second schedule alone (a served deployment, interval 30, concurrency 1 CANCEL_NEW) and
   with the Alertmanager fast path in its two modes: ``event`` (Prometheus alert ->
   Alertmanager -> webhook -> Prefect event -> automation -> run started by the runner in a new
   process) and ``run`` (the webhook creates the deployment's run and executes it in its own,
   already warm process). The step starts at a random phase of the schedule. For each trial,
   where the seconds went: step -> the acting run created (alert latency), -> Running (run
   creation, Pending, engine or process start), -> run ended (the tick, instance start
   included), -> first new instance serving through the gateway.

Run:  .venv/bin/python benchmarks/autoscale.py [--trials 2] [--driver process|docker]
          [--strategies proportional,threshold] [--triggers sched,event,run]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import httpx
from prefect.settings import PREFECT_API_URL, temporary_settings

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flows.autoscale import autoscale  # noqa: E402
from kongstack.cli.fastpath import ensure_fastpath_automation  # noqa: E402
from kongstack.cli.load import LoadGenerator  # noqa: E402
from kongstack.core.procs import Daemon, free_port, http_ok  # noqa: E402
from tasks.instances.base import InstanceState  # noqa: E402
from tasks.tick.config import AutoscaleConfig  # noqa: E402
from tests.support.autoscale_stack import API_HEADERS, Stack, autoscale_stack  # noqa: E402
from tests.support.services import redis_server  # noqa: E402

STEP_RPS = 60.0
FULL_CAP_S = 75.0
POLL_S = 2  # runner poll interval (PREFECT_RUNNER_POLL_FREQUENCY); the default is 10 s
_API = re.compile(r'^stock_api_requests_total\{[^}]*route="/api[^"]*"[^}]*\}\s+([0-9.e+]+)', re.M)


def alert_rules(path: Path) -> str:
    path.write_text(
        "groups:\n- name: autoscale-fastpath\n  interval: 1s\n  rules:\n"
        "  - alert: HighRequestRate\n"
        "    expr: sum(rate(stock_api_requests_total{route=~\"/api.*\"}[5s]))"
        " / count(up{job=\"stock_api\"} == 1) > 12\n"
        "    for: 0s\n    labels: {autoscale: \"true\", severity: warning}\n")
    return path.read_text()


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    port = free_port()
    env = {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    daemon = Daemon("prefect-server", home)
    daemon.start([str(Path(sys.executable).with_name("prefect")), "server", "start",
                  "--host", "127.0.0.1", "--port", str(port)],
                 ready=lambda: http_ok(f"http://127.0.0.1:{port}/api/health", timeout=2),
                 log_file=home / "server.log", env=env, timeout=180)
    try:
        yield env["PREFECT_API_URL"]
    finally:
        daemon.stop(grace=15)


@contextmanager
def alertmanager(workdir: Path, webhook_url: str) -> Iterator[int]:
    port = free_port()
    conf = workdir / "alertmanager.yml"
    conf.write_text(
        # group_interval also bounds how long one delivery may take: keep it above 1 s.
        "route:\n  receiver: fastpath\n  group_by: [alertname]\n  group_wait: 0s\n"
        "  group_interval: 10s\n  repeat_interval: 1m\n"
        f"receivers:\n- name: fastpath\n  webhook_configs:\n  - url: {webhook_url}\n"
        "    send_resolved: false\n")
    binary = shutil.which("prometheus-alertmanager") or "alertmanager"
    daemon = Daemon(f"alertmanager-{port}", workdir)
    daemon.start([binary, f"--config.file={conf}", f"--storage.path={workdir / 'am'}",
                  f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                 ready=lambda: http_ok(f"http://127.0.0.1:{port}/-/ready"),
                 log_file=workdir / "alertmanager.log", timeout=30)
    try:
        yield port
    finally:
        daemon.stop(grace=5)


def db_bytes(home: Path) -> int:
    """Logical size of the server's SQLite DB (WAL included): used pages x page size."""
    conn = sqlite3.connect(f"file:{home / 'prefect.db'}?mode=ro", uri=True, timeout=30)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)
    finally:
        conn.close()


def table_bytes(home: Path) -> dict[str, int]:
    """Bytes per table/index (SQLite's dbstat), to show where the growth goes."""
    conn = sqlite3.connect(f"file:{home / 'prefect.db'}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    finally:
        conn.close()
    return {str(name): int(size) for name, size in rows}


def tick(config: AutoscaleConfig, trigger: str = "bench") -> dict[str, Any]:
    return asyncio.run(autoscale(config=config, trigger=trigger))


def measure_ticks(stack: Stack, home: Path, count: int) -> dict[str, float]:
    for _ in range(3):  # warm: pool at min, memory block saved, Prometheus scraping
        tick(stack.config)
    before, tables = db_bytes(home), table_bytes(home)
    walls = []
    for _ in range(count):
        t0 = time.perf_counter()
        result = tick(stack.config)
        walls.append(time.perf_counter() - t0)
        assert not result["actions"], result
    growth = (db_bytes(home) - before) / count
    after = table_bytes(home)
    delta = {k: (v - tables.get(k, 0)) / count for k, v in after.items()}
    top = sorted(delta.items(), key=lambda kv: -kv[1])[:8]
    print("growth per tick by table/index: " + ", ".join(f"{k} {v / 1024:.1f} KiB"
                                                         for k, v in top if v > 0))
    walls.sort()
    return {"ticks": count, "median_s": statistics.median(walls),
            "p95_s": walls[int(0.95 * (len(walls) - 1))], "max_s": walls[-1],
            "db_bytes_per_tick": growth, "db_mb_per_day": growth * 2880 / 1e6}


def api_requests(address: str) -> float:
    try:
        text = httpx.get(f"http://{address}/metrics", timeout=1).text
    except httpx.HTTPError:
        return 0.0
    return sum(float(v) for v in _API.findall(text))


def serving(stack: Stack, baseline: set[str]) -> set[str]:
    """New instances (not in ``baseline``) that served API requests through the gateway."""
    ready = {i.address for i in stack.driver().list() if i.state is InstanceState.READY}
    return {a for a in ready - baseline if api_requests(a) > 0}


def reset_pool(stack: Stack, config: AutoscaleConfig) -> None:
    """Back to 2 instances at once (max 2 clamps past the stabilisation window)."""
    shrink = config.model_copy(update={"policy": config.policy.with_overrides(
        {"max_instances": 2})})
    for _ in range(20):
        result = tick(shrink, "reset")
        if not result.get("skipped") and len(stack.ready()) == 2 and stack.targets() == \
                stack.ready():
            return
        time.sleep(1)
    raise RuntimeError("pool did not return to 2")


def trial(stack: Stack, config: AutoscaleConfig, rng: random.Random,
          deployment_id: str | None = None) -> dict[str, Any]:
    for _ in range(5):
        reset_pool(stack, config)
        deadline = time.monotonic() + 30
        while (stack.rps() or 0) > 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        if config.policy.strategy == "threshold":  # its single cooldown also follows a scale-in
            time.sleep(config.policy.cooldown_seconds)
        time.sleep(rng.uniform(0, 30))  # a random phase of the 30 s schedule
        # Every instance that exists now (even one a late tick is still starting) is old.
        baseline = {i.address for i in stack.driver().list()}
        if len(baseline) == 2:
            break
    else:
        raise RuntimeError("could not get a quiet pool of 2 before the step")
    gen = LoadGenerator(url=stack.gateway_url, rps=STEP_RPS, duration=FULL_CAP_S + 30,
                        max_in_flight=64, headers=API_HEADERS)
    thread = threading.Thread(target=gen.run, daemon=True)
    t0 = time.monotonic()
    t0_wall = time.time()
    thread.start()
    first = full = None
    while time.monotonic() - t0 < FULL_CAP_S:
        new = serving(stack, baseline)
        if new and first is None:
            first = time.monotonic() - t0
        if len(new) >= 2:
            full = time.monotonic() - t0
            break
        time.sleep(0.2)
    gen.stop.set()
    thread.join(timeout=30)
    return {"first_s": first, "full_s": full, **acting_run(deployment_id, t0_wall)}


def acting_run(deployment_id: str | None, t0_wall: float) -> dict[str, Any]:
    """Where the seconds went: the first run of the deployment after the step that changed
    the pool (its name says ``<before>to<after>``), timed from the step."""
    if deployment_id is None:
        return {}
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[_uuid(deployment_id)])), limit=200)
    acted = []
    for run in runs:
        found = re.search(r"-(\d+)to(\d+)", run.name or "")
        if run.start_time and run.start_time.timestamp() >= t0_wall - 5 and found and \
                found.group(1) != found.group(2):
            acted.append((run.start_time.timestamp(), run))
    if not acted:
        return {}
    started, run = min(acted, key=lambda pair: pair[0])
    created = run.created.timestamp() if run.created else None
    ended = run.end_time.timestamp() if run.end_time else None
    return {"trigger": str(run.parameters.get("trigger")),
            "created_s": None if created is None else round(created - t0_wall, 2),
            "running_s": round(started - t0_wall, 2),
            "ended_s": None if ended is None else round(ended - t0_wall, 2)}


@contextmanager
def served(config: AutoscaleConfig, name: str, api_url: str, workdir: Path) -> Iterator[str]:
    cfg = workdir / f"{name}.json"
    cfg.write_text(config.model_dump_json())
    env = dict(os.environ, PREFECT_API_URL=api_url, PREFECT_RUNNER_POLL_FREQUENCY=str(POLL_S))
    log = open(workdir / f"serve-{name}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, __file__, "serve", str(cfg), name], cwd=REPO,
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        from prefect.client.orchestration import get_client

        deadline = time.monotonic() + 120
        while True:
            try:
                with get_client(sync_client=True) as client:
                    yield str(client.read_deployment_by_name(f"autoscale/{name}").id)
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def serve_main(config_path: str, name: str) -> None:
    from prefect import serve
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import RunnerDeployment

    from kongstack.cli.serve import RUNNER_PREFETCH_SECONDS

    config = json.loads(Path(config_path).read_text())
    limit = ConcurrencyLimitConfig(limit=1,
                                   collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    deployment = autoscale.to_deployment(
        name=name, interval=30, parameters={"config": config, "trigger": "schedule"},
        concurrency_limit=limit)
    assert isinstance(deployment, RunnerDeployment)
    serve(deployment, pause_on_shutdown=False, print_starting_message=False,
          prefetch_seconds=RUNNER_PREFETCH_SECONDS)


def fmt(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return f"> {FULL_CAP_S:.0f} s"
    missing = len(values) - len(got)
    text = f"median {statistics.median(got):.1f} s, max {max(got):.1f} s"
    return text + (f" ({missing} of {len(values)} > {FULL_CAP_S:.0f} s)" if missing else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--driver", default="process", choices=["process", "docker"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ticks-only", action="store_true", help="skip the load-step trials")
    parser.add_argument("--strategies", default="proportional,threshold")
    parser.add_argument("--triggers", default="sched,event,run",
                        help="comma-separated: " + ", ".join(f"{k} = {v}" for k, v in
                                                              TRIGGERS.items()))
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the work directory (server, serve, webhook logs)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir: Any = (nullcontext(tempfile.mkdtemp(prefix="kongstack-bench-")) if args.keep_logs
                    else tempfile.TemporaryDirectory(prefix="kongstack-bench-"))
    with workdir as tmp:
        work = Path(tmp)
        print(f"work directory: {work}", flush=True)
        (work / "prefect").mkdir()
        with redis_server(work) as (host, rport, _), \
                prefect_server(work / "prefect") as api_url:
            os.environ["PREFECT_API_URL"] = api_url  # for subprocesses
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                bench(work, api_url, host, rport, args, rng)


def bench(work: Path, api_url: str, host: str, rport: int, args: argparse.Namespace,
          rng: random.Random) -> None:
    webhook_port = free_port()
    rules = work / "rules.yml"
    alert_rules(rules)
    with alertmanager(work, f"http://127.0.0.1:{webhook_port}/alerts") as am_port:
        extra = (f"rule_files: ['{rules}']\nalerting:\n  alertmanagers:\n"
                 f"  - static_configs:\n    - targets: ['127.0.0.1:{am_port}']\n")
        with autoscale_stack(work, driver=args.driver, redis_url=f"redis://{host}:{rport}/0",
                             prometheus_extra=extra) as stack:
            run_all(stack, work, api_url, webhook_port, args, rng)


TRIGGERS = {"sched": "30 s schedule only",
            "event": "schedule + fast path, event mode (runner starts a process)",
            "run": "schedule + fast path, run mode (warm webhook process)"}


@contextmanager
def receiver(work: Path, api_url: str, port: int, stack_name: str, mode: str,
             deployment: str) -> Iterator[None]:
    """The fast-path webhook as its own process, as in the demo (python -m
    kongstack.cli.fastpath); in run mode it runs ``deployment``'s alert runs itself."""
    webhook = Daemon(f"fastpath-{mode}-{port}", work)
    webhook.start([sys.executable, "-m", "kongstack.cli.fastpath", "--port", str(port),
                   "--stack", stack_name, "--mode", mode, "--deployment", deployment],
                  ready=lambda: http_ok(f"http://127.0.0.1:{port}/health"),
                  log_file=work / f"fastpath-{mode}.log", cwd=REPO,
                  env={"PREFECT_API_URL": api_url}, timeout=120)
    try:
        yield
    finally:  # the receiver must not outlive a failed run
        webhook.stop(grace=15)


def run_all(stack: Stack, work: Path, api_url: str, webhook_port: int,
            args: argparse.Namespace, rng: random.Random) -> None:
    stack_name = stack.config.pool.stack
    cost = measure_ticks(stack, work / "prefect", args.ticks)
    print(f"no-op tick wall time over {cost['ticks']} ticks: median {cost['median_s']:.2f} s, "
          f"p95 {cost['p95_s']:.2f} s, max {cost['max_s']:.2f} s")
    print(f"Prefect DB growth: {cost['db_bytes_per_tick'] / 1024:.1f} KiB per tick -> "
          f"{cost['db_mb_per_day']:.0f} MB per day of 30 s ticks", flush=True)
    if args.ticks_only:
        print(json.dumps(cost))
        return
    # The seed's threshold rules, with its one cooldown shortened from 300 s to one tick.
    # The trials repeat a 75 s step every ~2 minutes: the policy's on/off rule
    # (short_burst_seconds) would rightly size the pool for the sustained rate between such
    # bursts and not scale at all. This measures the reaction chain, so the rule is off.
    variants: dict[str, dict[str, Any]] = {
        "proportional": {"short_burst_seconds": 0},
        "threshold": {"strategy": "threshold", "scale_up_rps": 30.0,
                      "scale_down_rps": 5.0, "cooldown_seconds": 30.0},
    }
    rows = []
    for strategy in args.strategies.split(","):
        config = stack.config.model_copy(update={"policy": stack.config.policy.with_overrides(
            variants[strategy])})
        for mode in args.triggers.split(","):
            name = f"{strategy}-{mode}"
            with served(config, name, api_url, work) as deployment_id, \
                    receiver(work, api_url, webhook_port, stack_name,
                             "event" if mode == "sched" else mode, f"autoscale/{name}"):
                # Schedule only: an event-mode receiver with no automation does nothing.
                if mode == "event":
                    ensure_fastpath_automation(_uuid(deployment_id), stack_name)
                results = [trial(stack, config, rng, deployment_id)
                           for _ in range(args.trials)]
                if mode == "event":
                    _drop_automations(stack_name)
            rows.append((strategy, TRIGGERS[mode], fmt([r["first_s"] for r in results]),
                         fmt([r["full_s"] for r in results])))
            print(f"{name}: {results}", flush=True)
            print(f"{name} load average: {os.getloadavg()}", flush=True)
    print("\n| strategy | trigger | load step -> first new instance serving | -> pool at 4,"
          " all serving |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{args.trials} trials per row, step 0 -> {STEP_RPS:g} rps at a random phase; "
          f"runner poll {POLL_S} s; driver {args.driver}. Reproduce: .venv/bin/python "
          f"benchmarks/autoscale.py --trials {args.trials} --driver {args.driver} "
          f"--strategies {args.strategies} --triggers {args.triggers}")


def _uuid(value: str) -> Any:
    from uuid import UUID

    return UUID(value)


def _drop_automations(stack: str) -> None:
    from prefect.client.orchestration import get_client

    from kongstack.cli.fastpath import AUTOMATION_PREFIX

    with get_client(sync_client=True) as client:
        for automation in client.read_automations_by_name(f"{AUTOMATION_PREFIX}-{stack}"):
            client.delete_automation(automation.id)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve_main(sys.argv[2], sys.argv[3])
    else:
        main()

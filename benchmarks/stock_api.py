"""Benchmark: cached vs uncached reads of the stock API on one instance.

Starts a real redis-server and two gunicorn instances of the API (same embedded store,
one with the Redis cache, one with ``STOCK_API_CACHE_ENABLED=false`` so that every read
goes to the store: that is what "uncached" means here), seeds the data set, then drives
them from a loopback load generator (httpx, one keep-alive client per thread):

1. closed loop, fixed request count, C concurrent clients: throughput and p50/p99 of
   ``GET /api/stocks/<symbol>`` (uniform random symbols; the cached instance is warmed so
   every measured read is a hit) and of ``GET /api/stocks?page=..`` list pages;
2. open loop paced at a fixed rate (default 200 req/s) against the cached instance:
   p50/p99 measured from each request's *scheduled* send time (so generator lag counts
   against us, no coordinated omission) and from its actual send time; one asyncio loop
   sends (httpx.AsyncClient), and the instance's own latency histogram gives the share
   of those requests it served in <= 10 ms.

Run from the repository root::

    .venv/bin/python benchmarks/stock_api.py [--symbols 500 --days 365]
        [--output FILE.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from kongstack.core.procs import Daemon, free_port, http_ok, port_open
from kongstack.core.settings import REPO_ROOT


@dataclass(frozen=True)
class Result:
    label: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


@contextmanager
def redis(workdir: Path) -> Iterator[str]:
    port = free_port()
    daemon = Daemon(name=f"bench-redis-{port}", run_dir=workdir)
    daemon.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--dir", str(workdir)],
                 ready=lambda: port_open("127.0.0.1", port), log_file=workdir / "redis.log")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        daemon.stop(grace=5)


@contextmanager
def api(workdir: Path, name: str, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    daemon = Daemon(name=f"bench-{name}-{port}", run_dir=workdir)
    full = {"PORT": str(port), "INSTANCE_ID": f"bench-{name}", **env}
    daemon.start([sys.executable, "-m", "gunicorn", "-c", "python:stock_api.gunicorn_conf",
                  "stock_api.app:create_app()"],
                 ready=lambda: http_ok(f"http://127.0.0.1:{port}/ready"),
                 log_file=workdir / f"{name}.out", env=full, cwd=REPO_ROOT, timeout=60)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        daemon.stop(grace=10)


def closed_loop(label: str, base: str, paths: Sequence[str], concurrency: int) -> Result:
    """Send every path once with ``concurrency`` clients; nothing else runs meanwhile."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    chunks = [paths[i::concurrency] for i in range(concurrency)]

    def worker(chunk: Sequence[str]) -> None:
        nonlocal errors
        own: list[float] = []
        bad = 0
        with httpx.Client(base_url=base, timeout=10) as http:
            for path in chunk:
                t0 = time.perf_counter()
                status = http.get(path).status_code
                own.append((time.perf_counter() - t0) * 1000)
                bad += status != 200
        with lock:
            latencies.extend(own)
            errors += bad

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, chunks))
    return Result(label, len(paths), errors, time.perf_counter() - started, latencies)


def paced(base: str, paths: Sequence[str], rate: float, senders: int) -> tuple[Result, Result]:
    """Open loop: request i is due at start + i/rate, whatever happened to earlier ones.

    One asyncio event loop sends everything (no thread convoy on the GIL in the
    generator); ``senders`` bounds the keep-alive connections it may open."""

    async def drive() -> tuple[list[float], list[float], int]:
        scheduled: list[float] = []
        actual: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
        async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as http:

            async def send(path: str, due: float) -> None:
                nonlocal errors
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sent = time.perf_counter()
                status = (await http.get(path)).status_code
                done = time.perf_counter()
                scheduled.append((done - due) * 1000)
                actual.append((done - sent) * 1000)
                errors += status != 200

            await http.get("/health")  # open one connection before the clock starts
            start = time.perf_counter() + 0.1
            await asyncio.gather(*(send(path, start + i / rate) for i, path in enumerate(paths)))
        return scheduled, actual, errors

    scheduled, actual, errors = asyncio.run(drive())
    seconds = len(paths) / rate
    return (Result(f"cached, paced {rate:.0f} req/s (from schedule)", len(paths), errors,
                   seconds, scheduled),
            Result(f"cached, paced {rate:.0f} req/s (from send)", len(paths), errors,
                   seconds, actual))


def server_buckets(base: str) -> tuple[float, float]:
    """(requests served in <= 10 ms, all requests) for GET /api/stocks/<symbol>, per the
    instance's own latency histogram: separates server time from generator/queueing lag."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    prefix = ('stock_api_request_duration_seconds_bucket{le="%s",method="GET",'
              'route="/api/stocks/<symbol>"}')
    fast = total = 0.0
    for line in text.splitlines():
        if line.startswith(prefix % "0.01"):
            fast = float(line.split()[-1])
        elif line.startswith(prefix % "+Inf"):
            total = float(line.split()[-1])
    return fast, total


def cache_hit_ratio(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    counts = {}
    for result in ("hit", "miss", "error"):
        line = next(x for x in text.splitlines()
                    if x.startswith(f'stock_api_cache_requests_total{{result="{result}"}}'))
        counts[result] = float(line.split()[-1])
    total = sum(counts.values())
    return counts["hit"] / total if total else 0.0


def run(args: argparse.Namespace, log: Callable[[str], None]) -> list[Result]:
    rng = random.Random(args.rng_seed)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-api-")))
        data = workdir / "data"
        redis_url = stack.enter_context(redis(workdir))
        log(f"seeding {args.symbols} symbols x {args.days} days into the embedded store ...")
        env = {**os.environ, "STOCK_API_DATA_DIR": str(data)}
        subprocess.run([sys.executable, "-m", "stock_api.seed", "--symbols", str(args.symbols),
                        "--days", str(args.days)], env=env, cwd=REPO_ROOT, check=True,
                       timeout=600, stdout=subprocess.DEVNULL)
        common = {"REDIS_URL": redis_url, "STOCK_API_DATA_DIR": str(data),
                  "STOCK_API_CACHE_TTL": "3600"}
        cached = stack.enter_context(api(workdir, "cached", common))
        uncached = stack.enter_context(
            api(workdir, "uncached", {**common, "STOCK_API_CACHE_ENABLED": "false"}))
        symbols = [s["symbol"] for page in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
                   for s in httpx.get(f"{cached}/api/stocks", params={"per_page": 200,
                                      "page": page}, timeout=30).json()["items"]]
        log(f"{len(symbols)} symbols; warming the cache ...")
        stock_paths = [f"/api/stocks/{s}" for s in symbols]
        list_paths = [f"/api/stocks?per_page=50&page={p}" for p in range(1, 11)]
        closed_loop("warm", cached, stock_paths + list_paths, args.concurrency)

        def pick(paths: list[str], n: int) -> list[str]:
            return [rng.choice(paths) for _ in range(n)]

        results = []
        for label, base, n, paths in (
            ("uncached GET /api/stocks/<symbol>", uncached, args.uncached, stock_paths),
            ("cached GET /api/stocks/<symbol>", cached, args.cached, stock_paths),
            ("uncached GET /api/stocks (list page)", uncached, args.uncached // 2, list_paths),
            ("cached GET /api/stocks (list page)", cached, args.cached // 2, list_paths),
        ):
            log(f"{label}: {n} requests, {args.concurrency} clients ...")
            results.append(closed_loop(label, base, pick(paths, n), args.concurrency))
        log(f"paced {args.rate:.0f} req/s for {args.paced_seconds:.0f} s against the cached "
            "instance ...")
        fast0, total0 = server_buckets(cached)
        results.extend(paced(cached, pick(stock_paths, int(args.rate * args.paced_seconds)),
                             args.rate, args.senders))
        fast1, total1 = server_buckets(cached)
        args.server_fast_share = (fast1 - fast0) / max(total1 - total0, 1.0)
        log(f"cache hit ratio on the cached instance (warm-up misses included): "
            f"{cache_hit_ratio(cached):.3f}")
        return results


def report(results: list[Result], args: argparse.Namespace, command: str) -> str:
    by = {r.label: r for r in results}
    stock_ratio = (by["cached GET /api/stocks/<symbol>"].throughput
                   / by["uncached GET /api/stocks/<symbol>"].throughput)
    list_ratio = (by["cached GET /api/stocks (list page)"].throughput
                  / by["uncached GET /api/stocks (list page)"].throughput)
    paced_p99 = by[f"cached, paced {args.rate:.0f} req/s (from schedule)"].pct(99)
    lines = [
        "| workload | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.label} | {r.requests} | {r.errors} | {r.throughput:.0f} | "
                     f"{r.pct(50):.2f} | {r.pct(99):.2f} |")
    verdict_ratio = "met" if stock_ratio >= 3 else "MISSED"
    verdict_p99 = "met" if paced_p99 < 10 else "MISSED"
    lines += [
        "",
        f"- cached / uncached throughput, single stock: **{stock_ratio:.1f}x** "
        f"(target >= 3x: {verdict_ratio}); list page: **{list_ratio:.1f}x**",
        f"- cached p99 at {args.rate:.0f} req/s (from scheduled send time): "
        f"**{paced_p99:.2f} ms** (target < 10 ms: {verdict_p99}); the instance's own "
        f"histogram counts {100 * args.server_fast_share:.1f}% of those requests served "
        "in <= 10 ms",
        f"- closed loop with {args.concurrency} concurrent keep-alive clients; one gunicorn "
        "instance (1 worker, 8 threads) per variant; uncached = STOCK_API_CACHE_ENABLED=false "
        "(every read scans the embedded montydb/sqlite store); "
        f"{args.symbols} symbols x {args.days} days seeded",
        f"- machine: {os.cpu_count()} cores, shared/noisy (1-min load average "
        f"{args.load[0]:.1f} before, {args.load[1]:.1f} after); Python "
        f"{platform.python_version()}; load generator, Redis and both instances on the same "
        "cores",
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--cached", type=int, default=4000, help="cached requests")
    parser.add_argument("--uncached", type=int, default=800, help="uncached requests")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=16,
                        help="max connections of the paced phase")
    parser.add_argument("--rng-seed", type=int, default=1)
    parser.add_argument("--output", type=Path, help="also write the markdown section here")
    args = parser.parse_args(argv)
    command = ".venv/bin/python benchmarks/stock_api.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]
    results = run(args, log)
    args.load = (load_before, os.getloadavg()[0])
    text = report(results, args, command.strip())
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        header = ("## Stock API: cached vs uncached reads\n\n"
                  f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n")
        args.output.write_text(header + text + "\n")
    return 0 if all(r.errors == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: a pool at scale, on paper and in simulation (issue 15).

1. The tick's pure part for 1,000 instances on 50 hosts: ``decide`` (readings, strategy,
   safety rules) plus placement (``autoscaler.placement.place`` for a scale-out,
   ``select_victims`` keeping the spread for a scale-in). The hosts are simulated (their
   capacity and load are numbers); the code timed is the code a tick runs.
2. A Kong reconcile with 1,000 targets against the Admin API double over real HTTP on
   loopback: the first apply (requests, wall time), the same state again (expected: reads
   only, 0 writes; pagination counted) and ``list_targets`` (the repair's read).

Run: .venv/bin/python benchmarks/scale_out.py [--instances 1000] [--hosts 50] [--repeat 200]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autoscaler import (  # noqa: E402
    AutoscalePolicy,
    InstanceView,
    Metrics,
    Observation,
    ScalingHistory,
    decide,
    select_victims,
)
from autoscaler.config import HARD_MAX_INSTANCES  # noqa: E402
from autoscaler.placement import HostLoad, place  # noqa: E402
from tasks.gateway.desired import (  # noqa: E402
    ConsumerConfig,
    GatewayStackConfig,
    build_gateway_state,
)
from tasks.gateway.kong.client import KongAdminClient  # noqa: E402
from tasks.gateway.kong.sync import KongGateway  # noqa: E402
from tests.doubles.kong_server import kong_double  # noqa: E402

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def pool(instances: int, hosts: int, load_factor: float) -> tuple[
        AutoscalePolicy, Observation, ScalingHistory, dict[str, int]]:
    """``instances`` spread over ``hosts`` (capacity 25 each: 1,250 places for the 1,000),
    at ``load_factor`` x target."""
    # A real, validated policy whose max is the hard ceiling, 1,000 (HARD_MAX_INSTANCES).
    policy = AutoscalePolicy.build({
        "min_instances": 1, "max_instances": HARD_MAX_INSTANCES,
        "target_rps_per_instance": 70, "victim_selection": "newest",
        "target_cpu_percent": None, "target_memory_percent": None,
        "scale_down_cooldown_seconds": 0, "scale_down_stabilization_seconds": 0,
        "scale_down_peak_window_seconds": 0,
        "scale_up_limit_instances": HARD_MAX_INSTANCES}, source="benchmark")
    views = tuple(
        InstanceView(id=f"i{k}", host=f"h{k % hosts:02d}",
                     started_at=NOW - timedelta(seconds=3600 + k),
                     metrics=Metrics(cpu_percent=40 + k % 50, memory_percent=35, sampled_at=NOW))
        for k in range(instances))
    obs = Observation(instances=views,
                      aggregate=Metrics(rps=70.0 * instances * load_factor, p95_latency_ms=180))
    used = Counter(v.host or "" for v in views)
    return policy, obs, ScalingHistory(), dict(used)


def tick_pure(policy: AutoscalePolicy, obs: Observation, history: ScalingHistory,
              used: dict[str, int]) -> tuple[int, int]:
    """decide + placement, as the tick does them: (started, removed)."""
    decision = decide(policy, obs, history, NOW)
    change = decision.desired - decision.current
    if change > 0:
        loads = [HostLoad(name, 25, n) for name, n in sorted(used.items())]
        return len(place(loads, change).hosts), 0
    if change < 0:
        return 0, len(select_victims(policy, obs.instances, -change))
    return 0, 0


def timed_ms(call: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        call()
        out.append((time.perf_counter() - t) * 1000)
    return out


def kong_targets(count: int) -> dict[str, float]:
    config = GatewayStackConfig(
        consumers=(ConsumerConfig(username="bench", key=SecretStr("bench-key-1")),),
        log_endpoint="http://127.0.0.1:9/logs",  # type: ignore[arg-type]
        rate_limit_per_minute=1_000_000)
    targets = [f"10.{k // 250}.{k % 250}.10:18300" for k in range(count)]
    desired = build_gateway_state(config, targets=targets)
    with kong_double() as kong:
        client = KongAdminClient(base_url=kong.url)
        gateway = KongGateway(client=client)
        t0 = time.perf_counter()
        first = gateway.apply(desired)
        t1 = time.perf_counter()
        kong.reset_counts()
        again = gateway.apply(desired)
        t2 = time.perf_counter()
        again_requests = sum(kong.requests.values())
        again_gets = sum(1 for method, path in kong.server.log if method == "GET"
                         and path.endswith("/targets"))
        kong.reset_counts()
        listed = gateway.list_targets()
        t3 = time.perf_counter()
        list_requests = sum(kong.requests.values())
        client.close()
    assert len(listed) == count, len(listed)
    return {"first_writes": first.writes, "first_reads": first.reads, "first_s": t1 - t0,
            "again_reads": again.reads, "again_writes": again.writes,
            "again_requests": again_requests, "again_target_pages": again_gets,
            "again_s": t2 - t1, "list_requests": list_requests, "list_s": t3 - t2,
            "ops_again": len(again.operations)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}")
    print(f"| tick's pure part, {args.instances} instances on {args.hosts} hosts "
          f"({args.repeat} runs) | result | median | p99 | max |")
    print("|---|---|---:|---:|---:|")
    # Each case has ``--instances`` on one side: the scale-out grows a pool of
    # instances / 1.2 by 20 % to the 1,000 the policy's max (the hard ceiling) allows.
    for label, start, factor in (
            ("steady (no change)", args.instances, 1.0),
            (f"scale-out to {args.instances} (+20 % load)", math.ceil(args.instances / 1.2), 1.2),
            (f"scale-in from {args.instances} (-40 % load)", args.instances, 0.6)):
        policy, obs, history, used = pool(start, args.hosts, factor)
        args_now = (policy, obs, history, used)
        result = tick_pure(*args_now)
        timed_ms(partial(tick_pure, *args_now), 20)  # warm-up
        samples = timed_ms(partial(tick_pure, *args_now), args.repeat)
        q = statistics.quantiles(samples, n=100)
        print(f"| {label} | started {result[0]}, removed {result[1]} | "
              f"{statistics.median(samples):.2f} ms | {q[98]:.2f} ms | {max(samples):.2f} ms |")
    k = kong_targets(args.instances)
    print(f"\nKong Admin API double, {args.instances} targets:")
    print(f"  first apply: {k['first_writes']:.0f} writes, {k['first_reads']:.0f} reads, "
          f"{k['first_s']:.2f} s")
    print(f"  unchanged re-apply: {k['again_writes']:.0f} writes, {k['again_reads']:.0f} reads "
          f"({k['again_requests']:.0f} HTTP requests, {k['again_target_pages']:.0f} pages of "
          f"targets), {k['ops_again']:.0f} operations, {k['again_s']:.2f} s")
    print(f"  list_targets (the repair's read): {k['list_requests']:.0f} requests, "
          f"{k['list_s']:.2f} s")
    print(f"command: .venv/bin/python benchmarks/scale_out.py --instances {args.instances} "
          f"--hosts {args.hosts} --repeat {args.repeat}")


if __name__ == "__main__":
    main()

"""Decision time of ``autoscaler.decide`` for a pool of 100 instances.

    .venv/bin/python benchmarks/decision.py [--instances 100] [--repeat 2000]

Measures one full ``decide`` call (readings, strategy, every safety rule, the Decision model)
and, separately, ``ScalingHistory.record``, on an observation with per-instance CPU/memory and
gateway rps/p95, and a history holding 10 minutes of 30 s recommendations.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoscaler import (  # noqa: E402
    AutoscalePolicy,
    InstanceView,
    Metrics,
    Observation,
    ScalingHistory,
    decide,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def build(instances: int) -> tuple[AutoscalePolicy, Observation, ScalingHistory]:
    policy = AutoscalePolicy(min_instances=1, max_instances=200, target_rps_per_instance=70)
    views = tuple(
        InstanceView(
            id=f"i{k}",
            started_at=NOW - timedelta(seconds=3600 + k),
            metrics=Metrics(cpu_percent=40 + k % 50, memory_percent=35, sampled_at=NOW),
        )
        for k in range(instances)
    )
    obs = Observation(
        instances=views, aggregate=Metrics(rps=70.0 * instances * 0.9, p95_latency_ms=180)
    )
    history = ScalingHistory()
    for k in range(20):
        at = NOW - timedelta(seconds=30 * (20 - k))
        history = history.record(decide(policy, obs, history, at))
    return policy, obs, history


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    policy, obs, history = build(args.instances)
    decision = decide(policy, obs, history, NOW)
    timed(lambda: decide(policy, obs, history, NOW), 200)  # warm-up
    decide_us = timed(lambda: decide(policy, obs, history, NOW), args.repeat)
    record_us = timed(lambda: history.record(decision), args.repeat)
    print(
        f"decide() for {args.instances} instances, {args.repeat} calls "
        f"(python {platform.python_version()}):"
    )
    for label, samples in (("decide", decide_us), ("history.record", record_us)):
        q = statistics.quantiles(samples, n=100)
        print(
            f"  {label:15} median {statistics.median(samples):7.1f} us   p99 {q[98]:7.1f} us"
            f"   max {max(samples):7.1f} us"
        )
    print(f"  decision: {decision.reason}")
    print(
        f"reproduce: .venv/bin/python benchmarks/decision.py --instances {args.instances} "
        f"--repeat {args.repeat}"
    )


if __name__ == "__main__":
    main()

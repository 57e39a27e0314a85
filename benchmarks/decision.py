"""Decision time of ``autoscaler.decide`` for a pool of 100 instances.

    .venv/bin/python benchmarks/decision.py [--instances 100] [--repeat 2000]

Measures what a tick computes, each separately: ``learn`` (fold the tick into the capacity
estimate: a robust line fit over up to 64 points), one full ``decide`` call (readings,
strategy with the learned rate target, the trend and seasonal forecasts, every safety rule,
the Decision model) and ``ScalingHistory.record``. The policy is the shipped default with
only the pool bounds; the observation has per-instance CPU/memory and gateway rps/p95; the
history holds an hour of 30 s ticks (rates, recommendations, a confident learned capacity)
and a seasonal profile built from two days of rates (as maintenance stores it).
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
from autoscaler.config import HARD_MAX_INSTANCES  # noqa: E402
from autoscaler.forecast import build_profile  # noqa: E402
from autoscaler.learning import learn  # noqa: E402

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def observation(instances: int, at: datetime, load: float) -> Observation:
    """``load`` requests/s per instance on a service that serves 100/s at 100 % CPU."""
    views = tuple(
        InstanceView(
            id=f"i{k}",
            started_at=NOW - timedelta(seconds=7200 + k),
            metrics=Metrics(cpu_percent=3 + 0.97 * load + k % 5, memory_percent=35,
                            sampled_at=at),
        )
        for k in range(instances)
    )
    aggregate = Metrics(rps=load * instances, p95_latency_ms=180, sampled_at=at)
    return Observation(instances=views, aggregate=aggregate, version="v1")


def build(instances: int) -> tuple[AutoscalePolicy, Observation, ScalingHistory]:
    # The policy's ceiling (issue 15 made it 100): a pool of 100 is decided at its bound.
    policy = AutoscalePolicy(min_instances=1, max_instances=HARD_MAX_INSTANCES)
    days = [(NOW - timedelta(days=d, minutes=m), 5000.0 + 20 * (m % 300))
            for d in (1, 2) for m in range(0, 1440, 5)]
    history = ScalingHistory(profile=build_profile(days))
    for k in range(120):  # an hour of ticks at loads between 30 and 75/s per instance
        at = NOW - timedelta(seconds=30 * (120 - k))
        obs = observation(instances, at, 30 + (k * 7) % 45)
        history = learn(policy, obs, history, at)
        history = history.record(decide(policy, obs, history, at))
    assert history.capacity.confident(policy.capacity_confidence), history.capacity.describe()
    return policy, observation(instances, NOW, 60), history


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
    learn_us = timed(lambda: learn(policy, obs, history, NOW), args.repeat)
    print(
        f"decide() for {args.instances} instances, {args.repeat} calls "
        f"(python {platform.python_version()}):"
    )
    rows = (("learn", learn_us), ("decide", decide_us), ("history.record", record_us))
    for label, samples in rows:
        q = statistics.quantiles(samples, n=100)
        print(
            f"  {label:15} median {statistics.median(samples):7.1f} us   p99 {q[98]:7.1f} us"
            f"   max {max(samples):7.1f} us"
        )
    print(f"  decision: {decision.reason}")
    print(f"  capacity: {history.capacity.describe()}")
    print(
        f"reproduce: .venv/bin/python benchmarks/decision.py --instances {args.instances} "
        f"--repeat {args.repeat}"
    )


if __name__ == "__main__":
    main()

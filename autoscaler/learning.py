"""What the autoscaler learns from each tick, and the request-rate target it derives (pure).

The tick (and the replay) call, in this order::

    history = learn(policy, observation, history, now)     # fold this tick into the estimate
    decision = decide(policy, observation, history, now)   # reads history.capacity
    history = history.record(decision)

``rps_target`` is the one place that says which per-instance request rate the policy aims
at: a manually set ``target_rps_per_instance`` always wins; otherwise the learned capacity at
the CPU target once the estimate is confident; otherwise none (the policy scales on CPU alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from autoscaler.capacity import CapacityEstimate, CapacitySample, LearnerSettings, observe
from autoscaler.config import AutoscalePolicy
from autoscaler.model import InstanceState, Observation, ScalingHistory
from autoscaler.readings import fresh_metrics, is_warm

DEFAULT_CPU_TARGET = 70.0
"""The CPU level a learned rate target aims at when the policy has no CPU target."""


@dataclass(frozen=True)
class RpsTarget:
    rps: float
    source: str
    """``"set"`` (the policy's) or ``"learned"``."""
    why: str


def capacity_sample(
    observation: Observation, policy: AutoscalePolicy, now: datetime
) -> CapacitySample | None:
    """This tick's capacity evidence: the gateway's rate per ready instance, the mean CPU of
    those instances, and whether p95 was over its threshold. The CPU is the pool's average
    over the rate's own window when the observation has one (Prometheus: the same 60 s as the
    rate), else the mean of the engine's per-instance samples (a second or so each: at a
    steady load they swing several-fold, which the fit would read as a wrong slope). ``warm``
    is False while any ready instance is in its warm-up or any instance
    drains: their share of the load is unknown, so nothing is learnt from that tick.
    ``None`` without a fresh request rate or a ready instance."""
    agg = fresh_metrics(observation.aggregate, policy, now)
    if agg is None or agg.rps is None:
        return None
    ready = [i for i in observation.instances if i.state is InstanceState.READY]
    if not ready:
        return None
    draining = any(i.state is InstanceState.DRAINING for i in observation.instances)
    warm = [i for i in ready if is_warm(i, policy, now)]
    cpus = [
        m.cpu_percent
        for i in warm
        if (m := fresh_metrics(i.metrics, policy, now)) is not None and m.cpu_percent is not None
    ]
    cpu: float | None = agg.cpu_percent  # the rate's window (or the replay's pool average)
    if cpu is None and cpus and len(cpus) == len(warm):
        cpu = sum(cpus) / len(cpus)
    p95 = agg.p95_latency_ms
    return CapacitySample(
        at=now,
        rps_per_instance=agg.rps / len(ready),
        cpu_percent=cpu,
        slow=None if p95 is None else p95 > policy.response_time_threshold_ms,
        error_rate=agg.error_rate,
        serving=len(ready),
        version=observation.version,
        warm=len(warm) == len(ready) and not draining,
    )


def learn(
    policy: AutoscalePolicy,
    observation: Observation,
    history: ScalingHistory,
    now: datetime,
    settings: LearnerSettings | None = None,
) -> ScalingHistory:
    """``history`` with this tick folded into its capacity estimate (unchanged when the
    policy does not learn)."""
    if not policy.learn_capacity:
        return history
    sample = capacity_sample(observation, policy, now)
    if sample is None:
        return history
    estimate = observe(history.capacity, sample, settings or LearnerSettings())
    return history.model_copy(update={"capacity": estimate})


def rps_target(policy: AutoscalePolicy, capacity: CapacityEstimate) -> RpsTarget | None:
    """The per-instance request rate to aim at, and where it comes from."""
    if policy.target_rps_per_instance is not None:
        return RpsTarget(policy.target_rps_per_instance, "set", "set in the policy")
    if not policy.learn_capacity or not capacity.confident(policy.capacity_confidence):
        return None
    cpu = policy.target_cpu_percent or DEFAULT_CPU_TARGET
    rate = capacity.rps_at(cpu)
    if rate is None or rate <= 0:
        return None
    assert capacity.capacity_rps is not None  # confident() checked it
    return RpsTarget(
        rate,
        "learned",
        f"learned: {capacity.capacity_rps:.1f}/s per instance at 100% CPU "
        f"(confidence {capacity.confidence:.2f}, {capacity.samples} samples) at {cpu:g}% CPU",
    )

"""Named configurations for replays and the benchmark.

* ``default``   – ``AutoscalePolicy()`` with only the pool bounds of the replay: no tuning, no
  request-rate target (it learns one instance's capacity from the scraped rate, CPU and p95,
  as it does live).
* ``tuned``     – the same with ``target_rps_per_instance`` set from the service model
  (``capacity x target_cpu_percent``: what an operator sets after one load test).
* ``threshold`` – the seed's rules (80/30 %, one 5 min cooldown, 30 s checks). The seed's
  absolute request-rate limits (150/50 per s) mean nothing at a replay's scale, so they are
  switched off (up never fires on rps, down never waits for it).
* ``hpa``       – a Kubernetes-HPA-style baseline: CPU target 70 %, tolerance 0.1 (both ways),
  300 s scale-down window, 15 s sync, +4/+100 % per 15 s, 30 s readiness delay, no flapping check,
  no latency trigger, no forecast.
"""

from __future__ import annotations

from collections.abc import Callable

from autoscaler.config import MAX_LATENCY_MS, MAX_RPS, AutoscalePolicy
from autoscaler.learning import DEFAULT_CPU_TARGET
from autoscaler.service_model import ServiceModel

_OFF = MAX_RPS  # a threshold no trace reaches: the rule is off


def default_policy(model: ServiceModel, lo: int, hi: int) -> AutoscalePolicy:
    return AutoscalePolicy(min_instances=lo, max_instances=hi)


def tuned_policy(model: ServiceModel, lo: int, hi: int) -> AutoscalePolicy:
    base = AutoscalePolicy(min_instances=lo, max_instances=hi)
    cpu = base.target_cpu_percent or DEFAULT_CPU_TARGET
    return base.with_overrides({"target_rps_per_instance": model.capacity_rps * cpu / 100})


def threshold_policy(model: ServiceModel, lo: int, hi: int) -> AutoscalePolicy:
    return AutoscalePolicy(
        strategy="threshold",
        learn_capacity=False,
        count_failed_requests=False,
        min_instances=lo,
        max_instances=hi,
        scale_up_rps=_OFF,
        scale_down_rps=_OFF - 1,
    )


def hpa_policy(model: ServiceModel, lo: int, hi: int) -> AutoscalePolicy:
    return AutoscalePolicy(
        min_instances=lo,
        max_instances=hi,
        target_cpu_percent=70.0,
        target_memory_percent=None,
        learn_capacity=False,
        count_failed_requests=False,
        seasonal_forecast=False,
        short_burst_seconds=0,
        tolerance=0.1,
        # The HPA's one tolerance applies both ways (the default's wider down band is ours).
        scale_up_tolerance=None,
        scale_down_tolerance=None,
        scale_down_stabilization_seconds=300,
        check_interval_seconds=15,
        scale_up_period_seconds=15,
        scale_up_limit_instances=4,
        scale_up_limit_percent=100,
        flapping_check=False,
        warmup_seconds=30,
        response_time_threshold_ms=MAX_LATENCY_MS,
        forecast_seconds=0,
        scale_down_cooldown_seconds=0,
        scale_down_peak_window_seconds=0,  # (it has no rps target; explicit all the same)
    )


PRESETS: dict[str, Callable[[ServiceModel, int, int], AutoscalePolicy]] = {
    "default": default_policy,
    "tuned": tuned_policy,
    "threshold": threshold_policy,
    "hpa": hpa_policy,
}

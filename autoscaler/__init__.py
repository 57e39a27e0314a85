"""kongstack's PURE autoscaling decision core (no I/O, no clock, no Prefect).

Typical tick (in the autoscale flow; the policy is read from a file at the edge)::

    policy = AutoscalePolicy.build(mapping).with_overrides(flow_params)
    history = history.with_profile(profile)                     # maintenance's LoadProfile
    history = learn(policy, observation, history, now)          # learned capacity (pure)
    decision = decide(policy, observation, history, now)      # pure
    victims = select_victims(policy, observation.instances, decision.current - decision.desired)
    ... act (unless decision.dry_run) ...
    history = history.record(decision, acted=ok)               # store as JSON (model_dump)

``PolicyError`` (a ``ValueError``) is raised by ``AutoscalePolicy.build``/``with_overrides``
with a message naming the field; the edge turns it into its own ``ConfigError``. The package
imports nothing from the rest of the project (tests/autoscaler/test_purity.py).
"""

from __future__ import annotations

from autoscaler.capacity import CapacityEstimate, CapacitySample, LearnerSettings, observe
from autoscaler.config import AutoscalePolicy, StrategyName, VictimSelector
from autoscaler.decide import decide
from autoscaler.errors import PolicyError
from autoscaler.forecast import Bursts, Forecast, LoadProfile, build_profile, bursts, forecast
from autoscaler.learning import RpsTarget, capacity_sample, learn, rps_target
from autoscaler.model import (
    Decision,
    Direction,
    InstanceState,
    InstanceView,
    LatencySample,
    LimitApplied,
    Metrics,
    Observation,
    RateSample,
    Recommendation,
    ScaleEvent,
    ScalingHistory,
)
from autoscaler.rules import remaining_cooldowns
from autoscaler.victims import SELECTORS, select_victims

__all__ = [
    "SELECTORS",
    "AutoscalePolicy",
    "Bursts",
    "CapacityEstimate",
    "CapacitySample",
    "Decision",
    "Direction",
    "Forecast",
    "InstanceState",
    "InstanceView",
    "LatencySample",
    "LearnerSettings",
    "LimitApplied",
    "LoadProfile",
    "Metrics",
    "Observation",
    "PolicyError",
    "RateSample",
    "Recommendation",
    "RpsTarget",
    "ScaleEvent",
    "ScalingHistory",
    "StrategyName",
    "VictimSelector",
    "build_profile",
    "bursts",
    "capacity_sample",
    "decide",
    "forecast",
    "learn",
    "observe",
    "remaining_cooldowns",
    "rps_target",
    "select_victims",
]

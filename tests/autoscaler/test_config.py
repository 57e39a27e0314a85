"""One typed configuration: seed defaults, sources, and errors that name the field."""

from __future__ import annotations

import pytest

from autoscaler import AutoscalePolicy
from autoscaler.errors import PolicyError


def test_seed_defaults() -> None:
    policy = AutoscalePolicy()
    assert (policy.min_instances, policy.max_instances) == (3, 6)
    assert (policy.scale_up_threshold, policy.scale_down_threshold) == (80, 30)
    assert (policy.check_interval_seconds, policy.cooldown_seconds) == (30, 300)
    assert policy.strategy == "proportional"
    assert policy.scale_down_stabilization_seconds == 300
    assert (policy.scale_up_rps, policy.scale_down_rps) == (150, 50)
    assert policy.response_time_threshold_ms == 1000


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"min_instances": 7}, "min_instances (7) must not exceed max_instances (6)"),
        ({"min_instances": -1}, "min_instances"),
        ({"cooldown_seconds": -5}, "cooldown_seconds"),
        ({"scale_down_threshold": 80}, "scale_down_threshold (80.0) must be below"),
        ({"scale_down_threshold": 90, "scale_up_threshold": 85}, "scale_down_threshold"),
        ({"strategy": "magic"}, "strategy"),
        ({"max_instance": 4}, "max_instance: Extra inputs are not permitted"),
        ({"victim_selection": "random"}, "victim_selection"),
        ({"tolerance": 1.5}, "tolerance"),
        (
            {"target_cpu_percent": None, "target_memory_percent": None},
            "the proportional strategy needs at least one target",
        ),
    ],
    ids=lambda v: str(v),
)
def test_invalid_values_are_rejected_naming_the_field(
    values: dict[str, object], field: str
) -> None:
    with pytest.raises(PolicyError, match=field.replace("(", r"\(").replace(")", r"\)")):
        AutoscalePolicy.build(values)


def test_overrides_ignore_none_and_name_their_source() -> None:
    policy = AutoscalePolicy.build({"min_instances": 2})
    # Flow parameters: None means "not given" and keeps the value.
    tuned = policy.with_overrides({"max_instances": 10, "cooldown_seconds": None})
    assert tuned.max_instances == 10 and tuned.cooldown_seconds == 300
    with pytest.raises(
        PolicyError, match=r"parameters: min_instances \(2\) must not exceed max_instances \(1\)"
    ):
        policy.with_overrides({"max_instances": 1})


def test_policy_error_lists_the_bad_fields() -> None:
    with pytest.raises(PolicyError) as caught:
        AutoscalePolicy.build({"min_instances": -1, "tolerance": 2, "bogus": 1})
    assert caught.value.fields == ("min_instances", "tolerance", "bogus")
    assert isinstance(caught.value, ValueError)


def test_policy_is_immutable() -> None:
    policy = AutoscalePolicy()
    with pytest.raises(ValueError):
        setattr(policy, "min_instances", 5)  # noqa: B010 (frozen model: must raise)


def test_the_hard_ceiling_admits_the_measured_1000_and_refuses_past_it() -> None:
    """HARD_MAX_INSTANCES is the largest pool measured (1,000 on 50 hosts,
    benchmarks/scale_out.py); a typo such as 1e9 is refused naming the field and limit."""
    from autoscaler.config import HARD_MAX_INSTANCES

    assert HARD_MAX_INSTANCES == 1000
    policy = AutoscalePolicy.build({"max_instances": 1000, "scale_up_limit_instances": 1000})
    assert policy.max_instances == 1000
    for value in (1001, 1e9):
        with pytest.raises(PolicyError, match=r"max_instances: Input should be less than or "
                                              r"equal to 1000"):
            AutoscalePolicy.build({"max_instances": value})

"""One typed configuration: seed defaults, sources, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler import AutoscalePolicy
from kongstack.core.errors import ConfigError


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
    with pytest.raises(ConfigError, match=field.replace("(", r"\(").replace(")", r"\)")):
        AutoscalePolicy.build(values)


def test_from_file_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "stack.yaml"
    yaml_file.write_text(
        "autoscale:\n  min_instances: 2\n  max_instances: 8\n  strategy: threshold\n"
    )
    policy = AutoscalePolicy.from_file(yaml_file)
    assert (policy.min_instances, policy.max_instances, policy.strategy) == (2, 8, "threshold")
    json_file = tmp_path / "policy.json"
    json_file.write_text('{"cooldown_seconds": 120}')
    assert AutoscalePolicy.from_file(json_file).cooldown_seconds == 120


def test_from_file_errors_name_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("min_instances: 9\nmax_instances: 4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: .*min_instances \(9\) must not exceed"):
        AutoscalePolicy.from_file(bad)
    with pytest.raises(ConfigError, match="cannot read policy file"):
        AutoscalePolicy.from_file(tmp_path / "absent.yaml")


def test_from_env_and_flow_overrides() -> None:
    env = {
        "KONGSTACK_AUTOSCALE_MIN_INSTANCES": "2",
        "KONGSTACK_AUTOSCALE_DRY_RUN": "true",
        "KONGSTACK_AUTOSCALE_TARGET_MEMORY_PERCENT": "",
        "UNRELATED": "x",
    }
    policy = AutoscalePolicy.from_env(env)
    assert policy.min_instances == 2 and policy.dry_run and policy.target_memory_percent is None
    # Flow parameters: None means "not given" and keeps the value.
    tuned = policy.with_overrides({"max_instances": 10, "cooldown_seconds": None})
    assert tuned.max_instances == 10 and tuned.cooldown_seconds == 300
    with pytest.raises(ConfigError, match="environment: bogus: Extra inputs"):
        AutoscalePolicy.from_env({"KONGSTACK_AUTOSCALE_BOGUS": "1"})
    with pytest.raises(
        ConfigError, match=r"parameters: min_instances \(2\) must not exceed max_instances \(1\)"
    ):
        policy.with_overrides({"max_instances": 1})


def test_policy_is_immutable() -> None:
    policy = AutoscalePolicy()
    with pytest.raises(ValueError):
        setattr(policy, "min_instances", 5)  # noqa: B010 (frozen model: must raise)

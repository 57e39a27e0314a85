"""The autoscale policy read at the edge: a file, then KONGSTACK_AUTOSCALE_<FIELD> variables;
errors are ConfigError naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from kongstack.core.errors import ConfigError
from tasks.tick.config import policy_from_env, policy_from_file


def test_from_file_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "stack.yaml"
    yaml_file.write_text(
        "autoscale:\n  min_instances: 2\n  max_instances: 8\n  strategy: threshold\n"
    )
    policy = policy_from_file(yaml_file)
    assert (policy.min_instances, policy.max_instances, policy.strategy) == (2, 8, "threshold")
    json_file = tmp_path / "policy.json"
    json_file.write_text('{"cooldown_seconds": 120}')
    assert policy_from_file(json_file).cooldown_seconds == 120


def test_from_file_errors_name_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("min_instances: 9\nmax_instances: 4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: .*min_instances \(9\) must not exceed"):
        policy_from_file(bad)
    with pytest.raises(ConfigError, match="cannot read policy file"):
        policy_from_file(tmp_path / "absent.yaml")


def test_from_env() -> None:
    env = {
        "KONGSTACK_AUTOSCALE_MIN_INSTANCES": "2",
        "KONGSTACK_AUTOSCALE_DRY_RUN": "true",
        "KONGSTACK_AUTOSCALE_TARGET_MEMORY_PERCENT": "",
        "UNRELATED": "x",
    }
    policy = policy_from_env(env)
    assert policy.min_instances == 2 and policy.dry_run and policy.target_memory_percent is None
    with pytest.raises(ConfigError, match="environment: bogus: Extra inputs"):
        policy_from_env({"KONGSTACK_AUTOSCALE_BOGUS": "1"})

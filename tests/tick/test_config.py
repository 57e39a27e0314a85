"""The one loader of the autoscale configuration: file -> environment -> parameters, with
where each policy value came from; errors are ConfigError naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler import AutoscalePolicy
from kongstack.core.errors import ConfigError
from tasks.tick.config import (
    CONFIG_FILE_ENV,
    DEFAULT_CONFIG_FILE,
    AutoscaleConfig,
    config_file,
    given_config,
    load_autoscale_config,
)


def write(tmp_path: Path, text: str, name: str = "autoscale.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_layers_file_then_environment_then_parameters(tmp_path: Path) -> None:
    path = write(tmp_path, "policy:\n  min_instances: 2\n  max_instances: 8\n"
                 "  target_rps_per_instance: 50\npool:\n  driver: process\n")
    env = {
        "KONGSTACK_AUTOSCALE_MAX_INSTANCES": "5",
        "KONGSTACK_AUTOSCALE_TARGET_MEMORY_PERCENT": "",  # empty: switched off
        "UNRELATED": "x",
    }
    loaded = load_autoscale_config(file=path, environ=env,
                                   parameters={"dry_run": True, "strategy": None})
    policy = loaded.policy
    assert (policy.min_instances, policy.max_instances) == (2, 5)
    assert policy.target_rps_per_instance == 50 and policy.target_memory_percent is None
    assert policy.dry_run and policy.strategy == "proportional"
    assert loaded.config.pool.driver == "process" and loaded.file == path
    assert {f: loaded.origin(f) for f in ("min_instances", "max_instances",
                                          "target_rps_per_instance", "target_memory_percent",
                                          "dry_run", "strategy")} == {
        "min_instances": "file", "max_instances": "environment",
        "target_rps_per_instance": "file", "target_memory_percent": "environment",
        "dry_run": "parameter", "strategy": "default"}
    rows = loaded.provenance()
    assert [r[0] for r in rows] == list(AutoscalePolicy.model_fields)
    assert ("max_instances", 5, "environment") in rows


def test_the_file_comes_from_one_variable(tmp_path: Path) -> None:
    assert config_file({}) == DEFAULT_CONFIG_FILE
    assert config_file({CONFIG_FILE_ENV: ""}) is None  # set empty: no file, the defaults
    path = write(tmp_path, "policy: {min_instances: 1, max_instances: 2}\n")
    assert config_file({CONFIG_FILE_ENV: str(path)}) == path
    loaded = load_autoscale_config(environ={CONFIG_FILE_ENV: str(path)})
    assert loaded.policy.max_instances == 2 and loaded.origin("max_instances") == "file"
    empty = load_autoscale_config(environ={CONFIG_FILE_ENV: ""})
    assert empty.file is None and empty.policy == AutoscalePolicy()
    assert set(empty.origins.values()) == {"default"}


def test_the_shipped_file_is_the_default_and_loads() -> None:
    loaded = load_autoscale_config(environ={})
    assert loaded.file == DEFAULT_CONFIG_FILE
    # deployments/autoscale.yaml sets no rate target: the demo learns capacity, as shipped.
    assert loaded.policy.target_rps_per_instance is None
    assert loaded.origin("target_rps_per_instance") == "default"
    assert loaded.origin("strategy") == "file"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("policy: {min_instances: 9, max_instances: 4}\n",
         r"bad.yaml: policy: min_instances \(9\) must not exceed max_instances \(4\)"),
        ("policy: {max_instance: 4}\n", r"bad.yaml: policy: max_instance: Extra inputs"),
        ("pool: {drivr: process}\n", r"bad.yaml: pool.drivr: Extra inputs"),
        ("min_instances: 2\n", r"bad.yaml: min_instances: policy fields belong under 'policy:'"),
        ("policy: [1, 2]\n", r"bad.yaml: policy: expected a mapping"),
        ("- just\n- a list\n", r"bad.yaml: autoscale config must be a mapping"),
        ("policy: {min_instances: [\n", r"bad.yaml: autoscale config is not valid YAML"),
        # issue 16: configs that cannot hurt
        ("policy: {max_instances: 1000000000}\n",
         r"bad.yaml: policy: max_instances: Input should be less than or equal to 1000\b"),
        ("policy: {cooldown_seconds: .inf}\n",
         r"bad.yaml: autoscale config: policy.cooldown_seconds: numbers must be finite"),
        ("policy: {cooldown_seconds: 1.0e9}\n",
         r"bad.yaml: policy: cooldown_seconds: Input should be less than or equal to 86400"),
        ("policy: {scale_up_rps: 1.0e12}\n",
         r"bad.yaml: policy: scale_up_rps: Input should be less than or equal to 1000000"),
        ("lock_path: /etc/passwd\n", r"bad.yaml: lock_path: /etc/passwd is outside the stack's "
                                       "home"),
        ("", r"bad.yaml: autoscale config is empty"),
        ("policy: {min_instances: 2}\npolicy: {min_instances: 3}\n",
         r"bad.yaml: autoscale config refused: duplicate key 'policy'"),
    ],
)
def test_file_errors_name_the_file_and_the_field(tmp_path: Path, text: str,
                                                 message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_autoscale_config(file=write(tmp_path, text, "bad.yaml"), environ={})


def test_a_directory_or_utf16_as_the_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="autoscale config is a directory"):
        load_autoscale_config(file=tmp_path, environ={})
    utf16 = tmp_path / "utf16.yaml"
    utf16.write_bytes("policy: {min_instances: 2}\n".encode("utf-16"))
    with pytest.raises(ConfigError, match="utf16.yaml: autoscale config is not UTF-8"):
        load_autoscale_config(file=utf16, environ={})


def test_a_lock_inside_the_home_is_accepted(tmp_path: Path) -> None:
    text = f"pool: {{local: {{home: {tmp_path}}}}}\nlock_path: {tmp_path}/run/tick.lock\n"
    loaded = load_autoscale_config(file=write(tmp_path, text, "ok.yaml"), environ={})
    assert loaded.config.lock_file() == tmp_path / "run" / "tick.lock"


def test_missing_file_environment_and_parameter_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="absent.yaml: autoscale config not found"):
        load_autoscale_config(file=tmp_path / "absent.yaml", environ={})
    with pytest.raises(ConfigError, match="environment: bogus: Extra inputs"):
        load_autoscale_config(environ={"KONGSTACK_AUTOSCALE_BOGUS": "1"})
    with pytest.raises(ConfigError, match=r"parameters: min_instances \(3\) must not exceed"):
        load_autoscale_config(environ={CONFIG_FILE_ENV: ""}, parameters={"max_instances": 1})


def test_a_whole_config_given_as_a_parameter() -> None:
    config = AutoscaleConfig(policy=AutoscalePolicy(min_instances=1, max_instances=4))
    loaded = given_config(config, {"dry_run": True, "max_instances": None})
    assert loaded.file is None and loaded.policy.dry_run and loaded.policy.max_instances == 4
    assert loaded.origin("min_instances") == "parameter"
    assert loaded.origin("dry_run") == "parameter" and loaded.origin("tolerance") == "default"

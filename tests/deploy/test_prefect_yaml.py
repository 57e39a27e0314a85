"""prefect.yaml lists the four deployments, each pointing at a flow that accepts its parameters."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]


def deployments() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    PrefectYamlModel.model_validate(data)  # the schema `prefect deploy` uses
    return {d["name"]: d for d in data["deployments"]}


def test_all_four_deployments_on_a_process_pool() -> None:
    found = deployments()
    assert sorted(found) == ["autoscale", "cleanup", "deploy-stack", "maintenance"]
    assert {d["work_pool"]["name"] for d in found.values()} == {"local-process"}


@pytest.mark.parametrize("name", ["deploy-stack", "autoscale", "maintenance", "cleanup"])
def test_entrypoint_loads_the_named_flow_with_valid_parameters(name: str) -> None:
    deployment = deployments()[name]
    flow: Any = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
    assert flow.name == name
    accepted = set(inspect.signature(flow.fn).parameters)
    assert set(deployment.get("parameters", {})) <= accepted


def test_schedules_and_concurrency() -> None:
    found = deployments()
    assert found["autoscale"]["schedules"] == [{"interval": 30, "active": True}]
    assert found["autoscale"]["concurrency_limit"] == {"limit": 1,
                                                       "collision_strategy": "CANCEL_NEW"}
    (daily,) = found["maintenance"]["schedules"]
    assert daily["cron"].split()[2:] == ["*", "*", "*"]  # once a day
    assert "schedules" not in found["deploy-stack"] and "schedules" not in found["cleanup"]

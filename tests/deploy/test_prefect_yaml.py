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


def _served(spec_name: str) -> dict[str, Any]:
    """What serve registers for one deployment, in prefect.yaml's terms."""
    from kongstack.cli.serve import build_deployments

    (d,) = [d for d in build_deployments() if d.name == spec_name]
    served: dict[str, Any] = {
        "name": d.name, "version": d.version, "description": d.description, "tags": d.tags,
        "entrypoint": d.entrypoint, "parameters": d.parameters}
    schedules = []
    for s in d.schedules:
        sched = s.schedule
        entry: dict[str, Any] = {"active": s.active}
        if hasattr(sched, "cron"):
            entry |= {"cron": sched.cron, "timezone": sched.timezone}
        else:
            entry["interval"] = sched.interval.total_seconds()
        schedules.append(entry)
    if schedules:
        served["schedules"] = schedules
    if d.concurrency_limit is not None:
        served["concurrency_limit"] = {
            "limit": d.concurrency_limit,
            "collision_strategy": d.concurrency_options.collision_strategy.value}
    if d.triggers:
        served["triggers"] = [
            {"type": t.type, "enabled": t.enabled, "match": t.match.model_dump(),
             "expect": sorted(t.expect), "posture": t.posture.value,
             "threshold": t.threshold, "within": t.within.total_seconds(),
             "parameters": t.parameters} for t in d.triggers]
    return served


@pytest.mark.parametrize("name", ["deploy-stack", "autoscale", "maintenance", "cleanup"])
def test_serve_registers_what_prefect_yaml_says(name: str) -> None:
    """`kongstack up` (serve) and `prefect deploy` register the same deployment: every field
    prefect.yaml sets (but the work pool, which serve does not use) comes out of serve."""
    spec = {k: v for k, v in deployments()[name].items() if k != "work_pool"}
    if "description" in spec:
        spec["description"] = spec["description"].strip()
    assert _served(name) == spec


def test_the_maintenance_schedule_names_its_timezone() -> None:
    (daily,) = deployments()["maintenance"]["schedules"]
    assert daily["timezone"] == "UTC"
    assert _served("maintenance")["schedules"] == [
        {"cron": daily["cron"], "timezone": "UTC", "active": True}]


def test_the_fast_path_trigger_is_the_one_prefect_yaml_declares() -> None:
    from kongstack.cli.fastpath import fastpath_trigger

    (trigger,) = deployments()["autoscale"]["triggers"]
    assert trigger == fastpath_trigger()


def test_serve_takes_scheduled_runs_shortly_before_their_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A run the runner has taken is Pending and holds the autoscale deployment's concurrency
    slot until its time, refusing the alert fast path: serve takes runs 3 s ahead, not
    Prefect's 10 s (a third of every 30 s tick)."""
    import prefect

    from kongstack.cli import serve as serve_module

    seen: dict[str, Any] = {}
    monkeypatch.setattr(prefect, "serve", lambda *deployments, **kwargs: seen.update(
        kwargs, count=len(deployments)))
    serve_module.main()
    assert seen["prefetch_seconds"] == serve_module.RUNNER_PREFETCH_SECONDS == 3.0
    assert seen["pause_on_shutdown"] is False and seen["count"] >= 3

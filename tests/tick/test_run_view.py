"""What the Prefect UI shows of an autoscale tick: a run name that says what it did, and the
instance and gateway steps (project loggers) in the run's logs."""

from __future__ import annotations

import asyncio
from typing import Any

from kongstack.core.procs import wait_until
from tests.support.autoscale_stack import Stack


async def _run_and_logs(name: str) -> tuple[Any, list[str]]:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
        if not runs:
            return None, []
        logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(
            any_=[runs[0].id])))
        return runs[0], [entry.message for entry in logs]


def test_a_tick_is_named_by_what_it_did_and_logs_its_instance_and_gateway_steps(
        process_stack: Stack) -> None:
    trigger = f"schedule-{process_stack.config.pool.stack}"  # unique among the session's runs
    result = process_stack.tick(trigger=trigger)
    assert (result["current"], result["after"]) == (0, 2), result
    name = f"autoscale-{trigger}-0to2"
    found: dict[str, Any] = {}

    def logged() -> bool:
        run, messages = asyncio.run(_run_and_logs(name))
        found.update(run=run, messages=messages)
        started = [m for m in messages if m.startswith("started process")]
        added = [m for m in messages if "added (weight 100)" in m]
        return run is not None and len(started) == 2 and len(added) == 2

    wait_until(logged, timeout=30, what=f"flow run {name} with instance and gateway lines")
    assert found["run"].state.is_completed()
    messages = found["messages"]
    assert len([m for m in messages if m.startswith("started process")]) == 2, messages
    assert len([m for m in messages if "added (weight 100)" in m]) == 2, messages

"""Flow ``cleanup``: plan → approve → remove → verify.

The plan lists exactly what carries the stack's owner label/tag. The run then pauses for a
typed approval (Prefect UI form, or ``kongstack approve|deny``). Approved: exactly the listed
items are removed, and a re-read verifies they are gone. Denied or timed out: nothing is
removed. ``dry_run`` stops after the plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_client, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.states import Running

from tasks.cleanup.approval import Approval
from tasks.cleanup.steps import (
    CleanupConfig,
    CleanupPlan,
    RemovalReport,
    plan_cleanup,
    pool_config,
    remove_planned,
    verify_removed,
)


@task(name="plan-cleanup", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def plan_task(config: CleanupConfig) -> CleanupPlan:
    return plan_cleanup(config)


@task(name="remove-planned", cache_policy=NO_CACHE)
def remove_task(config: CleanupConfig, plan: CleanupPlan) -> RemovalReport:
    return remove_planned(config, plan)


@task(name="verify-removed", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 5])
def verify_task(config: CleanupConfig, plan: CleanupPlan) -> list[str]:
    return verify_removed(config, plan)


def _close_timed_out_pause(message: str) -> None:
    """A pause that timed out leaves the run Paused, and the server then refuses to complete
    it ("never resumed"). Mark it running again so the flow can finish and report."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(context.flow_run.id, Running(message=message), force=True)


def _result(status: str, plan: CleanupPlan, **extra: Any) -> dict[str, Any]:
    create_markdown_artifact(
        f"{plan.markdown()}\n\n**Outcome:** {status}\n\n"
        + "\n".join(f"- {k}: {v}" for k, v in extra.items()),
        key="cleanup-outcome", description=f"cleanup {status}",
    )
    return {"status": status, "planned": [i.description for i in plan.items], **extra}


@flow(name="cleanup", description="Remove everything the stack owns, after approval.")
def cleanup(
    stack: str = "kongstack",
    dry_run: bool = False,
    driver: str = "auto",
    gateway: str = "auto",
    include_data: bool = True,
    include_volumes: bool = True,
    topology_file: str | None = None,
    approval_timeout_seconds: int = 3600,
    poll_interval_seconds: int = 10,
    local: dict[str, Any] | None = None,
    redis_url: str | None = None,
    data_dir: str | None = None,
    gateway_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    log = get_run_logger()
    config = CleanupConfig(
        pool=pool_config(stack, driver=driver, gateway=gateway, local=local,
                         redis_url=redis_url, data_dir=Path(data_dir) if data_dir else None,
                         gateway_options=gateway_options),
        include_data=include_data, include_volumes=include_volumes,
        topology_file=Path(topology_file) if topology_file else None,
    )
    plan = plan_task(config)
    create_markdown_artifact(plan.markdown(), key="cleanup-plan",
                             description=f"cleanup plan: {len(plan.items)} item(s)")
    log.info("cleanup plan: %d item(s)\n%s", len(plan.items), plan.markdown())
    if dry_run:
        return _result("dry_run", plan)
    if not plan.items:
        return _result("nothing_to_remove", plan)

    form = Approval.with_initial_data(description=plan.markdown(), approved=False)
    try:
        decision = pause_flow_run(wait_for_input=form, timeout=approval_timeout_seconds,
                                  poll_interval=poll_interval_seconds)
    except FlowPauseTimeout:
        message = f"approval timed out after {approval_timeout_seconds}s: nothing removed"
        log.warning(message)
        _close_timed_out_pause(message)
        return _result("timed_out", plan)
    who = {"approver": decision.approver, "reason": decision.reason}
    if not decision.approved:
        log.info("denied by %s (%s): nothing removed", decision.approver, decision.reason)
        return _result("denied", plan, **who)

    log.info("approved by %s (%s): removing %d item(s)", decision.approver, decision.reason,
             len(plan.items))
    report = remove_task(config, plan)
    remaining = verify_task(config, plan)
    status = "removed" if report.ok and not remaining else "incomplete"
    return _result(status, plan, removed=report.removed, failed=report.failed,
                   refused=report.refused, still_present=remaining, **who)

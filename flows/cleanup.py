"""Flow ``cleanup``: plan → approve → remove → verify.

The plan lists exactly what carries the stack's owner label/tag. The run then pauses for a
typed approval (Prefect UI form, or ``kongstack approve|deny``). Approved: exactly the listed
items are removed, and a re-read verifies they are gone. Denied or timed out: nothing is
removed. ``dry_run`` stops after the plan. The steps live in tasks/cleanup/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tasks.cleanup.approval import wait_for_approval
from tasks.cleanup.notify import ApprovalNotice
from tasks.cleanup.steps import (
    CleanupConfig,
    outcome,
    plan_task,
    pool_config,
    remove_task,
    verify_task,
)
from tasks.runlog import forward_project_logs, run_ui_url


@flow(name="cleanup", description="Remove everything the stack owns, after approval.",
      flow_run_name="cleanup-{stack}")
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
    alertmanager_url: str | None = None,
) -> dict[str, Any]:
    """``alertmanager_url``: where to send the "waiting for approval" alert (with this run's
    UI link) for the operators' receiver; None sends none (the deployments set it)."""
    forward_project_logs()
    log = get_run_logger()
    config = CleanupConfig(
        pool=pool_config(stack, driver=driver, gateway=gateway, local=local,
                         redis_url=redis_url, data_dir=Path(data_dir) if data_dir else None,
                         gateway_options=gateway_options),
        include_data=include_data, include_volumes=include_volumes,
        topology_file=Path(topology_file) if topology_file else None,
    )
    plan = plan_task(config)
    log.info("cleanup plan: %d item(s)\n%s", len(plan.items), plan.markdown())
    if dry_run:
        return outcome("dry_run", plan)
    if not plan.items:
        return outcome("nothing_to_remove", plan)

    notice = ApprovalNotice(alertmanager_url, plan, run_name=flow_run.get_name() or "cleanup",
                            ui_url=run_ui_url(), timeout_seconds=approval_timeout_seconds)
    notice.send()
    try:
        decision = wait_for_approval(plan.markdown(), timeout_seconds=approval_timeout_seconds,
                                     poll_interval_seconds=poll_interval_seconds)
    finally:
        notice.resolve()
    if decision is None:
        log.warning("approval timed out after %ds: nothing removed", approval_timeout_seconds)
        return outcome("timed_out", plan)
    who = {"approver": decision.approver, "reason": decision.reason}
    if not decision.approved:
        log.info("denied by %s (%s): nothing removed", decision.approver, decision.reason)
        return outcome("denied", plan, **who)

    log.info("approved by %s (%s): removing %d item(s)", decision.approver, decision.reason,
             len(plan.items))
    report = remove_task(config, plan)
    remaining = verify_task(config, plan)
    status = "removed" if report.ok and not remaining else "incomplete"
    return outcome(status, plan, removed=report.removed, failed=report.failed,
                   refused=report.refused, still_present=remaining, **who)

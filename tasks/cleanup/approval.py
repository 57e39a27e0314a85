"""Manual approval of paused runs from a terminal (Prefect 3.9 has no ``flow-run resume`` CLI).

The cleanup flow pauses with an ``Approval`` form; the Prefect UI's Resume button renders it,
and ``kongstack approve|deny`` calls :func:`answer` which resumes the run with the same input
through ``prefect.flow_runs.resume_flow_run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from prefect import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.states import Running
from pydantic import Field

from kongstack.core.errors import StackError

CLEANUP_FLOW = "cleanup"


class Approval(RunInput):
    """The form the approver fills in (UI or ``kongstack approve/deny``)."""

    approved: bool = Field(default=False, description="remove exactly the listed items?")
    approver: str = Field(default="", max_length=100, description="who decided")
    reason: str = Field(default="", max_length=500, description="why")


class ApprovalError(StackError):
    """The run cannot be approved or denied (not found, not paused, ambiguous)."""


@dataclass(frozen=True)
class WaitingRun:
    id: UUID
    name: str
    paused_at: datetime | None
    timeout_at: datetime | None


def waiting_runs(flow_name: str = CLEANUP_FLOW) -> list[WaitingRun]:
    """Paused runs of ``flow_name``, newest first."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
            sort=FlowRunSort.START_TIME_DESC,
            limit=50,
        )
    return [
        WaitingRun(
            id=r.id, name=r.name,
            paused_at=r.state.timestamp if r.state else None,
            timeout_at=r.state.state_details.pause_timeout if r.state else None,
        )
        for r in runs
    ]


def resolve_run(run_id: str | None, latest: bool, flow_name: str = CLEANUP_FLOW) -> UUID:
    """The run to answer: an explicit id, or the newest waiting run with ``latest``."""
    if run_id and latest:
        raise ApprovalError("give a RUN_ID or --latest, not both")
    if run_id:
        try:
            return UUID(run_id)
        except ValueError:
            raise ApprovalError(f"RUN_ID: {run_id!r} is not a flow run id (a UUID)") from None
    if not latest:
        raise ApprovalError("give a RUN_ID or --latest")
    runs = waiting_runs(flow_name)
    if not runs:
        raise ApprovalError(f"no {flow_name} run is waiting for approval")
    return runs[0].id


def answer(run_id: UUID, *, approved: bool, approver: str, reason: str = "") -> Approval:
    """Resume ``run_id`` with the decision; raises ApprovalError naming the problem."""
    from prefect.exceptions import FlowPauseTimeout, ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    if not approver.strip():
        raise ApprovalError("--approver: say who decides (a name or e-mail)")
    decision = Approval(approved=approved, approver=approver.strip(), reason=reason)
    try:
        resume_flow_run(run_id, run_input=decision.model_dump())
    except ObjectNotFound:
        raise ApprovalError(f"flow run {run_id} not found") from None
    except FlowPauseTimeout:
        raise ApprovalError(f"flow run {run_id}: the approval window has closed") from None
    except Exception as exc:  # NotPausedError and server rejections carry a useful message
        if type(exc).__name__ == "NotPausedError":
            raise ApprovalError(f"flow run {run_id} is not waiting for approval") from None
        raise ApprovalError(f"flow run {run_id}: cannot resume ({exc})") from None
    return decision


def wait_for_approval(description: str, *, timeout_seconds: int,
                      poll_interval_seconds: int) -> Approval | None:
    """Pause the running flow with the ``Approval`` form showing ``description``; the
    approver's answer, or None when nobody answered in time."""
    form = Approval.with_initial_data(description=description, approved=False)
    try:
        return pause_flow_run(wait_for_input=form, timeout=timeout_seconds,
                              poll_interval=poll_interval_seconds)
    except FlowPauseTimeout:
        _close_timed_out_pause(f"approval timed out after {timeout_seconds}s: nothing removed")
        return None


def _close_timed_out_pause(message: str) -> None:
    """A pause that timed out leaves the run Paused, and the server then refuses to complete
    it ("never resumed"). Mark it running again so the flow can finish and report."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(context.flow_run.id, Running(message=message), force=True)

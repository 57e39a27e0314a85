"""Tell the operators that a cleanup run waits for approval: an alert sent to Alertmanager,
which routes it to the ``operators`` receiver (deployments/alertmanager/alertmanager.yml) like
any other alert, with the run's Prefect UI page as its link.

The alert lasts as long as the approval window (``endsAt``) and is resolved when the run is
answered, so a run nobody answered does not leave a stale notification behind. Sending is best
effort: an unreachable Alertmanager is logged and never blocks or fails the cleanup.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from tasks.cleanup.steps import CleanupPlan

APPROVAL_ALERT = "CleanupAwaitingApproval"
RUNBOOK_URL = "docs/runbook.md#cleanupawaitingapproval"
SHOWN_ITEMS = 20  # the alert names the first items; the UI form shows the whole plan

log = logging.getLogger(__name__)


def approval_alert(plan: CleanupPlan, *, run_name: str, ui_url: str | None,
                   starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
    """One alert in Alertmanager's API v2 format (``POST /api/v2/alerts`` takes a list)."""
    items = [f"- {i.kind}: {i.description}" for i in plan.items[:SHOWN_ITEMS]]
    if len(plan.items) > SHOWN_ITEMS:
        items.append(f"- ... and {len(plan.items) - SHOWN_ITEMS} more (see the run)")
    where = f"Approve or deny it in the Prefect UI: {ui_url}" if ui_url else (
        "Approve or deny it with `kongstack approve|deny --latest --approver NAME`.")
    return {
        "labels": {"alertname": APPROVAL_ALERT, "severity": "warning", "stack": plan.stack,
                   "flow_run": run_name},
        "annotations": {
            "summary": f"cleanup of stack {plan.stack} waits for approval "
                       f"({len(plan.items)} item(s) to remove)",
            "description": "\n".join([f"Flow run {run_name} removes exactly:", *items, where]),
            "runbook_url": RUNBOOK_URL,
        },
        "generatorURL": ui_url or "",
        "startsAt": starts_at.isoformat(),
        "endsAt": ends_at.isoformat(),
    }


def post_alerts(alertmanager_url: str, alerts: list[dict[str, Any]],
                timeout: float = 5.0) -> None:
    """``POST /api/v2/alerts``; connection faults retried with backoff, then raised."""
    url = f"{alertmanager_url.rstrip('/')}/api/v2/alerts"
    for attempt in Retrying(retry=retry_if_exception_type(httpx.TransportError),
                            wait=wait_exponential(multiplier=0.2, max=2.0),
                            stop=stop_after_attempt(3), reraise=True):
        with attempt:
            httpx.post(url, json=alerts, timeout=timeout).raise_for_status()


class ApprovalNotice:
    """``notice.send()`` when the run pauses, ``notice.resolve()`` once it is answered."""

    def __init__(self, alertmanager_url: str | None, plan: CleanupPlan, *, run_name: str,
                 ui_url: str | None, timeout_seconds: float) -> None:
        self.url = alertmanager_url
        starts = datetime.now(UTC)
        self.alert = approval_alert(plan, run_name=run_name, ui_url=ui_url, starts_at=starts,
                                    ends_at=starts + timedelta(seconds=timeout_seconds))
        self.delivered = False

    def send(self) -> bool:
        if not self.url:
            return False
        try:
            post_alerts(self.url, [self.alert])
        except httpx.HTTPError as exc:
            log.warning("approval notification not sent to %s: %s", self.url, exc)
            return False
        self.delivered = True
        log.info("approval requested from the operators (Alertmanager %s): %s", self.url,
                 self.alert["generatorURL"] or "no UI link")
        return True

    def resolve(self) -> bool:
        if not (self.url and self.delivered):
            return False
        ended = {**self.alert, "endsAt": datetime.now(UTC).isoformat()}
        try:
            post_alerts(self.url, [ended])
        except httpx.HTTPError as exc:  # it ends by itself at the window's end
            log.warning("approval notification not resolved at %s: %s", self.url, exc)
            return False
        return True

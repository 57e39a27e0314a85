"""The "cleanup waits for approval" notification: an alert through a real Alertmanager to the
operators' webhook receiver, carrying the run's UI link; resolved once the run is answered."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from kongstack.core.procs import Daemon, free_port, http_ok
from tasks.cleanup.notify import APPROVAL_ALERT, SHOWN_ITEMS, ApprovalNotice, approval_alert
from tasks.cleanup.steps import CleanupPlan, PlanItem
from tests.monitoring.helpers import WebhookInbox, webhook_server

ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
UI_LINK = "http://127.0.0.1:4200/runs/flow-run/0f0e0d0c-0000-4000-8000-000000000001"


def _plan(items: int) -> CleanupPlan:
    return CleanupPlan("shop", [PlanItem("instance", f"id{n}", f"instance api-{n} at "
                                         f"127.0.0.1:{18000 + n}") for n in range(items)])


def test_the_alert_names_the_stack_the_items_and_links_the_run() -> None:
    now = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)
    alert = approval_alert(_plan(3), run_name="cleanup-shop", ui_url=UI_LINK, starts_at=now,
                           ends_at=now + timedelta(hours=1))
    assert alert["labels"] == {"alertname": APPROVAL_ALERT, "severity": "warning",
                               "stack": "shop", "flow_run": "cleanup-shop"}
    notes = alert["annotations"]
    assert set(notes) == {"summary", "description", "runbook_url"}
    assert "3 item(s)" in notes["summary"] and UI_LINK in notes["description"]
    assert all(f"127.0.0.1:{18000 + n}" in notes["description"] for n in range(3))
    assert alert["generatorURL"] == UI_LINK
    assert alert["endsAt"] == "2026-12-07T18:00:00+00:00"


def test_a_long_plan_is_cut_in_the_alert_and_says_how_many_more() -> None:
    now = datetime.now(UTC)
    alert = approval_alert(_plan(SHOWN_ITEMS + 5), run_name="r", ui_url=None, starts_at=now,
                           ends_at=now)
    text = alert["annotations"]["description"]
    assert "and 5 more" in text and f"api-{SHOWN_ITEMS}" not in text
    assert "kongstack approve|deny" in text and alert["generatorURL"] == ""


@pytest.fixture(scope="module")
def inbox() -> Iterator[WebhookInbox]:
    with webhook_server() as received:
        yield received


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory, inbox: WebhookInbox) -> Iterator[str]:
    if not ALERTMANAGER.exists():
        pytest.skip("prometheus-alertmanager is not installed (run scripts/setup)")
    home = tmp_path_factory.mktemp("alertmanager")
    config = {
        "route": {"receiver": "operators", "group_by": ["alertname", "stack"],
                  "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "operators",
                       "webhook_configs": [{"url": inbox.url, "send_resolved": True}]}],
    }
    (home / "alertmanager.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    daemon = Daemon("alertmanager", home)
    daemon.start([str(ALERTMANAGER), f"--config.file={home / 'alertmanager.yml'}",
                  f"--storage.path={home / 'data'}", f"--web.listen-address={url[7:]}",
                  "--cluster.listen-address="],
                 ready=lambda: http_ok(f"{url}/-/ready", timeout=2.0),
                 log_file=home / "alertmanager.log", timeout=60)
    try:
        yield url
    finally:
        daemon.stop(grace=5.0)


def _approval(status: str, stack: str) -> Any:
    def match(payload: dict[str, Any]) -> bool:
        return any(a["labels"].get("alertname") == APPROVAL_ALERT
                   and a["labels"].get("stack") == stack and a["status"] == status
                   for a in payload["alerts"])
    return match


def test_the_operators_receiver_gets_the_run_link_then_the_resolution(
        alertmanager: str, inbox: WebhookInbox) -> None:
    plan = CleanupPlan("orders", _plan(2).items)
    notice = ApprovalNotice(alertmanager, plan, run_name="cleanup-orders", ui_url=UI_LINK,
                            timeout_seconds=600)
    assert notice.send()
    firing = inbox.wait_for(_approval("firing", "orders"), timeout=30)
    alert = next(a for a in firing["alerts"] if a["labels"]["stack"] == "orders")
    assert alert["generatorURL"] == UI_LINK
    assert "waits for approval (2 item(s)" in alert["annotations"]["summary"]
    assert notice.resolve()
    inbox.wait_for(_approval("resolved", "orders"), timeout=30)


def test_an_unreachable_alertmanager_never_stops_the_cleanup() -> None:
    notice = ApprovalNotice(f"http://127.0.0.1:{free_port()}", _plan(1), run_name="r",
                            ui_url=None, timeout_seconds=60)
    assert notice.send() is False and notice.resolve() is False
    assert ApprovalNotice(None, _plan(1), run_name="r", ui_url=None,
                          timeout_seconds=60).send() is False

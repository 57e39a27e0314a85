"""The fast path: an Alertmanager webhook becomes a Prefect event, and the automation turns
that event into a run of the autoscale deployment (real Prefect server)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kongstack.cli.fastpath import (
    ALERT_EVENT,
    WebhookServer,
    ensure_fastpath_automation,
    fastpath_trigger,
    firing_payload,
    prefect_emitter,
)
from kongstack.core.procs import free_port


def alertmanager_body(*statuses: str) -> dict[str, Any]:
    """The shape Alertmanager 0.25 POSTs (webhook version 4)."""
    return {
        "version": "4", "groupKey": '{}/{autoscale="true"}:{alertname="HighRequestRate"}',
        "status": "firing", "receiver": "autoscale-fastpath",
        "groupLabels": {"alertname": "HighRequestRate"},
        "commonLabels": {"autoscale": "true"}, "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:19093", "truncatedAlerts": 0,
        "alerts": [{"status": s, "labels": {"alertname": f"A{i}", "autoscale": "true"},
                    "annotations": {}, "startsAt": "2026-03-01T12:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": str(i)}
                   for i, s in enumerate(statuses)],
    }


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    emitted: list[dict[str, Any]] = []
    server = WebhookServer("127.0.0.1", free_port(), emitted.append)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", emitted
    server.shutdown()
    server.server_close()


def test_firing_alerts_give_one_event_resolved_give_none(
    webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, emitted = webhook
    r = httpx.post(f"{url}/alerts", json=alertmanager_body("firing", "firing", "resolved"))
    assert r.status_code == 200 and r.json() == {"emitted": 1}
    assert emitted == [{"alerts": ["A0", "A1"], "count": 2, "group_key": emitted[0]["group_key"],
                        "starts_at": "2026-03-01T12:00:00Z"}]
    r = httpx.post(f"{url}/alerts", json=alertmanager_body("resolved"))
    assert r.json() == {"emitted": 0} and len(emitted) == 1


def test_malformed_posts_are_rejected(webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, emitted = webhook
    assert httpx.post(f"{url}/alerts", content=b"not json").status_code == 400
    assert httpx.post(f"{url}/alerts", json={"alerts": "x"}).status_code == 400
    assert httpx.post(f"{url}/elsewhere", json=alertmanager_body("firing")).status_code == 404
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert emitted == []


def test_payload_parsing_is_strict_about_shape() -> None:
    assert firing_payload(alertmanager_body()) is None
    with pytest.raises(ValueError, match="alerts"):
        firing_payload({"version": "4"})


def test_deployment_trigger_matches_the_emitted_event() -> None:
    trigger = fastpath_trigger("demo")
    assert trigger["expect"] == [ALERT_EVENT]
    assert trigger["match"] == {"prefect.resource.id": "kongstack.alertmanager.demo"}
    assert trigger["parameters"] == {"trigger": "alert"}


@pytest.mark.usefixtures("prefect_harness")
def test_alert_webhook_runs_the_autoscale_deployment() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    stack = f"fp-{uuid.uuid4().hex[:6]}"
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("autoscale")
        deployment_id = client.create_deployment(flow_id=flow_id, name=stack)
    ensure_fastpath_automation(deployment_id, stack)
    server = WebhookServer("127.0.0.1", free_port(), prefect_emitter(stack))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # The automation is loaded by the server's trigger service shortly after creation:
        # post until a run appears (each post is a real alert delivery, as Alertmanager
        # repeats a firing group).
        deadline = time.monotonic() + 60
        runs: list[Any] = []
        while not runs and time.monotonic() < deadline:
            httpx.post(f"http://127.0.0.1:{server.server_address[1]}/alerts",
                       json=alertmanager_body("firing"))
            time.sleep(1.0)
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[deployment_id])))
        assert runs, "no autoscale run was created for the alert within 60 s"
        assert runs[0].parameters == {"trigger": "alert"}
    finally:
        server.shutdown()
        server.server_close()

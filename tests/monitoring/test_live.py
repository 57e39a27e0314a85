"""A real Prometheus on the generated config scrapes the local stack; a real Alertmanager
routes a firing alert to the webhook (the autoscale fast path's contract)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kongstack.core.procs import free_port
from tasks.monitoring import RecordedNames, write_stock_api_targets
from tasks.providers.local.monitoring import LocalMonitoring
from tests.monitoring.conftest import RATE_WINDOW, SCRAPE_INTERVAL_S
from tests.monitoring.helpers import ApiInstance, Prom, WebhookInbox, poll

# Prometheus's discovery manager hands new target groups to the scrape manager at most every
# 5 s (discovery.Manager updatert); the first scrape follows within one scrape interval.
N = RecordedNames(RATE_WINDOW)  # the recorded series of the test config's window
DISCOVERY_BATCH_S = 5.0


def _target(prom: Prom, address: str) -> dict[str, Any] | None:
    for target in prom.targets():
        if target["labels"].get("instance") == address:
            return target
    return None


def _scraped_up(prom: Prom, address: str) -> bool:
    target = _target(prom, address)
    return bool(target and target["health"] == "up")


def test_prometheus_scrapes_itself_and_the_exporters(prom: Prom) -> None:
    def jobs_up() -> set[str]:
        return {t["labels"]["job"] for t in prom.targets() if t["health"] == "up"}

    wanted = {"prometheus", "node", "redis"}
    assert wanted <= prom.poll(lambda: wanted <= jobs_up() and jobs_up(), 20, "exporters up")
    redis_up = prom.poll(lambda: prom.query('redis_up{job="redis"} == 1'), 10, "redis_up")
    assert redis_up[0]["value"][1] == "1"


def test_the_local_nginx_gateway_is_scraped_through_its_exporter(
    prom: Prom, nginx_status: str | None
) -> None:
    if nginx_status is None:
        pytest.skip("prometheus-nginx-exporter is not installed (Debian package of that name)")
    up = prom.poll(lambda: prom.query('nginx_up{job="nginx"} == 1'), 20, "nginx_up")
    assert up[0]["metric"]["job"] == "nginx"
    # stub_status counts every request, the exporter's own polls included: never idle.
    rate = prom.poll(lambda: prom.query(f"{N.nginx_request_rate} > 0"), 30,
                     "nginx request rate")
    assert rate[0]["metric"]["job"] == "nginx"


def test_alertmanager_is_discovered(prom: Prom, monitoring: LocalMonitoring) -> None:
    def active() -> list[dict[str, Any]]:
        data = prom.http.get("/api/v1/alertmanagers").json()["data"]
        return list(data["activeAlertmanagers"])

    found = prom.poll(active, 10, "active alertmanager")
    assert found[0]["url"].startswith(monitoring.alertmanager_url)


def test_new_instance_is_scraped_soon_after_the_file_changes(
    prom: Prom, monitoring: LocalMonitoring, api_instances: list[ApiInstance]
) -> None:
    first, second = api_instances
    targets_file = monitoring.files.stock_api_targets
    write_stock_api_targets(targets_file, [first.address], {"stack": "test"})
    prom.poll(lambda: _scraped_up(prom, first.address), 30, "first instance scraped")

    started = time.monotonic()
    assert write_stock_api_targets(targets_file, [first.address, second.address],
                                   {"stack": "test"})
    prom.poll(lambda: _scraped_up(prom, second.address), 30, "added instance scraped")
    pickup = time.monotonic() - started
    print(f"file_sd pickup: {pickup:.2f} s (scrape interval {SCRAPE_INTERVAL_S:g} s)")
    # Within one scrape interval of Prometheus learning about it (see DISCOVERY_BATCH_S).
    assert pickup <= DISCOVERY_BATCH_S + SCRAPE_INTERVAL_S + 3.0, pickup
    target = _target(prom, second.address)
    assert target is not None and target["labels"]["stack"] == "test"

    write_stock_api_targets(targets_file, [second.address], {"stack": "test"})
    prom.poll(lambda: _target(prom, first.address) is None, 30, "removed instance dropped")
    write_stock_api_targets(targets_file, [first.address, second.address], {"stack": "test"})


@pytest.fixture
def traffic(api_instances: list[ApiInstance]) -> Iterator[None]:
    """Steady, bounded load on every instance while a test runs (loopback only)."""
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=5.0) as client:
            sent = 0
            while not stop.is_set() and sent < 20_000:
                for instance in api_instances:
                    client.get(f"http://{instance.address}/api/stocks")
                    client.get(f"http://{instance.address}/api/stocks/NOPE")  # a 404
                    sent += 2
                stop.wait(0.01)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


def _values(result: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"].get("instance", r["metric"].get("job", "")): float(r["value"][1])
            for r in result}


def test_recording_rules_produce_the_autoscaler_inputs(
    prom: Prom, monitoring: LocalMonitoring, api_instances: list[ApiInstance], traffic: None
) -> None:
    addresses = sorted(i.address for i in api_instances)
    write_stock_api_targets(monitoring.files.stock_api_targets, addresses, {"stack": "test"})

    rate = prom.poll(lambda: prom.query(f'{N.request_rate}{{job="stock_api"}} > 1'),
                     40, "request rate")
    assert rate[0]["metric"]["job"] == "stock_api"
    p95 = prom.poll(lambda: prom.query(f'{N.latency_p95}{{job="stock_api"}} > 0'),
                    20, "p95 latency")
    assert 0 < float(p95[0]["value"][1]) < 10  # seconds
    errors = prom.poll(lambda: prom.query(f'{N.error_ratio}{{job="stock_api"}}'),
                       20, "error ratio")
    assert float(errors[0]["value"][1]) == 0.0  # 404s are client errors, not 5xx

    per_instance = prom.poll(
        lambda: len(r := prom.query(f"{N.instance_request_rate} > 0")) == 2 and r,
        20, "per-instance request rate")
    assert sorted(_values(per_instance)) == addresses
    pool = prom.poll(lambda: prom.query(f'{N.pool_size}{{job="stock_api"}} == 2'),
                     20, "pool size")
    assert float(pool[0]["value"][1]) == 2
    host_cpu = prom.poll(lambda: prom.query(N.host_cpu), 20, "host CPU")
    assert 0 <= float(host_cpu[0]["value"][1]) <= 1  # a ratio


def test_a_down_instance_fires_an_alert_that_reaches_the_webhook(
    prom: Prom, monitoring: LocalMonitoring, api_instances: list[ApiInstance],
    webhook: WebhookInbox,
) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    live = [i.address for i in api_instances]
    targets_file = monitoring.files.stock_api_targets
    write_stock_api_targets(targets_file, [*live, dead], {"stack": "test"})

    def is_down_alert(payload: dict[str, Any], status: str) -> bool:
        return payload["status"] == status and any(
            a["labels"].get("alertname") == "InstanceDown"
            and a["labels"].get("instance") == dead and a["status"] == status
            for a in payload["alerts"])

    started = time.monotonic()
    firing = webhook.wait_for(lambda p: is_down_alert(p, "firing"), timeout=60)
    print(f"instance down -> webhook (firing): {time.monotonic() - started:.2f} s")
    assert firing["receiver"] == "autoscale-fastpath"
    alert = next(a for a in firing["alerts"] if a["labels"]["instance"] == dead)
    assert alert["labels"]["autoscale"] == "true"
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["runbook_url"].endswith("#instancedown")
    assert dead in alert["annotations"]["description"]

    write_stock_api_targets(targets_file, live, {"stack": "test"})
    started = time.monotonic()
    webhook.wait_for(lambda p: is_down_alert(p, "resolved"), timeout=90)
    print(f"instance removed -> webhook (resolved): {time.monotonic() - started:.2f} s")


def test_an_instance_down_inhibits_its_latency_alert(monitoring: LocalMonitoring) -> None:
    am = httpx.Client(base_url=monitoring.alertmanager_url, timeout=10.0)
    sick, healthy = "127.0.0.1:1", "127.0.0.1:2"

    def alert(name: str, instance: str) -> dict[str, Any]:
        return {"labels": {"alertname": name, "instance": instance, "job": "stock_api",
                           "severity": "critical" if name == "InstanceDown" else "warning"}}

    response = am.post("/api/v2/alerts", json=[
        alert("InstanceDown", sick), alert("InstanceSlowResponses", sick),
        alert("InstanceSlowResponses", healthy),
    ])
    assert response.status_code == 200

    def states() -> dict[str, str] | None:
        listed = am.get("/api/v2/alerts",
                        params={"filter": "alertname=InstanceSlowResponses"}).json()
        found = {a["labels"]["instance"]: a["status"]["state"] for a in listed
                 if a["labels"]["instance"] in (sick, healthy)}
        return found if found.get(sick) == "suppressed" and healthy in found else None

    assert poll(states, 20, "inhibited latency alert") == {sick: "suppressed", healthy: "active"}

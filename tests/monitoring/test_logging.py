"""Request logs: the log store's client (against Elasticsearch's HTTP contract through
httpx.MockTransport, and against a real Elasticsearch when ELASTICSEARCH_URL is set) and the
VM-LOGS deployment files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kongstack.core.settings import REPO_ROOT
from tasks.monitoring.elasticsearch import ElasticsearchClient, LogStoreError, index_for
from tests.monitoring.helpers import ApiInstance, poll

LOGGING = REPO_ROOT / "deployments" / "logging"


class FakeElasticsearch:
    """Records requests and answers like Elasticsearch's bulk API (create: 201, or 409 seen)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[httpx.Request] = []
        self.ids: set[str] = set()
        self.fail_first = fail_first

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail_first > 0:
            self.fail_first -= 1
            return httpx.Response(503, json={"error": "unavailable"})
        if request.url.path == "/_bulk":
            lines = request.content.decode().splitlines()
            items = []
            for action in map(json.loads, lines[0::2]):
                doc_id = action["create"]["_id"]
                status = 409 if doc_id in self.ids else 201
                items.append({"create": {"_id": doc_id, "status": status}})
                self.ids.add(doc_id)
            return httpx.Response(200, json={"errors": False, "items": items})
        return httpx.Response(200, json={"acknowledged": True})

    def bulk_docs(self) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for request in self.requests:
            if request.url.path == "/_bulk":
                docs += [json.loads(line) for line in request.content.decode().splitlines()[1::2]]
        return docs


def _client(fake: FakeElasticsearch, url: str = "http://es.test:9201") -> ElasticsearchClient:
    return ElasticsearchClient(url, api_key="k3y", transport=httpx.MockTransport(fake))


def test_install_puts_policy_pipeline_and_template_from_the_deployment_files() -> None:
    fake = FakeElasticsearch()
    _client(fake).install()
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("PUT", "/_ilm/policy/kongstack-logs"), ("PUT", "/_ingest/pipeline/kongstack-logs"),
        ("PUT", "/_index_template/kongstack-logs")]
    assert json.loads(fake.requests[2].content) == json.loads(
        (LOGGING / "index-template.json").read_text())
    assert all(r.headers["Authorization"] == "ApiKey k3y" for r in fake.requests)


def test_shipping_twice_does_not_duplicate_lines() -> None:
    fake = FakeElasticsearch()
    records = [{"ts": "2026-11-26T07:00:00.000+00:00", "msg": "request", "status": 200,
                "correlation_id": f"c-{i}"} for i in range(3)]
    first = _client(fake).ship(records)
    again = _client(fake).ship(records)
    assert (first.created, first.already_present) == (3, 0)
    assert (again.created, again.already_present) == (0, 3)
    action = json.loads(fake.requests[0].content.decode().splitlines()[0])
    assert action["create"]["_index"] == "kongstack-logs-2026.11.26"


def test_transient_failures_are_retried_then_reported_without_credentials() -> None:
    fake = FakeElasticsearch(fail_first=2)
    assert _client(fake).ship([{"msg": "x"}]).created == 1
    dead = FakeElasticsearch(fail_first=100)
    with pytest.raises(LogStoreError) as failure:
        _client(dead, "http://elastic:s3cret@es.test:9201").install()
    assert "503" in str(failure.value) and "s3cret" not in str(failure.value)
    assert len(dead.requests) == 5


def test_from_env_needs_elasticsearch_url() -> None:
    assert ElasticsearchClient.from_env({}) is None
    client = ElasticsearchClient.from_env({"ELASTICSEARCH_URL": "http://u:p@es.test:9200"})
    assert client is not None and client.url == "http://es.test:9200"


def test_index_follows_the_record_day_in_utc() -> None:
    assert index_for({"ts": "2026-01-31T23:30:00-02:00"}) == "kongstack-logs-2026.02.01"


def test_a_real_stock_api_log_file_ships_with_its_correlation_id(
    api_instances: list[ApiInstance],
) -> None:
    instance = api_instances[0]
    correlation_id = f"mon-{uuid.uuid4().hex[:12]}"
    response = httpx.get(f"http://{instance.address}/api/stocks/NOPE",
                         headers={"X-Correlation-ID": correlation_id}, timeout=5.0)
    assert response.headers["X-Correlation-ID"] == correlation_id
    fake = FakeElasticsearch()

    def shipped() -> list[dict[str, Any]]:
        fake.requests.clear()
        _client(fake).ship_file(instance.log_file)
        return [d for d in fake.bulk_docs() if d.get("correlation_id") == correlation_id]

    (doc,) = poll(shipped, 10, "request log line")
    assert {"ts", "level", "msg", "method", "path", "route", "status", "duration_ms",
            "instance_id", "remote_addr"} <= set(doc)
    assert doc["status"] == 404 and doc["route"]


# -- deployment files ------------------------------------------------------------------------
def test_template_policy_pipeline_and_saved_search_agree() -> None:
    template = json.loads((LOGGING / "index-template.json").read_text())
    settings = template["template"]["settings"]
    assert template["index_patterns"] == ["kongstack-logs-*"]
    assert settings["index.lifecycle.name"] == "kongstack-logs"
    assert settings["index.default_pipeline"] == "kongstack-logs"
    policy = json.loads((LOGGING / "ilm-policy.json").read_text())
    assert policy["policy"]["phases"]["delete"]["actions"] == {"delete": {}}
    mapped = template["template"]["mappings"]["properties"]
    assert mapped["correlation_id"]["type"] == "keyword" and mapped["ts"]["type"] == "date"

    objects = [json.loads(line) for line in
               (LOGGING / "kibana-saved-objects.ndjson").read_text().splitlines()]
    by_type = {o["type"]: o for o in objects}
    assert by_type["index-pattern"]["attributes"]["title"] == "kongstack-logs-*"
    search = by_type["search"]
    assert search["references"][0]["id"] == by_type["index-pattern"]["id"]
    assert search["attributes"]["columns"][0] == "correlation_id"
    source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert "error" in source["query"]["query"] and "500" in source["query"]["query"]


def test_forwarders_ship_to_the_template_indices() -> None:
    aggregator = (LOGGING / "fluent-bit-aggregator.conf").read_text()
    assert "Logstash_Prefix     kongstack-logs" in aggregator
    # Kong's http-log input: on loopback, behind the token check on the ingest port
    assert "Listen            127.0.0.1\n    Port              9880" in aggregator
    shipper = (LOGGING / "fluent-bit-shipper.conf").read_text()
    assert "Port              24224" in shipper and "Port              24224" in aggregator
    # secure forward: both ends prove the log token
    for config in (aggregator, shipper):
        assert "Shared_Key        ${KONGSTACK_LOG_TOKEN}" in config
    for config in (aggregator, shipper):
        assert "Parsers_File              parsers.conf" in config


def test_kong_http_log_plugin_file_is_valid_declarative_config() -> None:
    if not shutil.which("deck"):
        pytest.skip("deck is not installed (run scripts/setup)")
    result = subprocess.run(["deck", "validate", "-s", str(LOGGING / "kong-http-log.yaml")],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "DECK_ANALYTICS": "off"})
    assert result.returncode == 0, result.stderr


# -- a real Elasticsearch --------------------------------------------------------------------
@pytest.fixture
def real_es() -> Iterator[ElasticsearchClient]:
    client = ElasticsearchClient.from_env()
    if client is None:
        pytest.skip("ELASTICSEARCH_URL is not set: no Elasticsearch on this machine")
    with client:
        yield client


@pytest.mark.real_service
def test_real_elasticsearch_normalises_and_finds_a_request_by_correlation_id(
    real_es: ElasticsearchClient,
) -> None:
    real_es.install()
    real_es.install()  # idempotent
    cid = f"mon-{uuid.uuid4().hex}"
    now = "2026-11-26T07:00:00.000+00:00"
    records: list[dict[str, Any]] = [
        {"ts": now, "level": "info", "msg": "request", "method": "GET", "path": "/api/stocks/X",
         "route": "/api/stocks/<symbol>", "status": 503, "duration_ms": 12.5,
         "correlation_id": cid, "instance_id": "api-1", "remote_addr": "127.0.0.1"},
        {"ts": now, "level": "info", "msg": "request", "method": "GET", "path": "/api/stocks/X",
         "route": "/api/", "status": "503", "request_time_s": "0.014", "correlation_id": cid,
         "remote_addr": "127.0.0.1", "upstream_addr": "127.0.0.1:18101"},
        {"started_at": 1795676400000, "client_ip": "127.0.0.1",
         "request": {"method": "GET", "uri": "/api/stocks/X",
                     "headers": {"kong-request-id": cid, "apikey": "must-not-be-stored"}},
         "response": {"status": 503}, "latencies": {"request": 15, "proxy": 13, "kong": 2},
         "route": {"name": "stocks"}, "service": {"name": "stock-api"}},
    ]
    result = real_es.ship(records)
    assert result.created == 3 and not result.errors
    assert real_es.ship(records).already_present == 3
    real_es.refresh()
    docs = poll(lambda: len(d := real_es.search_correlation(cid)) == 3 and d, 30,
                "three log lines")
    assert {d["source"] for d in docs} == {"stock-api", "nginx", "kong"}
    assert all(d["level"] == "error" for d in docs)  # a 5xx is an error
    kong = next(d for d in docs if d["source"] == "kong")
    assert kong["status"] == 503 and kong["duration_ms"] == 15 and "request" not in kong
    assert "must-not-be-stored" not in json.dumps(docs)

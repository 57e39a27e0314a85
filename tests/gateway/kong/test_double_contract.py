"""The double itself, checked against kong-admin-api.md with raw HTTP (no kongstack code):
if these drift from Kong 3.x, every other Kong test would prove the wrong thing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.doubles.kong_server import KongDouble, kong_double


@pytest.fixture
def http(kong: KongDouble) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kong.url, timeout=5) as client:
        yield client


def test_targets_have_no_upsert_and_missing_delete_is_404(http: httpx.Client) -> None:
    assert http.put("/upstreams/up", json={}).status_code == 200  # upsert creates: 200
    body = {"target": "10.0.0.1:8080", "weight": 100}
    created = http.post("/upstreams/up/targets", json=body)
    assert created.status_code == 201 and isinstance(created.json()["created_at"], float)
    clash = http.post("/upstreams/up/targets", json=body)
    assert clash.status_code == 409
    assert clash.json()["name"] == "unique constraint violation" and clash.json()["code"] == 5
    assert http.put("/upstreams/up/targets/10.0.0.9:1", json=body).status_code == 404
    assert http.patch("/upstreams/up/targets/10.0.0.1:8080", json={"weight": 0}).json()[
        "weight"] == 0
    assert http.delete("/upstreams/up/targets").status_code == 405
    assert http.delete("/upstreams/up/targets/10.0.0.1:8080").status_code == 204
    assert http.delete("/upstreams/up/targets/10.0.0.1:8080").status_code == 404
    assert http.delete("/upstreams/nope/targets/10.0.0.1:8080").status_code == 404
    assert http.delete("/services/never-existed").status_code == 204  # other kinds: 204
    default_port = http.post("/upstreams/up/targets", json={"target": "konghq.test"})
    assert default_port.json()["target"] == "konghq.test:8000"


def test_schema_violation_body(http: httpx.Client) -> None:
    http.put("/upstreams/up", json={})
    bad = http.post("/upstreams/up/targets", json={"weight": 70000})
    assert bad.status_code == 400
    assert bad.json()["code"] == 2 and bad.json()["name"] == "schema violation"
    assert bad.json()["fields"] == {"target": "required field missing",
                                    "weight": "value should be between 0 and 65535"}
    assert bad.json()["message"].startswith("2 schema violations (")


def test_pagination_offset_and_next(kong: KongDouble, http: httpx.Client) -> None:
    for n in range(5):
        http.post("/consumers", json={"username": f"u{n}", "tags": ["a", "b"] if n < 3 else ["a"]})
    first = http.get("/consumers", params={"size": 2}).json()
    assert len(first["data"]) == 2 and first["next"].startswith("/consumers?offset=")
    assert "offset" in first
    last = http.get("/consumers", params={"size": 2, "offset": first["offset"]}).json()
    follow = http.get(first["next"]).json()
    assert [c["username"] for c in follow["data"]] == [c["username"] for c in last["data"]]
    assert http.get("/consumers", params={"size": 5}).json().keys() == {"data", "next"}
    assert len(http.get("/consumers", params={"tags": "a,b"}).json()["data"]) == 3  # AND
    assert len(http.get("/consumers", params={"tags": "b/zz"}).json()["data"]) == 3  # OR
    assert http.get("/plugins").json() == {"data": [], "next": None}
    assert http.get("/consumers", params={"size": 1001}).json()["code"] == 9


def test_health_endpoint_shape_and_manual_overrides(http: httpx.Client) -> None:
    http.put("/upstreams/up", json={"healthchecks": {"active": {"healthy": {"interval": 5}}}})
    http.post("/upstreams/up/targets", json={"target": "10.0.0.5:8080"})
    http.post("/upstreams/up/targets", json={"target": "10.0.0.6:8080", "weight": 0})
    assert http.put("/upstreams/up/targets/10.0.0.5:8080/unhealthy").status_code == 204
    health = http.get("/upstreams/up/health").json()
    assert "node_id" in health and health["next"] is None
    states = {t["target"]: t["health"] for t in health["data"]}
    assert states == {"10.0.0.5:8080": "UNHEALTHY", "10.0.0.6:8080": "HEALTHCHECKS_OFF"}
    assert http.post("/upstreams/up/targets/10.0.0.5:8080/healthy").status_code == 405


def test_dbless_refuses_writes_with_code_12_but_takes_post_config() -> None:
    with kong_double(dbless=True) as kong, httpx.Client(base_url=kong.url) as http:
        refused = http.post("/routes", json={"paths": ["/x"]})
        assert refused.status_code == 405
        assert refused.json() == {"code": 12, "name": "operation unsupported",
                                  "message": "cannot create 'routes' entities when not using "
                                             "a database"}
        assert http.put("/services/s", json={"host": "h"}).json()["message"].startswith(
            "cannot create or update 'services'")
        loaded = http.post("/config", json={"_format_version": "3.0", "services": [
            {"name": "s", "host": "h", "routes": [{"name": "r", "paths": ["/x"]}]}]})
        assert loaded.status_code == 201 and len(loaded.json()["routes"]) == 1
        bad = http.post("/config", json={"_format_version": "3.0", "routes": [
            {"name": "r2", "paths": ["/y"], "service": "missing"}]})
        assert bad.status_code == 400 and bad.json()["code"] == 14
        assert [s["name"] for s in http.get("/services").json()["data"]] == ["s"]
        assert "services:" in http.get("/config").json()["config"]
    with kong_double() as kong, httpx.Client(base_url=kong.url) as http:
        assert http.post("/config", json={"_format_version": "3.0"}).status_code == 400


def test_acls_are_addressed_by_group_and_upserted_with_put(http: httpx.Client) -> None:
    """kong/plugins/acl/api.lua: a group name in the URL finds the consumer's membership; PUT
    creates it when missing; (consumer, group) is unique; the consumer's delete cascades."""
    http.put("/consumers/alice", json={})
    created = http.put("/consumers/alice/acls/writers", json={"tags": ["t"]})
    assert created.status_code == 200 and created.json()["group"] == "writers"
    again = http.put("/consumers/alice/acls/writers", json={"tags": ["t"]})
    assert again.json()["id"] == created.json()["id"]
    assert http.post("/consumers/alice/acls", json={"group": "writers"}).status_code == 409
    assert http.get("/consumers/alice/acls/writers").json()["id"] == created.json()["id"]
    assert http.get("/consumers/alice/acls/nope").status_code == 404
    assert [a["group"] for a in http.get("/acls", params={"tags": "t"}).json()["data"]] == [
        "writers"]
    bad = http.post("/plugins", json={"name": "acl", "config": {}})
    assert bad.status_code == 400 and "config.allow" in bad.json()["message"]
    assert http.delete("/consumers/alice").status_code == 204
    assert http.get("/acls").json()["data"] == []

"""Reconcile against the Kong double over HTTP: what a Kong operator would see change."""

from __future__ import annotations

import pytest

from kongstack.core.errors import GatewayError
from tasks.gateway.kong.model import GatewayState
from tasks.gateway.protocol import Gateway, TargetHealth, format_plan
from tests.doubles.kong_server import KongDouble
from tests.gateway.kong.conftest import DEMO_KEY, GatewayFactory

A, B = "127.0.0.1:18201", "127.0.0.1:18202"


def _names(kong: KongDouble, coll: str, key: str = "name") -> list[str]:
    return sorted(str(r[key]) for r in kong.rows(coll))


def test_apply_creates_the_stack_then_reapply_writes_nothing(
    kong: KongDouble, make_gateway: GatewayFactory, desired: GatewayState
) -> None:
    gateway = make_gateway(kong)
    assert isinstance(gateway, Gateway)
    first = gateway.apply(desired)
    assert first.changed and first.writes == len(first.operations) == 14
    assert _names(kong, "services") == ["stock-api"]
    assert _names(kong, "routes") == ["stock-api", "stock-api-write"]
    assert _names(kong, "plugins") == sorted(
        ["key-auth", "rate-limiting", "acl", "acl", "prometheus", "correlation-id", "http-log"])
    routes = {r["name"]: r for r in kong.rows("routes")}
    assert {r["service"]["id"] for r in routes.values()} == {kong.rows("services")[0]["id"]}
    assert routes["stock-api"]["methods"] == ["GET", "HEAD", "OPTIONS"]
    assert routes["stock-api-write"]["methods"] == ["POST", "PUT", "PATCH", "DELETE"]
    acl = {p["route"]["id"]: p["config"]["allow"] for p in kong.rows("plugins")
           if p["name"] == "acl"}
    assert acl == {routes["stock-api"]["id"]: ["readers"],
                   routes["stock-api-write"]["id"]: ["writers"]}
    assert [a["group"] for a in kong.rows("acls")] == ["readers"]
    key_auth = next(p for p in kong.rows("plugins") if p["name"] == "key-auth")
    assert key_auth["config"]["key_in_query"] is False
    upstream = kong.rows("upstreams")[0]
    assert upstream["healthchecks"]["active"]["http_path"] == "/health"
    assert upstream["healthchecks"]["active"]["healthy"]["interval"] > 0
    assert upstream["healthchecks"]["passive"]["unhealthy"]["http_failures"] > 0
    prometheus = next(p for p in kong.rows("plugins") if p["name"] == "prometheus")
    assert all(prometheus["config"][k] for k in
               ("status_code_metrics", "latency_metrics", "upstream_health_metrics"))
    assert kong.rows("keyauth_credentials")[0]["key"] == DEMO_KEY
    assert all({"kongstack", "kongstack-kongstack"} <= set(r["tags"])
               for coll in ("services", "routes", "plugins", "upstreams", "consumers")
               for r in kong.rows(coll))

    kong.reset_counts()
    again = gateway.apply(desired)
    assert (again.operations, again.writes) == ([], 0)
    assert set(kong.requests) == {"GET"}


def test_dry_run_prints_the_plan_and_changes_nothing(
    kong: KongDouble, make_gateway: GatewayFactory, desired: GatewayState
) -> None:
    result = make_gateway(kong).apply(desired, dry_run=True)
    assert result.dry_run and result.writes == 0
    assert kong.rows("services") == [] and set(kong.requests) == {"GET"}
    text = format_plan(result.operations)
    assert text.splitlines()[0] == ("create upstream stock-api-upstream "
                                    "(PUT /upstreams/stock-api-upstream)")
    assert DEMO_KEY not in text


def test_only_owned_entities_are_changed_or_deleted(
    kong: KongDouble, make_gateway: GatewayFactory, desired: GatewayState
) -> None:
    with kong.admin.lock:
        other = kong.admin.store.insert("services", {"name": "billing", "host": "billing.svc"})
        kong.admin.store.insert("plugins", {"name": "rate-limiting", "tags": ["team-billing"],
                                            "service": {"id": other["id"]},
                                            "config": {"minute": 5}})
    gateway = make_gateway(kong)
    gateway.apply(desired)
    result = gateway.apply(GatewayState())  # desired: nothing of ours
    assert {op.action for op in result.operations} == {"delete"}
    assert _names(kong, "services") == ["billing"]
    assert [p["config"]["minute"] for p in kong.rows("plugins")] == [5]


def test_refuses_to_take_over_a_name_it_does_not_own(
    kong: KongDouble, make_gateway: GatewayFactory, desired: GatewayState
) -> None:
    with kong.admin.lock:
        kong.admin.store.insert("services", {"name": "stock-api", "host": "legacy.svc"})
    with pytest.raises(GatewayError, match="without the kongstack owner tags"):
        make_gateway(kong).apply(desired)
    assert [s["host"] for s in kong.rows("services")] == ["legacy.svc"]
    assert kong.requests["PUT"] == 0


def test_changed_setting_updates_one_entity(
    kong: KongDouble, make_gateway: GatewayFactory, stack_config: object, desired: GatewayState
) -> None:
    from tasks.gateway.desired import GatewayStackConfig, build_gateway_state

    assert isinstance(stack_config, GatewayStackConfig)
    gateway = make_gateway(kong)
    gateway.apply(desired)
    plugin_ids = sorted(p["id"] for p in kong.rows("plugins"))
    result = gateway.apply(build_gateway_state(
        stack_config.model_copy(update={"rate_limit_per_minute": 30})))
    assert [op.describe().split(" (")[0] for op in result.operations] == [
        "update plugin rate-limiting@service:stock-api"]
    assert result.writes == 1
    limit = next(p for p in kong.rows("plugins") if p["name"] == "rate-limiting")
    assert limit["config"]["minute"] == 30
    assert sorted(p["id"] for p in kong.rows("plugins")) == plugin_ids


def test_targets_add_drain_remove_are_idempotent(
    kong: KongDouble, make_gateway: GatewayFactory, desired: GatewayState
) -> None:
    gateway = make_gateway(kong)
    gateway.apply(desired)
    for _ in range(2):
        gateway.add_target(A)
        gateway.add_target(B, weight=50)
    assert sorted((t["target"], t["weight"]) for t in kong.rows("targets")) == [(A, 100),
                                                                                (B, 50)]
    assert {t.address: t.health for t in gateway.list_targets()} == {
        A: TargetHealth.HEALTHY, B: TargetHealth.HEALTHY}

    gateway.set_target_health(B, healthy=False)
    assert {t.address: t.health for t in gateway.list_targets()}[B] == TargetHealth.UNHEALTHY

    gateway.drain_target(A)
    gateway.drain_target(A)
    assert {t.address: (t.weight, t.health) for t in gateway.list_targets()}[A] == (
        0, TargetHealth.DRAINING)
    for _ in range(2):
        gateway.remove_target(A)
    assert [t["target"] for t in kong.rows("targets")] == [B]
    gateway.drain_target("127.0.0.1:9")  # never registered: nothing to drain
    # The autoscaler's targets survive a re-apply that does not manage targets.
    assert gateway.apply(desired).writes == 0
    assert [t.address for t in gateway.list_targets()] == [B]


def test_target_that_exists_answers_409_and_only_weight_is_fixed(
    kong: KongDouble, make_gateway: GatewayFactory, desired: GatewayState
) -> None:
    gateway = make_gateway(kong)
    gateway.apply(desired)
    gateway.add_target(A, weight=10)
    kong.reset_counts()
    gateway.add_target(A, weight=20)
    assert kong.server.log[0] == ("POST", "/upstreams/stock-api-upstream/targets")
    assert ("PATCH", f"/upstreams/stock-api-upstream/targets/{A}") in kong.server.log
    assert [(t["target"], t["weight"]) for t in kong.rows("targets")] == [(A, 20)]


def test_list_targets_of_missing_upstream_is_empty(
    kong: KongDouble, make_gateway: GatewayFactory
) -> None:
    gateway = make_gateway(kong)
    assert gateway.list_targets() == []
    gateway.remove_target(A)  # 404 from Kong counts as done


def test_dbless_kong_gets_the_whole_document_and_keeps_foreign_entities(
    kong_dbless: KongDouble, make_gateway: GatewayFactory, desired: GatewayState
) -> None:
    from tests.doubles import kong_dbless as dbless_double

    with kong_dbless.admin.lock:
        kong_dbless.admin.store = dbless_double.load({
            "_format_version": "3.0",
            "services": [{"name": "billing", "host": "billing.svc",
                          "routes": [{"name": "billing", "paths": ["/billing"]}]}]})
    gateway = make_gateway(kong_dbless)
    result = gateway.apply(desired)
    assert gateway.dbless is True and result.changed
    assert ("POST", "/config") in kong_dbless.server.log
    assert _names(kong_dbless, "services") == ["billing", "stock-api"]
    assert _names(kong_dbless, "routes") == ["billing", "stock-api", "stock-api-write"]
    assert len(kong_dbless.rows("plugins")) == 7

    gateway.add_target(A)
    gateway.add_target(A)
    gateway.add_target(B)
    gateway.drain_target(A)
    assert {t.address: t.weight for t in gateway.list_targets()} == {A: 0, B: 100}
    gateway.remove_target(A)
    gateway.remove_target(A)
    assert [t["target"] for t in kong_dbless.rows("targets")] == [B]

    kong_dbless.reset_counts()
    assert gateway.apply(desired).writes == 0
    assert set(kong_dbless.requests) == {"GET"}
    assert [t["target"] for t in kong_dbless.rows("targets")] == [B]
    gateway.apply(GatewayState())
    assert _names(kong_dbless, "services") == ["billing"]


def test_refuses_a_plugin_scope_taken_by_an_untagged_plugin(
    kong: KongDouble, make_gateway: GatewayFactory, desired: GatewayState
) -> None:
    with kong.admin.lock:  # an operator enabled prometheus globally by hand
        kong.admin.store.insert("plugins", {"name": "prometheus"})
    with pytest.raises(GatewayError, match="plugin prometheus@global already exists"):
        make_gateway(kong).apply(desired)
    assert set(kong.requests) == {"GET"}
    assert [p["config"]["status_code_metrics"] for p in kong.rows("plugins")] == [False]


def test_key_held_by_an_untagged_credential_is_refused_before_any_write(
    kong: KongDouble, make_gateway: GatewayFactory, desired: GatewayState
) -> None:
    """Kong's 409 on the key would come only after the upstream, service, routes and
    consumer were written: the up-front check finds it and writes nothing."""
    with kong.admin.lock:  # an operator gave a hand-made consumer the same key
        legacy = kong.admin.store.insert("consumers", {"username": "legacy"})
        kong.admin.store.insert("keyauth_credentials", {"key": DEMO_KEY,
                                                        "consumer": {"id": legacy["id"]}})
    with pytest.raises(GatewayError, match="consumer 'demo'.*untagged credential") as err:
        make_gateway(kong).apply(desired)
    assert DEMO_KEY not in str(err.value)
    assert set(kong.requests) == {"GET"}
    assert all(DEMO_KEY not in path for _, path in kong.server.log)  # listed, not looked up
    assert _names(kong, "consumers", "username") == ["legacy"]


def test_acl_groups_follow_the_consumers_access(
    kong: KongDouble, make_gateway: GatewayFactory, stack_config: object
) -> None:
    from pydantic import SecretStr

    from tasks.gateway.desired import ConsumerConfig, GatewayStackConfig, build_gateway_state

    assert isinstance(stack_config, GatewayStackConfig)
    gateway = make_gateway(kong)
    writer = ConsumerConfig(username="demo", key=SecretStr(DEMO_KEY), access="write",
                            rate_limit_per_minute=1200)
    gateway.apply(build_gateway_state(stack_config.model_copy(update={"consumers": (writer,)})))
    assert sorted(a["group"] for a in kong.rows("acls")) == ["readers", "writers"]
    own = [p for p in kong.rows("plugins") if p["name"] == "rate-limiting" and p["consumer"]]
    assert [p["config"]["minute"] for p in own] == [1200]
    reader = writer.model_copy(update={"access": "read", "rate_limit_per_minute": None})
    result = gateway.apply(build_gateway_state(
        stack_config.model_copy(update={"consumers": (reader,)})))
    assert sorted(op.describe().split(" (")[0] for op in result.operations) == [
        "delete acl demo/writers", "delete plugin rate-limiting@consumer:demo"]
    assert [a["group"] for a in kong.rows("acls")] == ["readers"]

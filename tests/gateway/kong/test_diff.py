"""The pure diff: dependency order, no-op on equal state, deletes reversed, secrets hidden."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tasks.gateway.desired import ConsumerConfig, GatewayStackConfig, build_gateway_state
from tasks.gateway.kong.diff import CurrentState, plan, subset_equal
from tasks.gateway.kong.model import GatewayState
from tasks.gateway.protocol import format_plan
from tests.gateway.kong.conftest import DEMO_KEY

ORDER = ["upstream", "target", "service", "route", "consumer", "keyauth_credential", "acl",
         "plugin"]


def _as_current(state: GatewayState) -> CurrentState:
    """What Kong would return after applying ``state`` (ids, references by id, defaults)."""
    current = CurrentState()
    ids: dict[tuple[str, str], str] = {}
    tags = list(state.tags)
    for n, u in enumerate(state.upstreams):
        ids[("upstream", u.name)] = f"u{n}"
        current.upstreams.append({"id": f"u{n}", "name": u.name, "algorithm": u.algorithm,
                                  "slots": u.slots, "healthchecks": u.healthchecks,
                                  "hash_on": "none", "tags": tags})
    for n, t in enumerate(state.targets or ()):
        current.targets.append({"id": f"t{n}", "target": t.target, "weight": t.weight,
                                "upstream": {"id": ids[("upstream", t.upstream)]}, "tags": tags})
    for n, s in enumerate(state.services):
        ids[("service", s.name)] = f"s{n}"
        current.services.append({"id": f"s{n}", "enabled": True, "tags": tags,
                                 **s.model_dump(exclude={"tags"})})
    for n, r in enumerate(state.routes):
        ids[("route", r.name)] = f"r{n}"
        current.routes.append({"id": f"r{n}", "name": r.name, "paths": list(r.paths),
                               "protocols": list(r.protocols),
                               "methods": list(r.methods) if r.methods else None,
                               "strip_path": r.strip_path, "preserve_host": r.preserve_host,
                               "service": {"id": ids[("service", r.service)]}, "tags": tags})
    for n, c in enumerate(state.consumers):
        ids[("consumer", c.username)] = f"c{n}"
        current.consumers.append({"id": f"c{n}", "username": c.username, "custom_id": None,
                                  "tags": tags})
    for n, k in enumerate(state.keyauth_credentials):
        current.keyauth_credentials.append({"id": f"k{n}", "key": k.key.get_secret_value(),
                                            "consumer": {"id": ids[("consumer", k.consumer)]},
                                            "tags": tags})
    for n, a in enumerate(state.acls):
        current.acls.append({"id": f"a{n}", "group": a.group, "tags": tags,
                             "consumer": {"id": ids[("consumer", a.consumer)]}})
    for n, p in enumerate(state.plugins):
        refs = {kind: ({"id": ids[(kind, ref)]} if ref else None)
                for kind, ref in (("service", p.service), ("route", p.route),
                                  ("consumer", p.consumer))}
        current.plugins.append({"id": f"p{n}", "name": p.name, "enabled": p.enabled,
                                "config": {**p.config, "kong_default": 1}, "tags": tags,
                                **refs})
    return current


def test_empty_gateway_plans_creates_in_dependency_order(desired: GatewayState) -> None:
    ops = plan(CurrentState(), desired.with_targets([]))
    kinds = [op.kind for op in ops]
    assert all(op.action == "create" for op in ops)
    assert kinds == sorted(kinds, key=ORDER.index), "upstream before service before plugin"
    # key-auth, default rate limit, an ACL per route, prometheus, correlation-id, http-log
    assert [op.kind for op in ops].count("plugin") == 7
    assert [(op.method, op.path) for op in ops if op.kind == "acl"] == [
        ("PUT", "/consumers/demo/acls/readers")]
    assert {(op.method, op.path) for op in ops if op.kind == "service"} == {
        ("PUT", "/services/stock-api")}


def test_applied_state_plans_nothing(desired: GatewayState) -> None:
    with_targets = desired.with_targets(list(
        build_gateway_state(GatewayStackConfig(), ["127.0.0.1:1"]).targets or ()))
    assert plan(_as_current(with_targets), with_targets) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"rate_limit_per_minute": 60}, [("update", "plugin")], id="rate-limit"),
        pytest.param({"route_path": "/v2"}, [("update", "route")] * 2, id="route-path"),
        pytest.param({"log_endpoint": None}, [("delete", "plugin")], id="drop-http-log"),
        pytest.param({"consumers": ()},
                     [("delete", "acl"), ("delete", "keyauth_credential"),
                      ("delete", "consumer")],
                     id="drop-consumer-groups-and-credential-first"),
        pytest.param({"consumers": (ConsumerConfig(username="demo", key=SecretStr(DEMO_KEY),
                                                   access="write"),)},
                     [("create", "acl")], id="reader-becomes-writer"),
        pytest.param({"consumers": (ConsumerConfig(username="demo", key=SecretStr(DEMO_KEY),
                                                   rate_limit_per_minute=5),)},
                     [("create", "plugin")], id="consumer-gets-its-own-limit"),
        pytest.param({"consumers": (ConsumerConfig(username="demo", key=SecretStr("new")),)},
                     [("delete", "keyauth_credential"), ("create", "keyauth_credential")],
                     id="rotated-key-is-a-new-credential"),
    ],
)
def test_changes_plan_exactly_the_difference(
    stack_config: GatewayStackConfig, change: dict[str, object],
    expected: list[tuple[str, str]],
) -> None:
    current = _as_current(build_gateway_state(stack_config))
    new = build_gateway_state(stack_config.model_copy(update=change))
    assert [(op.action, op.kind) for op in plan(current, new)] == expected


def test_deletes_run_bottom_up_before_creates(desired: GatewayState) -> None:
    current = _as_current(desired)
    ops = plan(current, GatewayState())
    kinds = [op.kind for op in ops]
    assert kinds == sorted(kinds, key=ORDER.index, reverse=True)
    assert all(op.method == "DELETE" for op in ops)


def test_targets_left_alone_unless_managed(desired: GatewayState) -> None:
    managed = desired.with_targets(list(
        build_gateway_state(GatewayStackConfig(), ["127.0.0.1:1"]).targets or ()))
    current = _as_current(managed)
    assert plan(current, desired) == []  # targets=None: the autoscaler's targets survive
    ops = plan(current, desired.with_targets([]))
    assert [(op.action, op.kind, op.method) for op in ops] == [("delete", "target", "DELETE")]


def test_plan_output_never_shows_key(desired: GatewayState) -> None:
    ops = plan(CurrentState(), desired)
    text = format_plan(ops) + repr(ops)
    assert DEMO_KEY not in text
    assert "keyauth_credential demo/" in text


@pytest.mark.parametrize(
    ("want", "have", "equal"),
    [
        pytest.param({"a": 1}, {"a": 1, "b": 2}, True, id="kong-defaults-ignored"),
        pytest.param({"a": {"b": [1, 2]}}, {"a": {"b": [1, 2], "c": 0}}, True, id="nested"),
        pytest.param({"a": [1, 2]}, {"a": [2, 1]}, False, id="list-order-matters"),
        pytest.param({"a": None}, {}, True, id="unset-equals-absent"),
        pytest.param({"a": None}, {"a": 3}, False, id="null-vs-value"),
        pytest.param({"k": SecretStr("x")}, {"k": "x"}, True, id="secret-compared-by-value"),
    ],
)
def test_subset_equal(want: dict[str, object], have: dict[str, object], equal: bool) -> None:
    assert subset_equal(want, have, {}) is equal

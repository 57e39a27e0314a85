"""deploy-stack's consumers: keys created once, limits checked against the autoscale policy."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from kongstack.core.topology import DEFAULT_TOPOLOGY_PATH, load_topology, parse_topology
from kongstack.core.yamlfile import load_yaml
from tasks.providers import consumers as deploy_module
from tasks.providers.consumers import capacity_warnings, deploy_consumers


def test_the_demo_limits_fit_the_demo_pool() -> None:
    """deployments/stack.yaml against deployments/autoscale.yaml: no consumer is capped."""
    from autoscaler.service_model import ServiceModel

    # The shipped policy learns capacity: until it has, the service model's capacity stands in.
    max_instances, per_instance = deploy_module.planned_capacity()
    assert (max_instances, per_instance) == (6, ServiceModel().capacity_rps)
    assert capacity_warnings(load_topology()) == []


def test_a_limit_below_the_planned_capacity_is_warned(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "autoscale.yaml"
    config.write_text("policy: {max_instances: 10, target_rps_per_instance: 150}\n")
    monkeypatch.setenv("KONGSTACK_AUTOSCALER_CONFIG", str(config))
    data = load_yaml(DEFAULT_TOPOLOGY_PATH, what="stack file")
    data["consumers"] = [{"name": "reader", "rate_limit_per_minute": 600}]
    warnings = capacity_warnings(parse_topology(data))
    assert len(warnings) == 1 and warnings[0].startswith("consumers[0].rate_limit_per_minute")
    assert "1,500 req/s (10 instances × 150 req/s)" in warnings[0]


def test_a_broken_autoscale_config_is_named_not_fatal(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "autoscale.yaml"
    config.write_text("policy: {max_instances: -1}\n")
    monkeypatch.setenv("KONGSTACK_AUTOSCALER_CONFIG", str(config))
    (note,) = capacity_warnings(load_topology())
    assert note.startswith("consumers: rate limits not checked against the pool")


def test_deploy_creates_missing_keys_once_and_never_says_one(prefect_harness: None) -> None:
    data = load_yaml(DEFAULT_TOPOLOGY_PATH, what="stack file")
    data["name"] = f"kd{uuid.uuid4().hex[:8]}"
    topo = parse_topology(data)
    logged: list[str] = []
    first = deploy_consumers(topo, log=logged.append)
    assert first.changes == [f"consumer {c}: key created in Secret block {topo.name}-key-{c}"
                             for c in ("reader", "writer")]
    again = deploy_consumers(topo, log=logged.append)
    assert again.changes == [] and again.probe_key() == first.probe_key()
    assert [c.username for c in again.configs] == ["reader", "writer"]
    assert again.probe_key() == first.keys[0].key.get_secret_value()  # the read-only one
    text = repr(first) + repr(again) + " ".join(logged + first.changes)
    assert all(k.key.get_secret_value() not in text for k in first.keys)


def test_a_dry_run_plan_lists_the_consumers_and_creates_no_key(prefect_harness: None,
                                                               tmp_path: Path) -> None:
    from kongstack.core.settings import LocalSettings
    from tasks.gateway.consumers import SecretStore
    from tasks.providers.local.provider import LocalProvider

    data = load_yaml(DEFAULT_TOPOLOGY_PATH, what="stack file")
    data["name"] = f"kp{uuid.uuid4().hex[:8]}"
    topo = parse_topology(data)
    plan = LocalProvider(topo, LocalSettings(home=tmp_path), log=lambda _: None).plan()
    register = next(s for s in plan.steps if s.name == "register").actions
    assert "gateway: ensure consumer reader" in register
    assert any(a.startswith("consumers: a key created in each Secret block that has none")
               and f"{topo.name}-key-writer" in a for a in register)
    assert SecretStore().load(f"{topo.name}-key-reader") is None


def test_the_local_gateway_adds_the_stacks_instance_secret(prefect_harness: None,
                                                          tmp_path: Path) -> None:
    """instance_secret set: the local gateway's state carries Kong's request-transformer
    with the secret, which the nginx site turns into the X-Gateway-Secret header (its
    effect on requests: tests/gateway/nginx); a dry run names the block, reads nothing."""
    from prefect.blocks.system import Secret

    from kongstack.core.settings import LocalSettings
    from tasks.gateway.desired import upstream_secret_header
    from tasks.gateway.nginx import site_from_state
    from tasks.providers.local.stack import LocalStack

    data = load_yaml(DEFAULT_TOPOLOGY_PATH, what="stack file")
    data["name"] = f"ks{uuid.uuid4().hex[:8]}"
    data["instance_secret"] = f"{data['name']}-instance-secret"
    secret = f"gw-{uuid.uuid4().hex}"
    block: Any = Secret(value=secret)  # type: ignore[arg-type]
    block.save(data["instance_secret"], _sync=True)
    stack = LocalStack(parse_topology(data), LocalSettings(home=tmp_path), lambda _: None)

    state = stack.desired_gateway_state()
    header = upstream_secret_header(state)
    assert header is not None and header[0] == "X-Gateway-Secret"
    assert header[1].get_secret_value() == secret
    site = site_from_state(state, upstream="stock-api-upstream")
    assert site.remove_headers == ("X-Gateway-Secret",)
    assert {k: v.get_secret_value() for k, v in site.add_headers.items()} == {
        "X-Gateway-Secret": secret}
    assert secret not in str(site.public_view())

    planned = upstream_secret_header(stack.desired_gateway_state(planned=True))
    assert planned is not None and secret not in planned[1].get_secret_value()

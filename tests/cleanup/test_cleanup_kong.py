"""Cleanup against the Kong Admin API double: only owner-tagged entities are planned and
removed, and an entity that appears after the approval is never removed with the plan."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from pydantic import SecretStr

from tasks.cleanup.steps import (
    CleanupConfig,
    plan_cleanup,
    pool_config,
    remove_planned,
    verify_removed,
)
from tasks.gateway.desired import ConsumerConfig, GatewayStackConfig, build_gateway_state
from tasks.tick.pool import build_gateway
from tests.doubles.kong_server import kong_double


def test_kong_entities_with_the_owner_tags_only(tmp_path: Path) -> None:
    stack = f"t-{uuid.uuid4().hex[:8]}"
    with kong_double() as kong:
        pool = pool_config(stack, driver="process", gateway="kong",
                           local={"home": tmp_path / "var"},
                           gateway_options={"admin_url": kong.url})
        config = CleanupConfig(pool=pool, include_volumes=False, include_data=False)
        gateway = build_gateway(pool)
        gateway.apply(build_gateway_state(GatewayStackConfig(stack=stack)))
        gateway.add_target("127.0.0.1:9")
        foreign = httpx.post(f"{kong.url}/services", json={"name": "theirs",
                                                           "host": "example.internal"})
        assert foreign.status_code == 201, foreign.text

        plan = plan_cleanup(config)
        entities = plan.keys("gateway_entity")
        assert plan.keys("gateway_target") == ["127.0.0.1:9"]
        assert any(e.startswith("delete service stock-api ") for e in entities)
        assert any(e.startswith("delete route stock-api ") for e in entities)
        assert not any("theirs" in e for e in entities)

        # Something new appears after the plan was approved: nothing of it is removed.
        gateway.apply(build_gateway_state(GatewayStackConfig(stack=stack, consumers=(
            ConsumerConfig(username="late", key=SecretStr("k" * 24)),))))
        report = remove_planned(config, plan)
        assert any("consumer late" in r for r in report.refused)
        assert [c["username"] for c in kong.rows("consumers")] == ["late"]
        assert any(e.startswith("delete service stock-api ")
                   for e in plan_cleanup(config).keys("gateway_entity"))

        # A fresh plan (approved again) removes everything owned, and only that.
        fresh = plan_cleanup(config)
        assert remove_planned(config, fresh).ok
        assert verify_removed(config, fresh) == []
        assert [s["name"] for s in kong.rows("services")] == ["theirs"]
        assert kong.rows("consumers") == [] and kong.rows("upstreams") == []

"""The same behaviour against a real Kong 3.x when ``KONG_ADMIN_URL`` is set.

Uses its own stack name and entity names, and removes everything it created at the end
(only entities tagged with that stack are ever touched).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from tasks.gateway.desired import ConsumerConfig, GatewayStackConfig, build_gateway_state
from tasks.gateway.kong.auth import load_admin_auth
from tasks.gateway.kong.client import KongAdminClient
from tasks.gateway.kong.model import GatewayState
from tasks.gateway.kong.sync import KongGateway

KONG_ADMIN_URL = os.environ.get("KONG_ADMIN_URL")
pytestmark = [
    pytest.mark.real_service,
    pytest.mark.skipif(not KONG_ADMIN_URL, reason="KONG_ADMIN_URL is not set: no real Kong "
                       "to test against (Kong cannot run on this machine; the double covers it)"),
]


@pytest.fixture
def real() -> Iterator[tuple[KongGateway, GatewayStackConfig]]:
    assert KONG_ADMIN_URL
    suffix = uuid.uuid4().hex[:8]
    cfg = GatewayStackConfig(
        stack=f"kstest-{suffix}", service=f"kstest-{suffix}", route=f"kstest-{suffix}",
        upstream=f"kstest-{suffix}-upstream", route_path=f"/kstest-{suffix}",
        consumers=(ConsumerConfig(username=f"kstest-{suffix}",
                                  key=SecretStr(uuid.uuid4().hex)),))
    client = KongAdminClient(base_url=KONG_ADMIN_URL, auth=load_admin_auth())
    gateway = KongGateway(client=client, stack=cfg.stack, upstream=cfg.upstream,
                          drain_grace_seconds=1.0)
    try:
        yield gateway, cfg
    finally:
        gateway.apply(GatewayState(stack=cfg.stack))
        gateway.close()


def test_apply_reapply_and_targets_on_real_kong(
    real: tuple[KongGateway, GatewayStackConfig]
) -> None:
    gateway, cfg = real
    desired = build_gateway_state(cfg)
    first = gateway.apply(desired)
    assert first.changed
    again = gateway.apply(desired)
    assert (again.operations, again.writes) == ([], 0)
    gateway.add_target("127.0.0.1:18999")
    gateway.add_target("127.0.0.1:18999")
    assert [t.address for t in gateway.list_targets()] == ["127.0.0.1:18999"]
    gateway.drain_target("127.0.0.1:18999")
    assert [t.weight for t in gateway.list_targets()] == [0]
    gateway.remove_target("127.0.0.1:18999")
    gateway.remove_target("127.0.0.1:18999")
    assert gateway.list_targets() == []

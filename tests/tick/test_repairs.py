"""Repair planning (tasks.tick.repair): every half-done state an interrupted tick (or an
operator) can leave is turned into a repair, and a consistent pool yields none."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tasks.gateway.protocol import Target, TargetHealth
from tasks.instances.base import Instance, InstanceState
from tasks.tick.pool import PoolConfig
from tasks.tick.repair import plan_repairs

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def inst(port: int, state: InstanceState = InstanceState.READY) -> Instance:
    return Instance(id=f"id-{port}", name=f"kongstack-api-{port}", address=f"127.0.0.1:{port}",
                    state=state, started_at=NOW)


def target(port: int, weight: int = 100) -> Target:
    health = TargetHealth.DRAINING if weight == 0 else TargetHealth.HEALTHY
    return Target(address=f"127.0.0.1:{port}", weight=weight, health=health)


@pytest.mark.parametrize(
    ("instances", "targets", "expected"),
    [
        pytest.param([inst(1), inst(2)], [target(1), target(2)], [],
                     id="consistent pool: nothing to do"),
        pytest.param([inst(1), inst(2, InstanceState.STARTING)], [target(1)], [],
                     id="a starting instance is left to finish starting"),
        pytest.param([inst(1), inst(2)], [target(1)], [("register", 2)],
                     id="crash after start, before add_target: register it"),
        pytest.param([inst(1)], [target(1), target(2)], [("orphan_target", 2)],
                     id="crash after stop, before remove_target: drop the target"),
        pytest.param([inst(1), inst(2)], [target(1), target(2, weight=0)],
                     [("finish_drain", 2)], id="crash after drain: finish the scale-in"),
        pytest.param([inst(1), inst(2, InstanceState.EXITED)], [target(1), target(2)],
                     [("replace", 2)], id="killed backend: replace it"),
        pytest.param([inst(1), inst(2, InstanceState.UNHEALTHY)], [target(1)],
                     [("replace", 2)], id="never became ready: replace it"),
        pytest.param([inst(1, InstanceState.EXITED), inst(2)], [target(2), target(3)],
                     [("replace", 1), ("orphan_target", 3)],
                     id="dead instances first, then stray targets"),
    ],
)
def test_plan_repairs(
    instances: list[Instance], targets: list[Target], expected: list[tuple[str, int]]
) -> None:
    plan = plan_repairs(instances, targets)
    assert [(r.action, int(r.address.rsplit(":", 1)[1])) for r in plan] == expected
    assert all(r.reason for r in plan)


def test_pool_config_rejects_unknown_settings() -> None:
    with pytest.raises(ValueError, match="gateway_prot"):
        PoolConfig(local={"gateway_prot": 1})
    with pytest.raises(ValueError, match="drain_secs"):
        PoolConfig.model_validate({"drain_secs": 3})

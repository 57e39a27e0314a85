"""Repair planning (tasks.tick.repair): every half-done state an interrupted tick (or an
operator) can leave is turned into a repair, and a consistent pool yields none."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from kongstack.core.procs import free_port
from tasks.gateway.protocol import Target, TargetHealth
from tasks.instances.base import Instance, InstanceState
from tasks.tick.pool import PoolConfig
from tasks.tick.repair import plan_repairs, repair

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def inst(port: int, state: InstanceState = InstanceState.READY) -> Instance:
    return Instance(id=f"id-{port}", name=f"kongstack-api-{port}", address=f"127.0.0.1:{port}",
                    state=state, started_at=NOW)


def target(port: int, weight: int = 100, *, owned: bool = True) -> Target:
    health = TargetHealth.DRAINING if weight == 0 else TargetHealth.HEALTHY
    return Target(address=f"127.0.0.1:{port}", weight=weight, health=health, owned=owned)


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
        pytest.param([inst(1, InstanceState.DEGRADED), inst(2, InstanceState.DEGRADED)],
                     [target(1), target(2)], [],
                     id="degraded (alive, a dependency down): kept, never replaced"),
        pytest.param([inst(1), inst(2, InstanceState.DEGRADED)], [target(1)], [],
                     id="a degraded instance is not made a new target"),
        pytest.param([inst(1)], [target(1), target(2, owned=False)], [],
                     id="an operator's own target (no owner tags) is never touched"),
        pytest.param([inst(1)], [target(1), target(2, weight=0, owned=False)], [],
                     id="nor is an operator's drained target"),
    ],
)
def test_plan_repairs(
    instances: list[Instance], targets: list[Target], expected: list[tuple[str, int]]
) -> None:
    plan = plan_repairs(instances, targets)
    assert [(r.action, int(r.address.rsplit(":", 1)[1])) for r in plan] == expected
    assert all(r.reason for r in plan)


def test_replacements_per_tick_are_bounded() -> None:
    dead = [inst(p, InstanceState.EXITED) for p in (1, 2, 3, 4)]
    plan = plan_repairs(dead, [target(p) for p in (1, 2, 3, 4)], max_replacements=2)
    assert [(r.action, r.address[-1]) for r in plan] == [("replace", "1"), ("replace", "2")]
    assert len(plan_repairs(dead, [], max_replacements=None)) == 4


def test_pool_config_rejects_unknown_settings() -> None:
    with pytest.raises(ValueError, match="gateway_prot"):
        PoolConfig(local={"gateway_prot": 1})
    with pytest.raises(ValueError, match="drain_secs"):
        PoolConfig.model_validate({"drain_secs": 3})


def test_repair_removes_only_its_own_orphans_on_kong(tmp_path: Path) -> None:
    """Against the Kong double: an operator's untagged target that does not answer /ready is
    kept; kongstack's own target with no instance behind it is removed."""
    from tasks.gateway.desired import registration_state
    from tasks.gateway.kong.client import KongAdminClient
    from tasks.gateway.kong.sync import KongGateway
    from tests.doubles.kong_server import kong_double

    theirs, ours = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    with kong_double() as kong:
        gateway = KongGateway(client=KongAdminClient(base_url=kong.url, timeout=2.0),
                              drain_grace_seconds=0.0)
        try:
            gateway.apply(registration_state("kongstack", api_key=None))
            httpx.post(f"{kong.url}/upstreams/stock-api-upstream/targets",
                       json={"target": theirs, "weight": 100}, timeout=2.0).raise_for_status()
            gateway.add_target(ours)
            config = PoolConfig(driver="process", gateway="kong",
                                gateway_options={"admin_url": kong.url,
                                                 "drain_grace_seconds": 0.0},
                                local={"home": str(tmp_path)}, probe_timeout_seconds=0.5)
            view = repair.fn(config)
            left = {t.address: t.owned for t in gateway.list_targets()}
        finally:
            gateway.close()
    assert left == {theirs: False}
    assert [a.details for a in view.repairs] == [
        [f"removed target {ours} (no instance behind it)"]]

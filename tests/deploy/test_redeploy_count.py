"""A redeploy keeps the pool the autoscaler sized: the stack file's instance count is only the
first deploy's (issue 16, item 9)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from autoscaler.model import InstanceState
from kongstack.core.settings import LocalSettings
from kongstack.core.topology import load_topology
from tasks.instances.base import Instance
from tasks.providers.local.stack import LocalStack

NOW = datetime(2026, 1, 1, tzinfo=UTC)
S = InstanceState


def pool(*states: InstanceState) -> list[Instance]:
    return [Instance(id=f"i{n}", name=f"api-{n}", address=f"127.0.0.1:{3000 + n}", state=s,
                     started_at=NOW) for n, s in enumerate(states)]


@pytest.mark.parametrize(("instances", "expected"), [
    pytest.param([], "stack", id="first deploy: the stack file's count"),
    pytest.param(pool(S.READY), 1, id="scaled in to 1: kept at 1"),
    pytest.param(pool(*[S.READY] * 6), 6, id="scaled out to 6: kept at 6"),
    pytest.param(pool(S.READY, S.EXITED, S.UNHEALTHY), 3, id="dead instances are replaced"),
    pytest.param(pool(S.READY, S.READY, S.DRAINING), 2, id="a draining one is on its way out"),
])
def test_redeploy_keeps_the_pool_size(tmp_path: Path, instances: list[Instance],
                                      expected: int | str) -> None:
    topo = load_topology()
    stack = LocalStack(topo, LocalSettings(home=tmp_path), lambda _: None)
    want = topo.local.instances if expected == "stack" else expected
    assert stack.redeploy_count(instances) == want

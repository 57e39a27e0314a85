"""Table of host_need() cases (autoscaler/hostgrowth.py): each row says why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.hostgrowth import AddedHost, GrowthLimits, host_need
from autoscaler.placement import HostLoad

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
LIMITS = GrowthLimits(max_added_hosts=2, idle_cooldown_seconds=600, retry_seconds=300)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


FULL = (HostLoad("h1", 2, 2), HostLoad("h2", 2, 2))
ROOMY = (HostLoad("h1", 4, 2), HostLoad("h2", 4, 2))


@dataclass
class Case:
    why: str
    hosts: tuple[HostLoad, ...]
    desired: int
    active: int
    expected: str
    added: tuple[AddedHost, ...] = ()
    host: str | None = None
    shortfall: int = 0
    limits: GrowthLimits = LIMITS
    says: str = ""
    """A phrase the reason must contain."""


CASES = [
    Case("every host full and the policy wants 2 more: add one host", FULL, 6, 4, "add",
         shortfall=2, says="pool full (h1 2/2, h2 2/2): 2 of 6 instance(s) find no room"),
    Case("room left on the live hosts: nothing to add", ROOMY, 6, 4, "none",
         says="fits on its hosts"),
    Case("a down host's room does not count: the live one is full", (
        HostLoad("h1", 2, 2), HostLoad("h2", 4, 0, usable=False)), 3, 2, "add", shortfall=1),
    Case("growth switched off: never adds, even when full", FULL, 6, 4, "none",
         limits=GrowthLimits(0, 600, 300), says="max_added_hosts 0"),
    Case("the ceiling of added hosts is reached: no third VM, and the reason says so",
         FULL + (HostLoad("a1", 2, 2), HostLoad("a2", 2, 2)), 10, 8, "none",
         added=(AddedHost("a1", "ready", used=2), AddedHost("a2", "ready", used=2)),
         shortfall=2, says="max_added_hosts (2)"),
    Case("an added host is still being made: wait for it, do not start a second",
         FULL, 6, 4, "wait", added=(AddedHost("a1", "pending"),), host="a1", shortfall=2),
    Case("an added host is being removed: finish that before anything else",
         FULL, 6, 4, "wait", added=(AddedHost("a1", "removing"),), host="a1", shortfall=2),
    Case("a failed add is not retried before retry_seconds (quota errors stay a while)",
         FULL, 6, 4, "none", added=(AddedHost("a1", "failed", changed_at=ago(60),
                                             error="(OperationNotAllowed) quota"),),
         host="a1", shortfall=2, says="next try in 240s"),
    Case("after retry_seconds the failed host's partial resources are removed first",
         FULL, 6, 4, "remove", added=(AddedHost("a1", "failed", changed_at=ago(301),
                                               error="(OperationNotAllowed) quota"),),
         host="a1", shortfall=2, says="partial resources"),
    Case("an added host idle for the whole cool-down, the rest holds the pool: remove it",
         ROOMY + (HostLoad("a1", 2, 0),), 4, 4, "remove",
         added=(AddedHost("a1", "ready", idle_since=ago(600)),), host="a1",
         says="idle for 600s (cool-down 600s)"),
    Case("idle, but the cool-down has not passed: keep it (a dip between bursts)",
         ROOMY + (HostLoad("a1", 2, 0),), 4, 4, "none",
         added=(AddedHost("a1", "ready", idle_since=ago(599)),), host="a1",
         says="599s of the 600s cool-down"),
    Case("idle, but the others cannot hold the desired size without it: keep it",
         FULL + (HostLoad("a1", 2, 0),), 5, 4, "none",
         added=(AddedHost("a1", "ready", idle_since=ago(3600)),), host="a1",
         says="hold only 4 of the 5"),
    Case("an added host that runs instances is never removed", ROOMY + (HostLoad("a1", 2, 1),),
         5, 5, "none", added=(AddedHost("a1", "ready", used=1),), says="fits"),
    Case("the longest-idle added host goes first, one per tick",
         ROOMY + (HostLoad("a1", 2, 0), HostLoad("a2", 2, 0)), 4, 4, "remove",
         added=(AddedHost("a1", "ready", idle_since=ago(700)),
                AddedHost("a2", "ready", idle_since=ago(900))), host="a2"),
    Case("a configured host is never removed, however idle (only added ones are listed)",
         (HostLoad("h1", 4, 4), HostLoad("h2", 4, 0)), 4, 4, "none", says="fits"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.why for c in CASES])
def test_host_need(case: Case) -> None:
    need = host_need(case.limits, case.hosts, case.added, desired=case.desired,
                     active=case.active, now=NOW)
    assert need.action == case.expected, need.reason
    assert need.host == case.host, need
    assert need.shortfall == case.shortfall, need
    assert case.says in need.reason, need.reason


def test_same_inputs_same_answer() -> None:
    args = (LIMITS, FULL, (AddedHost("a1", "ready", used=2),))
    first = host_need(*args, desired=7, active=5, now=NOW)
    assert first == host_need(*args, desired=7, active=5, now=NOW)

"""Scale-in victim selection by a named selector."""

from __future__ import annotations

import pytest

from autoscaler import AutoscalePolicy, InstanceState, InstanceView, Metrics, select_victims

from .builders import ago

POOL = [
    InstanceView(id="old", started_at=ago(3000), metrics=Metrics(cpu_percent=50)),
    InstanceView(id="mid", started_at=ago(2000), metrics=Metrics(cpu_percent=10)),
    InstanceView(id="new", started_at=ago(1000), metrics=Metrics(cpu_percent=90)),
    InstanceView(id="leaving", state=InstanceState.DRAINING, started_at=ago(500)),
]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [("newest", ["new", "mid"]), ("oldest", ["old", "mid"]), ("least_loaded", ["mid", "old"])],
)
def test_selectors(selector: str, expected: list[str]) -> None:
    assert [v.id for v in select_victims(selector, POOL, 2)] == expected


def test_policy_selects_and_starting_instances_go_first() -> None:
    starting = InstanceView(id="booting", state=InstanceState.STARTING, started_at=ago(5000))
    policy = AutoscalePolicy(victim_selection="oldest")
    assert [v.id for v in select_victims(policy, [*POOL, starting], 2)] == ["booting", "old"]


def test_draining_instances_are_never_chosen_and_count_is_bounded() -> None:
    assert "leaving" not in {v.id for v in select_victims("newest", POOL, 10)}
    assert select_victims("newest", POOL, 0) == []


def test_unknown_selector_is_an_error() -> None:
    with pytest.raises(ValueError, match="victim_selection: unknown selector 'random'"):
        select_victims("random", POOL, 1)

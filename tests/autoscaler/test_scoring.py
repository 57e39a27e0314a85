"""Scores against the two oracles, per trace and summed (autoscaler.scoring)."""

from __future__ import annotations

import pytest

from autoscaler.replay import ReplayResult, oracle
from autoscaler.scoring import score, total
from autoscaler.service_model import ServiceModel

MODEL = ServiceModel()


def result(name: str, cost: float, violations: int = 0, reversals: int = 0,
           offered: float = 1000.0, dropped: float = 0.0) -> ReplayResult:
    return ReplayResult(
        name=name, strategy="proportional", tick_seconds=30, seconds=100,
        offered_requests=offered, dropped_requests=dropped, slo_violation_seconds=violations,
        instance_seconds=cost, scale_actions=2 * reversals, reversals=reversals,
    )


def test_ratios_are_to_each_oracle_and_the_oracles_come_last() -> None:
    best, per_tick = result("oracle", 100), result("oracle/30s", 125)
    rows = score([result("a", 150), result("b", 90)], best, per_tick)
    assert [r["name"] for r in rows] == ["a", "b", "oracle/30s", "oracle"]
    by = {r["name"]: r for r in rows}
    assert by["a"]["x_oracle"] == pytest.approx(1.5) and by["a"]["x_oracle_tick"] == 1.2
    # A policy may undercut the oracles (by violating the SLO): ratios below 1 are kept.
    assert by["b"]["x_oracle"] == pytest.approx(0.9)
    assert by["oracle"]["x_oracle"] == 1.0 and by["oracle/30s"]["x_oracle_tick"] == 1.0


@pytest.mark.parametrize(
    ("why", "costs", "expected"),
    [
        ("equal traces: the ratio of the sums is each trace's ratio", [(150, 100), (150, 100)],
         1.5),
        ("the sum is weighted by cost, not a mean of ratios: a cheap trace at 3x counts little",
         [(300, 100), (1000, 1000)], 1300 / 1100),
    ],
)
def test_summed_ratios_are_ratios_of_sums(
    why: str, costs: list[tuple[float, float]], expected: float
) -> None:
    per_trace = [
        score([result("p", ours, violations=3, reversals=1, dropped=10.0)],
              result("oracle", floor), result("oracle/30s", floor))
        for ours, floor in costs
    ]
    summed = {r["name"]: r for r in total(per_trace)}
    assert summed["p"]["x_oracle"] == pytest.approx(expected), why
    assert summed["p"]["instance_seconds"] == sum(ours for ours, _ in costs)
    assert summed["p"]["slo_violation_seconds"] == 3 * len(costs)
    assert summed["p"]["reversals"] == len(costs)
    # dropped % over all offered requests, not a mean of the traces' percentages
    assert summed["p"]["dropped_percent"] == pytest.approx(100 * 10 * len(costs)
                                                           / (1000 * len(costs)))


def test_no_traces_no_rows_and_a_zero_oracle_gives_no_ratio() -> None:
    assert total([]) == []
    rows = score([result("p", 10)], result("oracle", 0), result("oracle/30s", 0))
    assert rows[0]["x_oracle"] is None and rows[0]["x_oracle_tick"] is None


def test_per_tick_oracle_costs_between_the_oracle_and_a_held_pool() -> None:
    # Demand alternating every 10 s: the per-tick oracle must hold each 30 s at its peak.
    demand = ([90.0] * 10 + [900.0] * 10) * 30
    best, per_tick = oracle(demand, MODEL, 1, 20), oracle(demand, MODEL, 1, 20, block=30)
    rows = {r["name"]: r for r in score([], best, per_tick)}
    assert 1.0 < rows["oracle/30s"]["x_oracle"] <= 10 / 5.5
    assert rows["oracle/30s"]["slo_violation_seconds"] == rows["oracle"]["slo_violation_seconds"]

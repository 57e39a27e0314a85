"""The manual-change rule as a table: each row says why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autoscaler import AutoscalePolicy, InstanceView, Metrics, Observation, decide
from autoscaler.manual import ManualChange, detect_manual_change, respect_manual_change
from autoscaler.model import Recommendation, ScalingHistory

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("last", "active", "repaired", "expected", "why"),
    [
        (None, 3, False, None, "no memory of the last size: nothing to compare"),
        (3, 3, False, None, "the size the last tick left: unchanged"),
        (2, 3, False, ManualChange(from_count=2, to_count=3), "an operator added one"),
        (4, 2, False, ManualChange(from_count=4, to_count=2), "an operator removed two"),
        (2, 3, True, None, "this tick's repair explains the difference"),
        (0, 1, False, ManualChange(from_count=0, to_count=1), "from an empty pool"),
    ],
)
def test_detect(last: int | None, active: int, repaired: bool,
                expected: ManualChange | None, why: str) -> None:
    assert detect_manual_change(last, active, repaired=repaired) == expected, why


def test_reason_names_both_sizes() -> None:
    assert "(2 -> 3)" in ManualChange(from_count=2, to_count=3).reason


def test_a_kept_manual_change_blocks_scale_in_for_one_window() -> None:
    policy = AutoscalePolicy.build({"min_instances": 1, "max_instances": 6,
                                    "target_rps_per_instance": 100,
                                    "target_cpu_percent": None, "target_memory_percent": None,
                                    "scale_down_cooldown_seconds": 0,
                                    "scale_down_peak_window_seconds": 0,
                                    "scale_down_stabilization_seconds": 300})
    start = NOW - timedelta(hours=1)
    instances = tuple(InstanceView(id=f"i{n}", started_at=start) for n in range(3))
    quiet = Observation(instances=instances, aggregate=Metrics(rps=50.0))  # needs 1
    old = ScalingHistory(recommendations=(Recommendation(at=NOW - timedelta(seconds=600),
                                                         desired=1),))
    change = detect_manual_change(1, 3, repaired=False)
    assert change is not None
    kept = respect_manual_change(old, change, NOW)
    assert kept.recommendations[-1] == Recommendation(at=NOW, desired=3)
    assert decide(policy, quiet, kept, NOW).desired == 3  # inside the window: kept
    later = NOW + timedelta(seconds=301)
    assert decide(policy, quiet, kept, later).desired < 3  # the window has passed
    assert decide(policy, quiet, old, NOW).desired < 3  # the control: without the rule

"""``kongstack status`` shows a learned request-rate target as such (views.learned_target)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from autoscaler import AutoscalePolicy
from autoscaler.capacity import CapacityEstimate, CapacitySample, observe
from kongstack.cli import status
from kongstack.cli.views import learned_target
from tasks.tick.config import load_autoscale_config

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def estimate(ticks: int) -> CapacityEstimate:
    """``ticks`` settled samples of a service that serves 100/s per instance at 100 % CPU."""
    learnt = CapacityEstimate()
    for k in range(ticks):
        rps = 20.0 + 3 * k
        learnt = observe(learnt, CapacitySample(at=NOW + timedelta(seconds=30 * k),
                                                rps_per_instance=rps, cpu_percent=rps,
                                                serving=3))
    return learnt


@pytest.mark.parametrize(
    ("why", "policy", "capacity", "expected"),
    [
        ("a target set by hand wins: nothing learned to show",
         AutoscalePolicy(target_rps_per_instance=50), estimate(20), None),
        ("learning switched off", AutoscalePolicy(learn_capacity=False), estimate(20), None),
        ("no tick memory readable (no Prefect server)", AutoscalePolicy(), None, None),
        ("too few samples: the policy still works on CPU alone",
         AutoscalePolicy(), estimate(4), "- (CPU alone until confident"),
        ("confident: the rate it serves at the CPU target (72 %)",
         AutoscalePolicy(), estimate(20), "72.0 (learned: 100.0/s per instance"),
    ],
)
def test_learned_target(why: str, policy: AutoscalePolicy, capacity: CapacityEstimate | None,
                        expected: str | None) -> None:
    shown = learned_target(policy, capacity)
    if expected is None:
        assert shown is None, why
    else:
        assert shown is not None and shown.startswith(expected), (why, shown)


def test_status_names_the_learned_target(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    console = Console(width=240, record=True)
    monkeypatch.setattr(status, "console", console)
    # A policy file with only the bounds gets everything, the learned target included.
    file = tmp_path / "autoscale.yaml"
    file.write_text("policy: {min_instances: 1, max_instances: 20}\n")
    loaded = load_autoscale_config(file=file, environ={})
    status.print_policy(loaded, learned_target(loaded.policy, estimate(20)))
    rows = [line for line in console.export_text().splitlines() if "target_rps" in line]
    assert len(rows) == 1 and "72.0" in rows[0] and rows[0].rstrip(" │|").endswith("learned")

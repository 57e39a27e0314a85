"""The replay simulator and the oracle (pure; the trace files and the CLI: tests/simulation)."""

from __future__ import annotations

import pytest

from autoscaler import AutoscalePolicy
from autoscaler.presets import PRESETS
from autoscaler.replay import load_steps, oracle, simulate
from autoscaler.service_model import ServiceModel, Trace

MODEL = ServiceModel()


def step_demand(
    low: float = 100, high: float = 1000, at: int = 1200, total: int = 3600
) -> list[float]:
    return [low if t < at else high for t in range(total)]


def test_trace_is_step_hold_with_any_bin_width() -> None:
    trace = Trace("t", (0.0, 5.0, 12.5), (2.0, 4.0, 10.0))
    seconds = trace.per_second()
    # last bin keeps the previous width (7.5 s): 12.5 + 7.5 = 20 s in total
    assert len(seconds) == 20
    assert seconds[:5] == [2.0] * 5 and seconds[5:12] == [4.0] * 7
    assert seconds[12] == pytest.approx(4.0 * 0.5 + 10.0 * 0.5)
    assert sum(seconds) == pytest.approx(2 * 5 + 4 * 7.5 + 10 * 7.5)


def test_trace_rejects_bad_rows() -> None:
    with pytest.raises(ValueError, match="increase"):
        Trace("t", (0.0, 0.0), (1.0, 1.0))
    with pytest.raises(ValueError, match=">= 0"):
        Trace("t", (0.0,), (-1.0,))


def test_latency_rises_near_saturation_and_oracle_needs() -> None:
    assert MODEL.p95_ms(0.0) == 100 and MODEL.p95_ms(0.8) == pytest.approx(500)
    assert MODEL.p95_ms(1.0) == float("inf")
    assert MODEL.max_utilisation == pytest.approx(0.8)
    assert MODEL.needed(800, 1, 20) == 10 and MODEL.needed(801, 1, 20) == 11
    assert MODEL.needed(10**6, 1, 20) == 20 and MODEL.needed(0, 1, 20) == 1


def test_a_step_is_detected_and_the_default_policy_reacts() -> None:
    demand = step_demand()
    assert load_steps(demand, MODEL, 1, 20) == [(1200, 13)]
    policy = PRESETS["default"](MODEL, 1, 20)
    result = simulate(policy, demand, MODEL)
    assert result.reaction_seconds and result.reaction_seconds[0] is not None
    # detection (scrape + window + tick) plus a 30 s start-up: about two minutes, not ten
    assert 30 <= result.reaction_seconds[0] <= 180
    assert max(result.active) <= 20 and min(result.active) >= 1
    assert result.slo_violation_seconds > 0  # the step itself cannot be foreseen
    assert result.dropped_requests > 0


def test_oracle_is_a_lower_bound_on_cost_and_violations() -> None:
    demand = step_demand()
    best = oracle(demand, MODEL, 1, 20)
    assert best.slo_violation_seconds == 0 and best.dropped_requests == 0
    assert best.instance_seconds == 1200 * 2 + 2400 * 13
    for name, preset in PRESETS.items():
        result = simulate(preset(MODEL, 1, 20), demand, MODEL, name=name)
        assert result.slo_violation_seconds > best.slo_violation_seconds, name
        if result.instance_seconds < best.instance_seconds:  # cheaper only by breaking the SLO
            assert result.slo_violation_seconds > 600, name


def test_block_oracle_holds_each_block_at_its_busiest_second() -> None:
    # A 10 s spike inside the second 300 s block: the block pays for it whole, the
    # per-second oracle only for 10 s; neither violates the SLO.
    demand = [100.0] * 900
    demand[400:410] = [1000.0] * 10
    best = oracle(demand, MODEL, 1, 20)
    held = oracle(demand, MODEL, 1, 20, block=300)
    assert held.name == "oracle/300s" and held.slo_violation_seconds == 0
    assert held.active[300:600] == [13] * 300 and held.active[:300] == [2] * 300
    assert held.instance_seconds == 600 * 2 + 300 * 13
    assert best.instance_seconds == 890 * 2 + 10 * 13
    assert (held.scale_actions, held.reversals) == (2, 1)


def test_simulation_is_deterministic_and_counts_reversals() -> None:
    wave = [100.0 if (t // 900) % 2 == 0 else 900.0 for t in range(7200)]
    policy = PRESETS["hpa"](MODEL, 1, 20)
    a, b = simulate(policy, wave, MODEL), simulate(policy, wave, MODEL)
    assert a.summary() == b.summary()
    assert a.reversals >= 4  # up, down, up, down ... every 15 minutes
    assert a.scale_actions >= a.reversals


def test_policy_bounds_are_respected_in_replay() -> None:
    policy = AutoscalePolicy(min_instances=2, max_instances=5, target_rps_per_instance=70)
    result = simulate(policy, step_demand(high=5000), MODEL)
    assert min(result.active[60:]) >= 2 and max(result.ready) <= 5

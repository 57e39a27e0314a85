"""The replay simulator and the oracle (pure; the trace files and the CLI: tests/simulation)."""

from __future__ import annotations

import math

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
    # The SLO is a per-second utilisation of at most 0.9: with a 100 ms idle p95 that is
    # exactly where p95 reaches the policy's 1000 ms latency trigger.
    assert MODEL.p95_ms(0.0) == 100 and MODEL.p95_ms(0.9) == pytest.approx(1000)
    assert MODEL.p95_ms(1.0) == float("inf")
    assert MODEL.max_utilisation == pytest.approx(0.9)
    assert MODEL.needed(900, 1, 20) == 10 and MODEL.needed(901, 1, 20) == 11
    assert MODEL.needed(10**6, 1, 20) == 20 and MODEL.needed(0, 1, 20) == 1
    latency_slo = ServiceModel(slo_utilisation=None, slo_p95_ms=500)
    assert latency_slo.max_utilisation == pytest.approx(0.8)


def test_cpu_reading_follows_the_load_with_jitter_and_rare_spikes() -> None:
    readings = [MODEL.cpu_percent(0.5, k, instances=4) for k in range(2000)]
    expected = MODEL.idle_cpu_percent + (100 - MODEL.idle_cpu_percent) * 0.5
    near = [r for r in readings if abs(r - expected) <= MODEL.cpu_noise_percent]
    spikes = [r for r in readings if r > expected + 5]
    assert len(near) / len(readings) > 0.95
    # A spike hits one of the 4 instances: +25..50 % on one is +6..13 % on the mean.
    assert 0.005 < len(spikes) / len(readings) < 0.04
    assert max(readings) <= expected + MODEL.cpu_noise_percent + 13
    assert MODEL.cpu_percent(1.5, 7) >= 100.0 - MODEL.cpu_noise_percent
    assert MODEL.cpu_percent(0.0, 7) >= 0.0
    assert MODEL.cpu_percent(0.5, 7) == MODEL.cpu_percent(0.5, 7)  # repeatable


def test_a_step_is_detected_and_the_default_policy_reacts() -> None:
    demand = step_demand()
    assert load_steps(demand, MODEL, 1, 20) == [(1200, 12)]
    policy = PRESETS["default"](MODEL, 1, 20)
    result = simulate(policy, demand, MODEL)
    assert result.reaction_seconds and result.reaction_seconds[0] is not None
    # detection (scrape + window + tick) plus a 20 s start-up: about two minutes, not ten
    assert 20 <= result.reaction_seconds[0] <= 180
    assert max(result.active) <= 20 and min(result.active) >= 1
    assert result.slo_violation_seconds > 0  # the step itself cannot be foreseen
    assert result.dropped_requests > 0


def test_oracle_is_a_lower_bound_on_cost_and_violations() -> None:
    demand = step_demand()
    best = oracle(demand, MODEL, 1, 20)
    assert best.slo_violation_seconds == 0 and best.dropped_requests == 0
    assert best.instance_seconds == 1200 * 2 + 2400 * 12
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
    assert held.active[300:600] == [12] * 300 and held.active[:300] == [2] * 300
    assert held.instance_seconds == 600 * 2 + 300 * 12
    assert best.instance_seconds == 890 * 2 + 10 * 12
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


def varied_demand(total: int = 7200) -> list[float]:
    """Load that wanders between about 1 and 9 instances' worth every few minutes."""
    return [500.0 + 400.0 * math.sin(t / 300.0) * math.sin(t / 1700.0) for t in range(total)]


def test_the_replay_learns_the_capacity_the_model_has() -> None:
    # What the benchmark checks on the real traces, here on 2 h of varied load: after
    # 30 minutes the learned capacity is within 15 % of the model's 100/s per instance.
    result = simulate(PRESETS["default"](MODEL, 1, 20), varied_demand(), MODEL)
    capacity, confidence = result.learned_at(1800)
    assert capacity == pytest.approx(MODEL.capacity_rps, rel=0.15)
    assert confidence >= 0.5
    slower = MODEL.model_copy(update={"capacity_rps": 60.0})
    capacity, _ = simulate(PRESETS["default"](slower, 1, 20), varied_demand(), slower).learned_at(
        1800
    )
    assert capacity == pytest.approx(60.0, rel=0.15)


def test_the_learned_default_beats_the_hpa_baseline_on_a_step_trace() -> None:
    demand = step_demand(total=7200)
    ours = simulate(PRESETS["default"](MODEL, 1, 20), demand, MODEL)
    hpa = simulate(PRESETS["hpa"](MODEL, 1, 20), demand, MODEL)
    assert ours.slo_violation_seconds < hpa.slo_violation_seconds
    assert ours.reversals <= hpa.reversals


def test_the_replay_refreshes_the_seasonal_profile_at_midnight() -> None:
    # Three days with a x4 rise at 12:00 each day: on day 3 the profile (two days of
    # history) lets the default scale out before the rise, so it violates less than on day 2.
    day = [200.0 if (t % 86400) < 43200 else 800.0 for t in range(86400)]
    demand = day * 3
    result = simulate(PRESETS["default"](MODEL, 1, 20), demand, MODEL)
    rise_day2 = range(86400 + 43200 - 60, 86400 + 43200 + 240)
    rise_day3 = range(2 * 86400 + 43200 - 60, 2 * 86400 + 43200 + 240)
    before = [result.ready[t] for t in (2 * 86400 + 43200 - 1,)]
    assert before[0] * MODEL.capacity_rps * MODEL.max_utilisation >= 800
    short2 = sum(1 for t in rise_day2 if demand[t] > result.ready[t] * 90)
    short3 = sum(1 for t in rise_day3 if demand[t] > result.ready[t] * 90)
    assert short3 < short2


def test_oracle_per_tick_sits_between_the_oracle_and_a_policy() -> None:
    demand = varied_demand()
    best = oracle(demand, MODEL, 1, 20)
    tick = oracle(demand, MODEL, 1, 20, block=30)
    ours = simulate(PRESETS["default"](MODEL, 1, 20), demand, MODEL)
    assert tick.name == "oracle/30s"
    assert best.instance_seconds < tick.instance_seconds < ours.instance_seconds

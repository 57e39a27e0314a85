"""The memory block survives between ticks and fails safe; records land where people look."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autoscaler import AutoscalePolicy, Observation, decide
from autoscaler.forecast import build_profile
from autoscaler.learning import learn
from autoscaler.model import InstanceView, Metrics, Recommendation, ScalingHistory
from tasks.tick.memory import MemoryBlock, read_memory, save_memory
from tasks.tick.record import (
    ActionRecord,
    RecordConfig,
    TickRecord,
    artifact_markdown,
    read_counter,
)
from tasks.tick.record_task import record_tick
from tasks.tick.run import learned
from tasks.tick.scaling_log import ScalingLog

pytestmark = pytest.mark.usefixtures("prefect_harness")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def samples(path: Path) -> dict[str, float]:
    """The textfile's samples, read as node_exporter reads them."""
    from prometheus_client.parser import text_string_to_metric_families

    return {sample.name: sample.value
            for family in text_string_to_metric_families(path.read_text())
            for sample in family.samples}


def name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def test_state_round_trips_and_counts_generations() -> None:
    block = name()
    first = read_memory(block)
    assert first.is_default and "no memory block" in (first.default_reason or "")
    history = ScalingHistory(last_scale_up_at=NOW,
                             recommendations=(Recommendation(at=NOW, desired=4),))
    assert save_memory.fn(block, history, generation=first.generation, pool_size=4) == 1
    second = read_memory(block)
    assert not second.is_default
    assert second.history == history and second.last_pool_size == 4
    assert save_memory.fn(block, history, generation=second.generation, pool_size=5,
                         document_id=second.document_id) == 2  # the in-place update path
    third = read_memory(block)
    assert (third.generation, third.last_pool_size) == (2, 5)


def test_unreadable_state_is_the_safe_default_not_a_crash() -> None:
    block = name()
    MemoryBlock(recommendations=[{"at": "not a time", "desired": "x"}]).save(block)
    loaded = read_memory(block)
    assert loaded.is_default and "invalid" in (loaded.default_reason or "")


def test_default_state_forbids_scale_in_until_the_window_refills() -> None:
    policy = AutoscalePolicy(min_instances=1, max_instances=6, target_rps_per_instance=10,
                             target_cpu_percent=None, target_memory_percent=None,
                             warmup_seconds=0, scale_down_stabilization_seconds=300)

    def idle(at: datetime) -> Observation:
        return Observation(
            instances=tuple(InstanceView(id=str(i), started_at=NOW - timedelta(hours=1))
                            for i in range(4)),
            aggregate=Metrics(rps=0.0, sampled_at=at),
        )

    seeded = read_memory(name()).seeded(4, NOW)
    soon, later = NOW + timedelta(seconds=299), NOW + timedelta(seconds=301)
    assert decide(policy, idle(soon), seeded, soon).desired == 4
    assert decide(policy, idle(later), seeded, later).desired == 1
    # Without the seed (what a naive default would do) it would scale in at once:
    assert decide(policy, idle(NOW), ScalingHistory(), NOW).desired == 1


def test_record_writes_history_textfile_and_survives_failures(tmp_path: Path) -> None:
    cfg = RecordConfig(stack="t", scaling_log_path=tmp_path / "h.sqlite",
                       textfile_path=tmp_path / "metrics" / "autoscaler.prom")
    up = ActionRecord("scale_up", 3, 5, "rps 120/s vs 30/s per instance", "ok", 4.2,
                      ["kongstack-api-1 ready"])
    tick = TickRecord(started_at=NOW, current=3, desired=5, after=5, min_instances=3,
                      max_instances=6, reason="scale up 3 -> 5", metrics={"rps": 120.0},
                      driving_metric="rps", actions=[up], duration_s=4.5)
    events = record_tick.fn(cfg, tick)
    assert events == ["kongstack.autoscale.scaled-up"]
    rows = ScalingLog(cfg.scaling_log_path).recent()
    assert [(r.kind, r.from_count, r.to_count, r.outcome) for r in rows] == [
        ("scale_up", 3, 5, "ok"), ("decision", 3, 5, "ok")]
    assert rows[0].metrics == {"rps": 120.0}
    assert {k: v for k, v in samples(cfg.textfile_path).items() if "timestamp" not in k} == {
        "kongstack_autoscaler_current_instances": 5, "kongstack_autoscaler_desired_instances": 5,
        "kongstack_autoscaler_min_instances": 3, "kongstack_autoscaler_max_instances": 6,
        "kongstack_autoscaler_last_tick_success": 1,
        "kongstack_autoscaler_tick_failures_total": 0}
    failed = TickRecord(started_at=NOW, current=5, desired=5, after=5, min_instances=3,
                        max_instances=6, reason="tick failed", metrics={}, success=False,
                        actions=[ActionRecord("error", 5, 5, "boom", "failed")])
    assert record_tick.fn(cfg, failed) == ["kongstack.autoscale.tick-failed"]
    record_tick.fn(cfg, failed)
    assert read_counter(cfg.textfile_path, "kongstack_autoscaler_tick_failures_total") == 2
    assert samples(cfg.textfile_path)["kongstack_autoscaler_last_tick_success"] == 0


def test_textfile_is_valid_exposition_format(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    cfg = RecordConfig(stack="t", scaling_log_path=tmp_path / "h.sqlite",
                       textfile_path=tmp_path / "autoscaler.prom", events=False)
    record_tick.fn(cfg, TickRecord(started_at=NOW, current=3, desired=3, after=3,
                                   min_instances=3, max_instances=6, reason="hold", metrics={}))
    families = {f.name for f in text_string_to_metric_families(cfg.textfile_path.read_text())}
    assert {"kongstack_autoscaler_current_instances", "kongstack_autoscaler_tick_failures",
            "kongstack_autoscaler_last_tick_timestamp_seconds"} <= families


def _learnt_history() -> ScalingHistory:
    """Twenty settled ticks of 3 instances at rising loads (CPU = 5 + 0.95 x rps): the
    estimate, the latencies and a seasonal profile, as a live tick would hold them."""
    policy = AutoscalePolicy(min_instances=1, max_instances=6, warmup_seconds=0)
    history = ScalingHistory()
    for k in range(20):
        at = NOW + timedelta(seconds=30 * k)
        per_instance = 20.0 + 3 * k
        cpu = 5 + 0.95 * per_instance
        obs = Observation(
            instances=tuple(InstanceView(id=str(i), started_at=NOW - timedelta(hours=1),
                                         metrics=Metrics(cpu_percent=cpu, sampled_at=at))
                            for i in range(3)),
            aggregate=Metrics(rps=3 * per_instance, p95_latency_ms=120.0, sampled_at=at),
            version="sha256:one",
        )
        history = learn(policy, obs, history, at)
        history = history.record(decide(policy, obs, history, at))
    day = [(NOW - timedelta(days=d, minutes=m), 50.0 + m) for d in (1, 2) for m in range(0, 60, 5)]
    return history.with_profile(build_profile(day))


def test_learned_capacity_latencies_and_profile_survive_restarts() -> None:
    # What the tick learned must outlive the process: a restart that forgot the capacity
    # would put the policy back on CPU alone for another half hour.
    block = name()
    history = _learnt_history()
    assert history.capacity.capacity_rps == pytest.approx(100, rel=0.02)
    assert history.latencies and history.profile is not None
    save_memory.fn(block, history, generation=0, pool_size=3)
    loaded = read_memory(block)
    assert not loaded.is_default and loaded.history == history
    # ...also through the in-place update path the ticks use.
    save_memory.fn(block, history, generation=loaded.generation, pool_size=3,
                   document_id=loaded.document_id)
    assert read_memory(block).history.capacity == history.capacity


def test_the_action_artifact_names_the_learned_capacity() -> None:
    up = ActionRecord("scale_up", 3, 5, "rps 300/s vs 72/s per instance", "ok", 4.2)
    history = _learnt_history()
    tick = TickRecord(started_at=NOW, current=3, desired=5, after=5, min_instances=1,
                      max_instances=6, reason="scale up 3 -> 5", metrics={**learned(history)},
                      actions=[up], capacity=history.capacity.describe())
    text = artifact_markdown(tick, up)
    assert "**Capacity:** learned capacity 10" in text and "| learned_capacity_rps |" in text
    assert "Capacity" not in artifact_markdown(replace(tick, capacity=None), up)

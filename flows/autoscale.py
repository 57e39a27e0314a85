"""The ``autoscale`` flow: one tick = observe -> decide -> act -> record.

    lock -> load state -> reconcile (repair) -> metrics + instance stats -> decide (pure)
         -> scale up | scale down | nothing -> save state -> record

Scheduled every 30 s (prefect.yaml, deployment concurrency 1 with CANCEL_NEW) and run at once
by the Alertmanager fast path (kongstack.cli.fastpath). A file lock makes ticks exclusive also when
the flow is called directly (tests, ``kongstack`` commands): two ticks never act at once.
The flow is async only to skip the sync engine's ~1 s heartbeat join; its tasks are sync.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from autoscaler import (
    AutoscalePolicy,
    Decision,
    InstanceState,
    InstanceView,
    Metrics,
    Observation,
    decide,
    select_victims,
)
from autoscaler.model import Recommendation
from tasks.instances.base import Instance, InstanceStats
from tasks.instances.base import InstanceState as DriverState
from tasks.tick.act import (
    PoolView,
    publish_scrape_targets,
    publish_targets,
    reconcile,
    scale_down,
    scale_up,
)
from tasks.tick.config import AutoscaleConfig, given_config, load_autoscale_config
from tasks.tick.observe import (
    MetricsSnapshot,
    observe_instance_stats,
    observe_metrics,
    unavailable_snapshot,
)
from tasks.tick.record import ActionRecord, TickRecord, record_tick
from tasks.tick.state import LoadedState, load_state, save_state


def resolve_config(config: AutoscaleConfig | None, dry_run: bool | None) -> AutoscaleConfig:
    """The flow's config: the ``config`` parameter, else the one loader's (file ->
    environment); the ``dry_run`` parameter last."""
    parameters = {"dry_run": dry_run}
    loaded = (given_config(config, parameters) if config is not None
              else load_autoscale_config(parameters=parameters))
    return loaded.config


@contextmanager
def tick_lock(path: Path) -> Iterator[bool]:
    """Non-blocking exclusive lock; yields False if another tick holds it. The kernel
    releases it if the holder dies, so a killed tick never leaves a stale lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


# -- observe: map the world onto the decision core's types --------------------------------

_VIEW_STATE = {DriverState.STARTING: InstanceState.STARTING, DriverState.READY: InstanceState.READY,
               DriverState.DRAINING: InstanceState.DRAINING}


def build_observation(
    pool: PoolView, snapshot: MetricsSnapshot, stats: dict[str, InstanceStats], now: datetime
) -> Observation:
    views = []
    for inst in pool.instances:
        state = _VIEW_STATE.get(inst.state)
        if state is None:
            continue  # exited/unhealthy: reconcile's business, not the pool's size
        s = stats.get(inst.id)
        metrics = Metrics(cpu_percent=s.cpu_percent, memory_percent=s.memory_percent,
                          sampled_at=now) if s is not None else None
        views.append(InstanceView(id=inst.id, state=state, started_at=inst.started_at,
                                  metrics=metrics))
    aggregate = Metrics(
        rps=snapshot.value("rps"),
        p95_latency_ms=snapshot.value("p95_latency_ms"),
        error_rate=snapshot.value("error_rate"),
        sampled_at=snapshot.sampled_at,
    )
    return Observation(instances=tuple(views), aggregate=aggregate)


def manual_change(
    loaded: LoadedState, active: int, repairs: list[ActionRecord]
) -> ActionRecord | None:
    """The pool size moved since the last tick without us: an operator scaled by hand."""
    if loaded.last_pool_size is None or loaded.last_pool_size == active:
        return None
    if repairs:
        return None  # finishing an interrupted action explains the difference
    return ActionRecord(
        kind="manual", from_count=loaded.last_pool_size, to_count=active, outcome="ok",
        reason=(f"pool changed outside the autoscaler ({loaded.last_pool_size} -> {active}); "
                "kept: no scale-in below it for one stabilisation window"),
    )


def snapshot_dict(decision: Decision, snapshot: MetricsSnapshot) -> dict[str, Any]:
    data: dict[str, Any] = dict(decision.metric_values)
    data.update({k: v for k, v in snapshot.as_dict().items() if v is not None})
    if snapshot.missing:
        data["missing"] = snapshot.missing
    return data


# -- the tick -----------------------------------------------------------------------------


def run_tick(config: AutoscaleConfig, *, trigger: str = "schedule") -> dict[str, Any]:
    log = get_run_logger()
    with tick_lock(config.lock_file()) as held:
        if not held:
            log.info("another autoscale tick is running: this one (%s) does nothing", trigger)
            return {"skipped": True, "reason": "another tick holds the lock"}
        return _tick(config, trigger, log)


def _tick(config: AutoscaleConfig, trigger: str, log: Any) -> dict[str, Any]:
    started, t0 = datetime.now(UTC), time.monotonic()
    policy = config.policy
    loaded = load_state(config.state_block)
    if loaded.is_default:
        log.warning("state: %s; using the safe default (no scale-in for one window)",
                    loaded.default_reason)
    pool: PoolView | None = None
    try:
        pool = reconcile(config.pool, dry_run=policy.dry_run)
        ready = [i.id for i in pool.instances if i.state is DriverState.READY]
        # Engine stats take ~0.5 s (two CPU samples): read them only if the policy uses them,
        # and in parallel with the Prometheus queries.
        stats_run = (observe_instance_stats.submit(config.pool, ready)
                     if ready and _uses_utilisation(policy) else None)
        try:
            snapshot = observe_metrics(config.prometheus)
        except Exception as exc:  # Prometheus down after the retries: metrics missing
            snapshot = unavailable_snapshot(config.prometheus, f"prometheus unavailable: {exc}")
        for name, why in snapshot.missing.items():
            log.info("metric %s missing: %s", name, why)
        stats = stats_run.result() if stats_run is not None else {}
        now = datetime.now(UTC)
        observation = build_observation(pool, snapshot, stats, now)
        current = len(observation.active)
        history = loaded.seeded(current, now)
        actions = list(pool.repairs)
        manual = manual_change(loaded, current, actions)
        if manual is not None:
            actions.append(manual)
            history = history.model_copy(update={"recommendations": history.recommendations + (
                Recommendation(at=now, desired=current),)})
        decision = decide(policy, observation, history, now)
        log.info("decision: %s", decision.reason)
        action = _act(config, decision, observation)
        if action is not None:
            actions.append(action)
        acted = action is not None and action.outcome in ("ok", "partial")
        history = history.record(decision, acted=acted)
        after = action.to_count if acted and action is not None else current
        if not policy.dry_run:
            _publish(config, pool, changed=bool(actions))
            save_state(config.state_block, history, generation=loaded.generation,
                       pool_size=after, document_id=loaded.document_id)
        tick = TickRecord(
            started_at=started, current=current, desired=decision.desired, after=after,
            min_instances=policy.min_instances, max_instances=policy.max_instances,
            reason=decision.reason, metrics=snapshot_dict(decision, snapshot),
            driving_metric=decision.driving_metric, actions=actions,
            success=action is None or action.outcome != "failed",
            duration_s=time.monotonic() - t0, dry_run=policy.dry_run,
        )
        record_tick(config.record, tick)
    except Exception as exc:
        _record_failure(config, started, t0, pool, exc)
        raise
    summary = {"trigger": trigger, "current": current, "desired": decision.desired,
               "after": after, "reason": decision.reason,
               "actions": [f"{a.kind} {a.from_count}->{a.to_count} {a.outcome}" for a in actions],
               "duration_s": round(time.monotonic() - t0, 3)}
    if not actions:
        log.info("nothing to do: %s (%.2fs)", decision.reason, summary["duration_s"])
    return summary


def _uses_utilisation(policy: AutoscalePolicy) -> bool:
    return policy.strategy == "threshold" or bool(
        {"cpu", "memory"} & set(policy.target_metrics)
    )


def _act(config: AutoscaleConfig, decision: Decision,
         observation: Observation) -> ActionRecord | None:
    dry = decision.dry_run
    if decision.desired > decision.current:
        return scale_up(config.pool, to_count=decision.desired, dry_run=dry)
    if decision.desired < decision.current:
        victims = select_victims(config.policy, observation.active,
                                 decision.current - decision.desired)
        return scale_down(config.pool, victim_ids=[v.id for v in victims], dry_run=dry)
    return None


def _publish(config: AutoscaleConfig, pool: PoolView, *, changed: bool) -> None:
    if changed:
        publish_scrape_targets(config.pool, None)
    else:  # usually a no-op file comparison: cheap ticks stay cheap
        publish_targets(config.pool, _ready_addresses(pool.instances))


def _ready_addresses(instances: list[Instance]) -> list[str]:
    return [i.address for i in instances if i.state is DriverState.READY]


def _record_failure(config: AutoscaleConfig, started: datetime, t0: float,
                    pool: PoolView | None, exc: Exception) -> None:
    current = len(pool.active) if pool is not None else 0
    reason = f"tick failed: {type(exc).__name__}: {str(exc)[:300]}"
    tick = TickRecord(
        started_at=started, current=current, desired=current, after=current,
        min_instances=config.policy.min_instances, max_instances=config.policy.max_instances,
        reason=reason, metrics={}, success=False, duration_s=time.monotonic() - t0,
        actions=[ActionRecord("error", current, current, reason, "failed")],
    )
    try:
        record_tick.fn(config.record, tick)
    except Exception as record_exc:  # recording must not hide the original error
        get_run_logger().error("could not record the failed tick: %s", record_exc)


@flow(name="autoscale", description="One autoscaling tick: observe, decide, act, record.",
      retries=0, timeout_seconds=600)
async def autoscale(
    config: AutoscaleConfig | None = None,
    dry_run: bool | None = None,
    trigger: str = "schedule",
) -> dict[str, Any]:
    """One tick. ``trigger`` says why it ran ("schedule", "alert", "manual")."""
    return run_tick(resolve_config(config, dry_run), trigger=trigger)

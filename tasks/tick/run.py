"""One tick's context, and its last step: remember and record what happened.

``TickRun`` opens one set of pool clients for the tick (``pool_session``: the driver is built
once, not in every task), times the tick, and records a failed tick (history row, textfile
failure counter) before the exception leaves the flow. ``TickRun.record`` saves the memory,
points Prometheus at the ready instances and records the tick everywhere.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from autoscaler import Decision, ScalingHistory
from tasks.runlog import run_logger
from tasks.tick.config import AutoscaleConfig
from tasks.tick.decide import TickDecision
from tasks.tick.memory import TickMemory, save_memory
from tasks.tick.observe import Seen
from tasks.tick.pool import ACTIVE, PoolView, pool_clients, pool_session
from tasks.tick.record import ActionRecord, TickRecord
from tasks.tick.record_task import record_tick
from tasks.tick.targets import publish_scrape_targets


def skipped(trigger: str, reason: str = "another tick holds the lock") -> dict[str, Any]:
    run_logger("kongstack.autoscale").info(
        "another autoscale tick is running: this one (%s) does nothing (%s)", trigger, reason)
    return {"skipped": True, "reason": reason}


class TickRun:
    """``with TickRun(config, trigger) as tick: ... return tick.record(...)``"""

    def __init__(self, config: AutoscaleConfig, trigger: str) -> None:
        self.config = config
        self.trigger = trigger
        self.started_at = datetime.now(UTC)
        self._t0 = time.monotonic()
        self._session = pool_session(config.pool)

    def __enter__(self) -> TickRun:
        self.started_at, self._t0 = datetime.now(UTC), time.monotonic()
        self._session.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if isinstance(exc, Exception):
                self._record_failure(exc)
        finally:
            self._session.__exit__(kind, exc, tb)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def record(self, memory: TickMemory, view: PoolView, seen: Seen, plan: TickDecision,
               action: ActionRecord | None,
               host_actions: list[ActionRecord] | None = None) -> dict[str, Any]:
        """Remember the decision, publish the pool to Prometheus, record the tick; returns
        the tick's summary (the flow run's result). ``host_actions``: hosts added or removed
        (tasks/tick/grow.py)."""
        config, policy, decision = self.config, self.config.policy, plan.decision
        actions = [*view.repairs, *(a for _, a in view.recovered),
                   *([plan.manual] if plan.manual else []), *([action] if action else []),
                   *(host_actions or [])]
        acted = action is not None and action.outcome in ("ok", "partial")
        history = plan.history.record(decision, acted=acted)
        after = action.to_count if acted and action is not None else seen.active
        if not policy.dry_run:
            # Unchanged pool: the repaired view is current (usually a no-op file compare).
            publish_scrape_targets(config.pool, None if actions else view.scraped_addresses)
            save_memory(config.memory_block, history, generation=memory.generation,
                       pool_size=after, document_id=memory.document_id)
        record_tick(config.record, TickRecord(
            started_at=self.started_at, current=seen.active, desired=decision.desired,
            after=after, min_instances=policy.min_instances, max_instances=policy.max_instances,
            reason=decision.reason, metrics={**seen.metrics(decision), **learned(history)},
            driving_metric=decision.driving_metric, actions=actions,
            success=action is None or action.outcome != "failed",
            duration_s=self.elapsed, dry_run=policy.dry_run,
            capacity=history.capacity.describe() if policy.learn_capacity else None,
        ))
        return self._summary(decision, seen.active, after, actions)

    def _summary(self, decision: Decision, current: int, after: int,
                 actions: list[ActionRecord]) -> dict[str, Any]:
        summary = {"trigger": self.trigger, "current": current, "desired": decision.desired,
                   "after": after, "reason": decision.reason,
                   "actions": [f"{a.kind} {a.from_count}->{a.to_count} {a.outcome}"
                               for a in actions],
                   "duration_s": round(self.elapsed, 3)}
        if not actions:
            run_logger("kongstack.autoscale").info(
                "nothing to do: %s (%.2fs)", decision.reason, summary["duration_s"])
        return summary

    def _record_failure(self, exc: Exception) -> None:
        """A failed tick still leaves a history row and bumps the textfile's failure counter
        (the AutoscaleTicksFailing alert watches it)."""
        log = run_logger("kongstack.autoscale")
        policy = self.config.policy
        current = self._active_now()
        reason = f"tick failed: {type(exc).__name__}: {str(exc)[:300]}"
        tick = TickRecord(
            started_at=self.started_at, current=current, desired=current, after=current,
            min_instances=policy.min_instances, max_instances=policy.max_instances,
            reason=reason, metrics={}, success=False, duration_s=self.elapsed,
            actions=[ActionRecord("error", current, current, reason, "failed")],
        )
        try:
            record_tick.fn(self.config.record, tick)
        except Exception as record_exc:  # recording must not hide the original error
            log.error("could not record the failed tick: %s", record_exc)

    def _active_now(self) -> int:
        try:
            with pool_clients(self.config.pool) as clients:
                return sum(1 for i in clients.driver.list() if i.state in ACTIVE)
        except Exception:  # the pool itself may be what failed
            return 0


def learned(history: ScalingHistory) -> dict[str, Any]:
    """The capacity estimate's headline, kept with each decision row (``kongstack status``
    and the maintenance report read it there)."""
    estimate = history.capacity
    if estimate.capacity_rps is None:
        return {}
    return {"learned_capacity_rps": round(estimate.capacity_rps, 2),
            "learned_confidence": estimate.confidence, "learned_samples": estimate.samples}

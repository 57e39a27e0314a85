"""Decide: the tick's memory, the manual-change rule and the pure decision core, together.

    memory (a safe default seeds "keep the current size")
      -> a manual change since the last tick is kept (autoscaler.manual)
      -> autoscaler.learning.learn (this tick refines the learned capacity)
      -> autoscaler.decide(policy, observation, history, now)
"""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler import AutoscalePolicy, Decision, ScalingHistory, decide
from autoscaler.learning import learn
from autoscaler.manual import detect_manual_change, respect_manual_change
from tasks.runlog import run_logger
from tasks.tick.intent import remember_recovered
from tasks.tick.memory_state import TickMemory
from tasks.tick.observe import Seen
from tasks.tick.pool import PoolView
from tasks.tick.record import ActionRecord


@dataclass(frozen=True)
class TickDecision:
    decision: Decision
    history: ScalingHistory
    """The memory the decision was made with (the decision itself not yet remembered)."""
    manual: ActionRecord | None = None
    """The manual change this tick found and kept, if any."""


def decide_tick(policy: AutoscalePolicy, memory: TickMemory, view: PoolView,
                seen: Seen) -> TickDecision:
    log = run_logger("kongstack.autoscale")
    if memory.is_default:
        log.warning("tick memory: %s; using the safe default (no scale-in for one window)",
                    memory.default_reason)
    history = remember_recovered(memory.seeded(seen.active, seen.at), view.recovered)
    # An interrupted action recovered this tick explains a size change as much as a repair.
    change = detect_manual_change(memory.last_pool_size, seen.active,
                                  repaired=bool(view.repairs or view.recovered))
    manual = None
    if change is not None:
        history = respect_manual_change(history, change, seen.at)
        manual = ActionRecord(kind="manual", from_count=change.from_count,
                              to_count=change.to_count, outcome="ok", reason=change.reason)
    # Learn before deciding, as the replay does: this tick's rate, CPU and p95 per ready
    # instance refine the capacity estimate the rate target comes from.
    history = learn(policy, seen.observation, history, seen.at)
    decision = decide(policy, seen.observation, history, seen.at)
    log.info("decision: %s", decision.reason)
    if policy.learn_capacity and policy.target_rps_per_instance is None:
        log.info("capacity: %s", history.capacity.describe())
    return TickDecision(decision, history, manual)

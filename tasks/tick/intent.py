"""Write-ahead scaling records: a crash between acting and recording loses nothing.

    act      writes an intent (scale_up/scale_down, from -> to, the victims) and commits it,
             then changes the pool
    record   writes the history rows and closes the intent, in one SQLite transaction
    next     an intent still open means the tick died in between (a hard kill, a failed
             record): after repair has finished or undone what the act left half-done
             (tasks/tick/repair.py), ``recover_intents`` records the intent truthfully, with
             the pool size it actually reached, as an action of its own kind (never "manual"),
             and ``remember_recovered`` puts it in the decision memory so cooldowns hold

Dry runs write no intent.
"""

from __future__ import annotations

from dataclasses import replace

from prefect import task
from prefect.cache_policies import NO_CACHE

from autoscaler import ScalingHistory
from autoscaler.model import ScaleEvent
from tasks.runlog import run_logger
from tasks.tick.pool import PoolView
from tasks.tick.record import ActionRecord, RecordConfig
from tasks.tick.scaling_log import Intent, ScalingLog


def begin(log: ScalingLog | None, *, kind: str, from_count: int, to_count: int, reason: str,
          instances: list[str] | None = None) -> int | None:
    """Write the intent before acting; None for a dry run (no log)."""
    if log is None:
        return None
    return log.open_intent(kind=kind, from_count=from_count, to_count=to_count, reason=reason,
                           instances=instances or [])


def carried_out(record: ActionRecord, intent_id: int | None) -> ActionRecord:
    return record if intent_id is None else replace(record, intent_id=intent_id)


def recovered_action(intent: Intent, active: int) -> ActionRecord:
    """The truthful record of an intent whose tick died before recording it, once repair has
    run: where the pool actually is now, against what the intent wanted."""
    if active == intent.to_count:
        outcome, how = "ok", "completed"
    elif min(intent.from_count, intent.to_count) < active < max(intent.from_count,
                                                                intent.to_count):
        outcome, how = "partial", "partly completed"
    else:
        outcome, how = "failed", "not carried out"
    victims = f" (victims {', '.join(intent.instances)})" if intent.instances else ""
    return ActionRecord(
        kind=intent.kind, from_count=intent.from_count, to_count=active, outcome=outcome,
        reason=(f"{intent.kind} {intent.from_count}->{intent.to_count}{victims} written ahead at "
                f"{intent.ts.isoformat()}, {how}: the tick ended before recording it; "
                f"recorded by the next tick after repair ({intent.reason})"),
        intent_id=intent.id)


@task(name="recover-intents", cache_policy=NO_CACHE, timeout_seconds=30)
def recover_intents(config: RecordConfig, view: PoolView, *, dry_run: bool = False) -> PoolView:
    """The pool view with every open intent turned into its truthful action record (closed
    when the tick records it). A dry run only reports them."""
    intents = ScalingLog(config.scaling_log_path).open_intents()
    if not intents:
        return view
    active = len(view.active)
    recovered = [(i, recovered_action(i, active)) for i in intents]
    log = run_logger("kongstack.autoscale")
    for _, action in recovered:
        log.warning("interrupted %s found: %s", action.kind, action.reason)
    if dry_run:
        recovered = [(i, replace(a, outcome="dry_run", intent_id=None)) for i, a in recovered]
    return replace(view, recovered=recovered)


def remember_recovered(history: ScalingHistory,
                       recovered: list[tuple[Intent, ActionRecord]]) -> ScalingHistory:
    """The decision memory with each recovered scaling remembered at its intent's time (as
    the crashed tick would have): cooldowns and rate limits count it."""
    events, up_at, down_at = history.events, history.last_scale_up_at, history.last_scale_down_at
    for intent, action in recovered:
        if action.outcome not in ("ok", "partial") or action.to_count == action.from_count:
            continue
        events += (ScaleEvent(at=intent.ts, from_count=action.from_count,
                              to_count=action.to_count),)
        if action.to_count > action.from_count:
            up_at = max(t for t in (up_at, intent.ts) if t is not None)
        else:
            down_at = max(t for t in (down_at, intent.ts) if t is not None)
    return history.model_copy(update={"events": events, "last_scale_up_at": up_at,
                                      "last_scale_down_at": down_at})

"""The ``autoscale`` flow: one tick = repair -> recover intents -> observe -> decide -> act
(written ahead) -> hosts (added when the pool is full, removed when idle) -> record.

Scheduled every 30 s (prefect.yaml, deployment concurrency 1 with CANCEL_NEW) and run at once
by the Alertmanager fast path (kongstack.cli.fastpath). The tick locks (a file lock on this
machine, the pool's Prefect global concurrency limit across machines) make ticks exclusive
also when the flow is called directly (tests, ``kongstack`` commands) or by several workers.
The flow is async only to skip the sync engine's ~1 s heartbeat join; its tasks are sync.
The steps live in tasks/tick/ (ARCHITECTURE.md); the decision is the pure core's (autoscaler/).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.runlog import forward_project_logs, rename_run
from tasks.tick.act import act
from tasks.tick.config import AutoscaleConfig, resolve_config
from tasks.tick.decide import decide_tick
from tasks.tick.grow import grow_hosts
from tasks.tick.intent import recover_intents
from tasks.tick.lock import limit_name, pool_lock, tick_lock
from tasks.tick.memory import load_memory
from tasks.tick.observe import observe
from tasks.tick.repair import repair
from tasks.tick.run import TickRun, skipped
from tasks.tick.scaling_log import ScalingLog


@flow(name="autoscale", description="One autoscaling tick: observe, decide, act, record.",
      retries=0, timeout_seconds=600,
      # Renamed at the end to say what the tick did: autoscale-schedule-3to6.
      flow_run_name="autoscale-{trigger}")
async def autoscale(
    config: AutoscaleConfig | None = None,
    dry_run: bool | None = None,
    trigger: str = "schedule",
) -> dict[str, Any]:
    """One tick. ``config`` replaces the config file (tasks/tick/config.py); ``trigger`` says
    why it ran ("schedule", "alert", "manual")."""
    forward_project_logs()
    config = resolve_config(config, dry_run=dry_run)
    with tick_lock(config.lock_file()) as held:
        if not held:
            rename_run(f"autoscale-{trigger}-skipped")
            return skipped(trigger)
        async with pool_lock(limit_name(config.pool.stack),
                             lease_file=config.lock_file().with_suffix(".lease")) as shared:
            if not shared:
                rename_run(f"autoscale-{trigger}-skipped")
                return skipped(trigger, "another worker's tick holds the pool's concurrency "
                                        "limit")
            with TickRun(config, trigger) as tick:
                memory = load_memory(config.memory_block)
                view = repair(config.pool, dry_run=config.policy.dry_run)
                view = recover_intents(config.record, view, dry_run=config.policy.dry_run)
                seen = observe(config.prometheus, config.pool, view, config.policy)
                plan = decide_tick(config.policy, memory, view, seen)
                action = act(config.pool, config.policy, plan.decision, seen.observation,
                             intents=ScalingLog(config.record.scaling_log_path))
                hosts = grow_hosts(config.pool, plan.decision.desired,
                                   dry_run=config.policy.dry_run)
                summary = tick.record(memory, view, seen, plan, action, hosts)
    rename_run(tick_run_name(trigger, summary, dry_run=config.policy.dry_run))
    return summary


def tick_run_name(trigger: str, summary: dict[str, Any], *, dry_run: bool = False) -> str:
    """``autoscale-<trigger>-<before>to<after>`` (``-dry-run`` when the policy only says what
    it would do): what the run list in the UI shows for each tick."""
    name = f"autoscale-{trigger}-{summary['current']}to{summary['after']}"
    return f"{name}-dry-run" if dry_run else name

"""A scale by hand (``kongstack scale``) through the tick's own steps.

    tick lock (waits, bounded, for a running tick) -> the active instances
      -> act (tasks.tick.act.resize: scale-in victims by the policy's victim_selection)
      -> the scrape targets -> the scaling log (kind "manual", with its source)

The tick memory is left alone on purpose: the next tick finds the pool at a size it did not
leave it at and keeps the change (autoscaler.manual), cooldowns included.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from autoscaler import InstanceView
from kongstack.core.errors import StackError
from tasks.instances.hosts import HOST_LABEL
from tasks.tick.act import resize
from tasks.tick.config import AutoscaleConfig
from tasks.tick.lock import tick_lock_within
from tasks.tick.pool import ACTIVE, pool_clients, pool_session
from tasks.tick.record import ActionRecord, record_manual
from tasks.tick.targets import publish_scrape_targets

LOCK_WAIT_SECONDS = 60.0
"""How long a manual scale waits for a running tick (a tick's own timeout is 600 s, but a
normal one takes seconds)."""


def scale_by_hand(config: AutoscaleConfig, to_count: int, *, reason: str, dry_run: bool = False,
                  source: str = "cli",
                  lock_wait_seconds: float | None = None) -> ActionRecord | None:
    """Resize the pool to ``to_count`` as the tick would (None when it is that size already);
    the change is recorded unless ``dry_run``. Limits (min/max) are the caller's to check."""
    started_at, t0 = datetime.now(UTC), time.monotonic()
    if lock_wait_seconds is None:
        lock_wait_seconds = LOCK_WAIT_SECONDS
    with tick_lock_within(config.lock_file(), lock_wait_seconds) as held:
        if not held:
            raise StackError(f"an autoscale tick of {config.pool.stack} still holds "
                             f"{config.lock_file()} after {lock_wait_seconds:g}s: try again")
        with pool_session(config.pool):
            with pool_clients(config.pool) as clients:
                active = [InstanceView(id=i.id, state=i.state, started_at=i.started_at,
                                       host=i.labels.get(HOST_LABEL))
                          for i in clients.driver.list() if i.state in ACTIVE]
            action = resize(config.pool, config.policy, active, to_count, dry_run=dry_run,
                            as_tasks=False)
            if action is None or dry_run:
                return action
            publish_scrape_targets(config.pool)
    record_manual(config.record, action, at=started_at, reason=reason, source=source,
                  duration_s=time.monotonic() - t0)
    return action

"""A scale by hand (``kongstack scale``) through the tick's own steps.

    tick lock (waits, bounded, for a running tick on this machine)
      -> the pool lock (the pool's Prefect global concurrency limit, which every tick on every
         machine takes: waits, bounded, too) -> the active instances
      -> act (tasks.tick.act.resize: scale-in victims by the policy's victim_selection)
      -> the scrape targets -> the scaling log (kind "manual", with its source)

The tick memory is left alone on purpose: the next tick finds the pool at a size it did not
leave it at and keeps the change (autoscaler.manual), cooldowns included.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from autoscaler import InstanceView
from kongstack.core.errors import StackError
from tasks.instances.hosts import HOST_LABEL
from tasks.tick.act import resize
from tasks.tick.config import AutoscaleConfig
from tasks.tick.lock import limit_name, pool_lock_within, tick_lock_within
from tasks.tick.pool import ACTIVE, pool_clients, pool_session
from tasks.tick.record import ActionRecord, record_manual
from tasks.tick.targets import publish_scrape_targets

LOCK_WAIT_SECONDS = 60.0
"""How long a manual scale waits for a running tick (a tick's own timeout is 600 s, but a
normal one takes seconds)."""


def scale_by_hand(config: AutoscaleConfig, to_count: int, *, reason: str, dry_run: bool = False,
                  source: str = "cli", lock_wait_seconds: float | None = None,
                  pool_lock: bool | None = None) -> ActionRecord | None:
    """Resize the pool to ``to_count`` as the tick would (None when it is that size already);
    the change is recorded unless ``dry_run``. Limits (min/max) are the caller's to check.
    The pool is held as a tick holds it (``held_by_hand``)."""
    started_at, t0 = datetime.now(UTC), time.monotonic()
    with held_by_hand(config, lock_wait_seconds=lock_wait_seconds, pool_lock=pool_lock):
        action = _resize_by_hand(config, to_count, dry_run=dry_run)
        if action is None or dry_run:
            return action
    record_manual(config.record, action, at=started_at, reason=reason, source=source,
                  duration_s=time.monotonic() - t0)
    return action


@contextmanager
def held_by_hand(config: AutoscaleConfig, *, lock_wait_seconds: float | None = None,
                 pool_lock: bool | None = None) -> Iterator[None]:
    """Hold the pool the way a tick does (the file lock, and the pool's Prefect concurrency
    limit when a Prefect API is configured), so no tick acts while a person changes the pool;
    raises StackError, naming what still holds it, after ``lock_wait_seconds``.

    ``pool_lock`` default: when a Prefect API is configured (PREFECT_API_URL). Without one no
    tick can run against a server either, and the file lock excludes the ticks of this
    machine."""
    if lock_wait_seconds is None:
        lock_wait_seconds = LOCK_WAIT_SECONDS
    if pool_lock is None:
        from prefect.settings import PREFECT_API_URL

        pool_lock = bool(PREFECT_API_URL.value())
    deadline = time.monotonic() + lock_wait_seconds
    with tick_lock_within(config.lock_file(), lock_wait_seconds) as held:
        if not held:
            raise StackError(f"an autoscale tick of {config.pool.stack} still holds "
                             f"{config.lock_file()} after {lock_wait_seconds:g}s: try again")
        with _shared_lock(config, pool_lock, max(0.0, deadline - time.monotonic())) as shared:
            if not shared:
                raise StackError(
                    f"an autoscale tick of {config.pool.stack} (on another machine) still holds "
                    f"the pool's concurrency limit {limit_name(config.pool.stack)} after "
                    f"{lock_wait_seconds:g}s: try again")
            yield


@contextmanager
def _shared_lock(config: AutoscaleConfig, take: bool, timeout: float) -> Iterator[bool]:
    if not take:
        yield True
        return
    with pool_lock_within(limit_name(config.pool.stack), timeout,
                          lease_file=config.lock_file().with_suffix(".lease")) as held:
        yield held


def _resize_by_hand(config: AutoscaleConfig, to_count: int, *, dry_run: bool
                    ) -> ActionRecord | None:
    with pool_session(config.pool):
        with pool_clients(config.pool) as clients:
            active = [InstanceView(id=i.id, state=i.state, started_at=i.started_at,
                                   host=i.labels.get(HOST_LABEL))
                      for i in clients.driver.list() if i.state in ACTIVE]
        action = resize(config.pool, config.policy, active, to_count, dry_run=dry_run,
                        as_tasks=False)
        if action is not None and not dry_run:
            publish_scrape_targets(config.pool)
        return action

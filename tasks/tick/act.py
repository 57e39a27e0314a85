"""Act: change the pool the way a decision says, through the instance driver and the gateway.

    scale up    start -> wait /ready (timeout) -> gateway.add_target          (per instance)
    scale down  gateway.drain_target -> drain period -> driver.stop(grace) -> remove_target

Victims of a scale-in are chosen by the policy's ``victim_selection``. Every step is
idempotent and re-reads the world first, so a Prefect retry or the next tick after a crash
never duplicates work. ``dry_run`` reports what would happen and changes nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

import httpx
from prefect import task

from autoscaler import AutoscalePolicy, Decision, InstanceView, Observation, select_victims
from kongstack.core.errors import InstanceError
from tasks.instances.base import Instance, InstanceState
from tasks.instances.multihost import PoolFullError
from tasks.tick.intent import begin, carried_out
from tasks.tick.pool import ACTIVE, PoolConfig, pool_clients
from tasks.tick.record import ActionRecord
from tasks.tick.scaling_log import ScalingLog
from tasks.tick.task_options import POOL_CHANGING_TASK


def act(pool: PoolConfig, policy: AutoscalePolicy, decision: Decision,
        observation: Observation, *, intents: ScalingLog | None = None) -> ActionRecord | None:
    """Carry out ``decision`` (None when it keeps the size). The intent is written to
    ``intents`` (the scaling log) before the pool is touched (tasks/tick/intent.py)."""
    return resize(pool, policy, observation.active, decision.desired,
                  current=decision.current, dry_run=decision.dry_run, intents=intents,
                  reason=decision.reason)


def resize(pool: PoolConfig, policy: AutoscalePolicy, active: Sequence[InstanceView],
           to_count: int, *, current: int | None = None, dry_run: bool = False,
           as_tasks: bool = True, intents: ScalingLog | None = None,
           reason: str = "") -> ActionRecord | None:
    """Grow or shrink the pool from ``current`` (default: the ``active`` instances) to
    ``to_count``; the victims of a scale-in are the policy's ``victim_selection`` among
    ``active``. The tick's act and ``kongstack scale`` both come through here; the CLI passes
    ``as_tasks=False`` (the same steps, run in-process without a Prefect API). With
    ``intents`` (the tick's), the intent is committed before acting and the returned record
    carries its id, so recording the action closes it."""
    current = len(active) if current is None else current
    up, down = (scale_up, scale_down) if as_tasks else (scale_up.fn, scale_down.fn)
    log = None if dry_run else intents
    if to_count > current:
        intent = begin(log, kind="scale_up", from_count=current, to_count=to_count,
                       reason=reason)
        return carried_out(up(pool, to_count=to_count, dry_run=dry_run), intent)
    if to_count < current:
        victims = select_victims(policy, active, current - to_count)
        intent = begin(log, kind="scale_down", from_count=current, to_count=to_count,
                       reason=reason, instances=[v.id for v in victims])
        return carried_out(down(pool, victim_ids=[v.id for v in victims], dry_run=dry_run),
                           intent)
    return None


# -- scale up ------------------------------------------------------------------------------


@task(name="scale-up", timeout_seconds=300, **POOL_CHANGING_TASK)
def scale_up(config: PoolConfig, *, to_count: int, dry_run: bool = False) -> ActionRecord:
    """Grow the active pool to ``to_count``: idempotent (counts what already runs)."""
    started = time.monotonic()
    with pool_clients(config) as clients:
        driver, gateway = clients.driver, clients.gateway
        before = [i for i in driver.list() if i.state in ACTIVE]
        need = to_count - len(before)
        details: list[str] = []
        if need <= 0:
            return ActionRecord("scale_up", len(before), len(before),
                                f"pool already has {len(before)}", "ok")
        if dry_run:
            return ActionRecord("scale_up", len(before), to_count,
                                f"would start {need} instance(s)", "dry_run",
                                details=[f"would start {need}"])
        # Start them all first (they boot in parallel), then wait for each in turn.
        pending = [i for i in before if i.state is InstanceState.STARTING]
        fresh: list[Instance] = []
        full = ""
        for _ in range(need):
            try:
                fresh.append(driver.start())
            except PoolFullError as exc:  # the rest waits for a host (tasks/tick/grow.py)
                full = str(exc)
                details.append(f"{need - len(fresh)} not started: {full}")
                break
        failed = 0
        for inst in pending + fresh:
            try:
                ready = driver.wait_ready(inst, timeout=config.ready_timeout_seconds)
            except InstanceError as exc:
                failed += 1
                details.append(f"{inst.name}: not ready ({str(exc)[:200]}); stopped")
                driver.stop(inst.id, grace=1.0)
                continue
            gateway.add_target(ready.address)
            details.append(f"{ready.name} ready at {ready.address}, target added")
        reached = len(before) + len(fresh) - failed
        outcome = ("ok" if failed == 0 and not full
                   else ("partial" if reached > len(before) else "failed"))
        return ActionRecord("scale_up", len(before), reached,
                            f"started {len(fresh)}, {failed} failed"
                            + (", the rest found no room (pool full)" if full else ""), outcome,
                            duration_s=time.monotonic() - started, details=details)


# -- scale down ----------------------------------------------------------------------------


@task(name="scale-down", timeout_seconds=300, **POOL_CHANGING_TASK)
def scale_down(
    config: PoolConfig, *, victim_ids: list[str], dry_run: bool = False
) -> ActionRecord:
    """Drain, wait, stop and deregister ``victim_ids`` (already-gone victims count as done)."""
    started = time.monotonic()
    with pool_clients(config) as clients:
        driver, gateway = clients.driver, clients.gateway
        instances = driver.list()
        active = [i for i in instances if i.state in ACTIVE]
        victims = [i for i in instances if i.id in set(victim_ids)]
        to_count = len(active) - sum(1 for v in victims if v.state in ACTIVE)
        if dry_run:
            names = ", ".join(v.name for v in victims)
            return ActionRecord("scale_down", len(active), to_count, f"would remove {names}",
                                "dry_run", details=[f"would drain and stop {names}"])
        details: list[str] = []
        for v in victims:
            gateway.drain_target(v.address)
            details.append(f"{v.name}: drained")
        waited = wait_drained([v.address for v in victims], config, sleep=time.sleep)
        details.append(f"drain period: {waited:.1f}s")
        for v in victims:
            driver.stop(v.id, grace=config.stop_grace_seconds)
            gateway.remove_target(v.address)
            details.append(f"{v.name}: stopped (grace {config.stop_grace_seconds:g}s), removed")
        return ActionRecord("scale_down", len(active), to_count,
                            f"removed {len(victims)}", "ok",
                            duration_s=time.monotonic() - started, details=details)


_IN_FLIGHT = re.compile(r"^stock_api_in_flight_requests\s+([0-9.eE+-]+)", re.MULTILINE)


def read_in_flight(address: str, *, timeout: float) -> int | None:
    """Requests the instance is serving now, not counting this probe; None if unreadable."""
    try:
        text = httpx.get(f"http://{address}/metrics", timeout=timeout).text
    except httpx.HTTPError:
        return None
    match = _IN_FLIGHT.search(text)
    if match is None:
        return None
    return max(0, int(float(match.group(1))) - 1)  # the /metrics request counts itself


def wait_drained(
    addresses: list[str], config: PoolConfig, *, sleep: Callable[[float], None]
) -> float:
    """Wait out the drain period: at least ``drain_min_seconds`` (the gateway's own switch
    over, e.g. an nginx reload), then until no victim has a request in flight, at most
    ``drain_seconds``. An instance whose in-flight gauge cannot be read gets the full period.
    Returns the seconds waited."""
    start = time.monotonic()
    deadline = start + config.drain_seconds
    sleep(min(config.drain_min_seconds, config.drain_seconds))
    while time.monotonic() < deadline:
        counts = [read_in_flight(a, timeout=config.probe_timeout_seconds) for a in addresses]
        if all(c is not None and c == 0 for c in counts):
            break
        sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    return time.monotonic() - start

"""Repair: every tick, before deciding, whatever an earlier tick (or a crash, or an operator)
left half-done is finished or undone, so the pool converges.

    dead instance        -> replaced (stopped, a new one started, made a target), at most
                            ``max_replacements_per_tick`` per tick
    degraded instance    -> kept as it is (alive, a shared dependency is down: replacing it
                            would not help; it is not made a new target either)
    interrupted drain    -> finished (stopped, target removed)
    ready, not a target  -> registered
    target, no instance  -> removed, if kongstack created it (owner tags) and it does not
                            answer /ready
    a target kongstack did not create (an operator's own) is never touched

Each repair re-reads the world first, so a Prefect retry or the next tick never duplicates
work. ``dry_run`` reports what would be repaired and changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import httpx
from prefect import task

from kongstack.core.errors import InstanceError
from tasks.gateway.protocol import Gateway, Target, TargetHealth
from tasks.instances.base import Instance, InstanceDriver, InstanceState
from tasks.runlog import run_logger
from tasks.tick.pool import ACTIVE, PoolConfig, PoolView, pool_clients
from tasks.tick.record import ActionRecord
from tasks.tick.task_options import POOL_CHANGING_TASK


@dataclass(frozen=True)
class Repair:
    action: Literal["replace", "finish_drain", "register", "orphan_target"]
    address: str
    reason: str
    instance_id: str = ""
    state: str = ""

    def describe(self) -> str:
        return f"{self.action} {self.address}"


def drained(target: Target) -> bool:
    return target.weight == 0 or target.health is TargetHealth.DRAINING


def plan_repairs(instances: list[Instance], targets: list[Target], *,
                 max_replacements: int | None = None) -> list[Repair]:
    """What must change so that every ready instance is a live target and nothing else is.

    Pure. Order: dead instances first (they are replaced), then interrupted drains, then
    unregistered instances, then targets with no instance behind them. Only targets
    kongstack created (``Target.owned``) can become an ``orphan_target``. At most
    ``max_replacements`` dead instances are replaced; the rest wait for the next tick.
    """
    by_address = {t.address: t for t in targets}
    known = {i.address for i in instances}
    repairs: list[Repair] = []
    for inst in instances:
        target = by_address.get(inst.address)
        if inst.state in (InstanceState.EXITED, InstanceState.UNHEALTHY):
            repairs.append(Repair("replace", inst.address, f"{inst.name} is {inst.state}",
                                  inst.id, str(inst.state)))
        elif inst.state is InstanceState.DRAINING or (target is not None and drained(target)):
            repairs.append(Repair("finish_drain", inst.address,
                                  f"{inst.name} was left draining by an interrupted scale-down",
                                  inst.id, str(inst.state)))
        elif inst.state is InstanceState.READY and target is None:
            repairs.append(Repair("register", inst.address,
                                  f"{inst.name} is ready but not a gateway target",
                                  inst.id, str(inst.state)))
    replacing = [r for r in repairs if r.action == "replace"]
    if max_replacements is not None and len(replacing) > max_replacements:
        deferred = {id(r) for r in replacing[max_replacements:]}
        repairs = [r for r in repairs if id(r) not in deferred]
    for target in targets:
        if target.address not in known and target.owned:
            repairs.append(Repair("orphan_target", target.address,
                                  f"target {target.address} has no instance"))
    return repairs


def size_change(planned: Repair) -> int:
    """How a carried-out repair changes the active count (the history row's from -> to): a
    replacement adds a live instance for a dead one (which no longer counted), finishing a
    drain removes the instance if it still counted as active."""
    if planned.action == "replace":
        return 1
    if planned.action == "finish_drain" and planned.state in {str(s) for s in ACTIVE}:
        return -1
    return 0


def target_answers(address: str, *, timeout: float) -> bool:
    try:
        return httpx.get(f"http://{address}/ready", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


@task(name="repair", timeout_seconds=120, **POOL_CHANGING_TASK)
def repair(config: PoolConfig, *, dry_run: bool = False) -> PoolView:
    """Repair the pool, then return it as it now stands (instances, targets, repairs)."""
    with pool_clients(config) as clients:
        driver, gateway = clients.driver, clients.gateway
        instances = driver.list()
        targets = gateway.list_targets()
        repairs = plan_repairs(instances, targets,
                               max_replacements=config.max_replacements_per_tick)
        actions: list[ActionRecord] = []
        if not repairs:
            return PoolView(instances, targets, actions)
        log = run_logger("kongstack.autoscale")
        active = sum(1 for i in instances if i.state in ACTIVE)
        for planned in repairs:
            started = time.monotonic()
            if dry_run:
                outcome, note = "dry_run", f"would {planned.describe()}"
            else:
                outcome, note = _apply(config, driver, gateway, planned)
            log.info("repair: %s -> %s", planned.describe(), note)
            if outcome == "skipped":
                continue
            after = active + size_change(planned)
            actions.append(ActionRecord(
                kind="repair", from_count=active, to_count=after, reason=planned.reason,
                outcome=outcome, duration_s=time.monotonic() - started, details=[note]))
            active = after
        if dry_run:
            return PoolView(instances, targets, actions)
        return PoolView(driver.list(), gateway.list_targets(), actions)


def _apply(config: PoolConfig, driver: InstanceDriver, gateway: Gateway,
           planned: Repair) -> tuple[str, str]:
    if planned.action == "register":
        gateway.add_target(planned.address)
        return "ok", f"added target {planned.address}"
    if planned.action == "orphan_target":
        if target_answers(planned.address, timeout=config.probe_timeout_seconds):
            # Ours, but alive with no instance of this driver behind it (e.g. started by
            # another host's driver): a live backend is never cut off. Respect it.
            return "skipped", f"kept {planned.address}: no instance here but answers /ready"
        gateway.remove_target(planned.address)
        return "ok", f"removed target {planned.address} (no instance behind it)"
    if planned.action == "finish_drain":
        driver.stop(planned.instance_id, grace=config.stop_grace_seconds)
        gateway.remove_target(planned.address)
        return "ok", f"finished interrupted scale-down of {planned.address}"
    if planned.action == "replace":
        gateway.remove_target(planned.address)
        driver.stop(planned.instance_id, grace=1.0)  # already dead or unhealthy
        new = driver.start()
        try:
            ready = driver.wait_ready(new, timeout=config.ready_timeout_seconds)
        except InstanceError:
            driver.stop(new.id, grace=1.0)
            raise
        gateway.add_target(ready.address)
        return "ok", f"replaced {planned.address} ({planned.state}) with {ready.address}"
    raise ValueError(f"unknown repair action {planned.action!r}")

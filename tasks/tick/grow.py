"""The tick's host step (after act): add a host when the pool is full, carry on with hosts
being made or removed, remove added hosts that stayed idle. Never waits for a host.

    adopt     hosts the factory made (found by their tags) that no record names: a tick
              died between making and recording one; they are recorded and carried on
    advance   every pending host one step further (the factory returns at once); one still
              pending after ``provision_timeout_seconds`` is failed
    finish    every removing host one step further; "gone" drops its record
    decide    autoscaler.hostgrowth.host_need on the hosts' loads and the added hosts
    act       add: the record is written (pending) *before* the factory's first call;
              remove: written (removing) before the factory is asked; both started only

Every change is an ActionRecord (kinds add_host / remove_host; from/to = the pool's hosts)
in the tick's history, its artifact and ``kongstack status``. A factory error (quota, ARM
down) is a failed action with its reason; the pool keeps working on the hosts it has.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from autoscaler.hostgrowth import AddedHost, GrowthLimits, HostNeed, host_need
from autoscaler.placement import HostLoad
from kongstack.core.errors import StackError
from tasks.instances.added import (
    AddedHostRecord,
    AddedHostStore,
    HostFactory,
    HostGrowthConfig,
    Progress,
    RecordState,
    make_factory,
    parse_time,
)
from tasks.instances.hosts import HostStateStore
from tasks.instances.multihost import MultiHostDriver
from tasks.runlog import run_logger
from tasks.tick.pool import PoolConfig, pool_clients
from tasks.tick.record import ActionRecord


@task(name="grow-hosts", cache_policy=NO_CACHE, timeout_seconds=120)
def grow_hosts(pool: PoolConfig, desired: int, *, dry_run: bool = False) -> list[ActionRecord]:
    """The host step of one tick (see the module docstring); [] without ``pool.growth``."""
    if pool.growth is None:
        return []
    with pool_clients(pool) as clients:
        driver = clients.driver
        loads = driver.loads() if isinstance(driver, MultiHostDriver) else []
    growth = HostGrowth(pool, pool.growth, datetime.now(UTC))
    try:
        factory = make_factory(pool.growth, pool.stack)
    except Exception as exc:  # a bad credential or a missing SDK: say so, keep the pool
        return [growth.failure("add_host", f"host factory {pool.growth.provider}: {exc}")]
    try:
        return growth.run(factory, loads, desired, dry_run=dry_run)
    finally:
        factory.close()


class HostGrowth:
    """One tick's pass over the added hosts (kept in ``pool.added_hosts_file()``)."""

    def __init__(self, pool: PoolConfig, config: HostGrowthConfig, now: datetime) -> None:
        self.pool, self.config, self.now = pool, config, now
        self.store = AddedHostStore(pool.added_hosts_file())
        self.log = run_logger("kongstack.autoscale")
        self.actions: list[ActionRecord] = []

    @property
    def stamp(self) -> str:
        return self.now.isoformat(timespec="seconds")

    def host_count(self, records: list[AddedHostRecord]) -> int:
        return len(self.pool.hosts) + sum(1 for r in records if r.state == "ready")

    def run(self, factory: HostFactory, loads: list[HostLoad], desired: int, *,
            dry_run: bool) -> list[ActionRecord]:
        records = self.store.load()
        if not dry_run:
            records = self._adopt(factory, records)
            records = self._advance(factory, records)
        used = {h.name: h.used for h in loads}
        for rec in records:  # idle since: the first tick that saw it run nothing
            empty = rec.state == "ready" and used.get(rec.name, 0) == 0
            rec.idle_since = (rec.idle_since or self.stamp) if empty else None
        limits = GrowthLimits(self.config.max_added_hosts, self.config.idle_cooldown_seconds,
                              self.config.retry_seconds)
        views = [AddedHost(r.name, r.state, used.get(r.name, 0), parse_time(r.idle_since),
                           parse_time(r.changed_at), r.detail or None) for r in records]
        active = sum(h.used for h in loads)
        need = host_need(limits, loads, views, desired=desired, active=active, now=self.now)
        if need.action in ("add", "remove"):
            self.log.info("hosts: %s", need.reason)
        if dry_run:
            if need.action in ("add", "remove"):
                kind = f"{need.action}_host"
                before = self.host_count(records)
                after = before + 1 if need.action == "add" else self.host_count(
                    [r for r in records if r.name != need.host])
                self.actions.append(ActionRecord(kind, before, after, need.reason, "dry_run"))
            return self.actions
        if need.action == "add":
            records = self._add(factory, records, need)
        elif need.action == "remove" and need.host is not None:
            records = self._remove(factory, records, need)
        else:
            self.store.save(records)  # idle_since
        return self.actions

    # -- steps -------------------------------------------------------------------------------

    def _adopt(self, factory: HostFactory, records: list[AddedHostRecord]
               ) -> list[AddedHostRecord]:
        try:
            found = factory.existing()
        except Exception as exc:  # the provider is down: carry on with what is recorded
            self.actions.append(self.failure("add_host", f"cannot list added hosts: {exc}",
                                             self.host_count(records)))
            return records
        known = {r.name for r in records}
        for name in sorted(set(found) - known):
            self.log.warning("host %s was made for the pool but never recorded (a tick died "
                             "in between): carrying on with it", name)
            records.append(AddedHostRecord(name, "pending", self.stamp, self.stamp,
                                           "found by its tags; adopted"))
        self.store.save(records)
        return records

    def _advance(self, factory: HostFactory, records: list[AddedHostRecord]
                 ) -> list[AddedHostRecord]:
        current: list[AddedHostRecord | None] = list(records)
        for index, rec in enumerate(records):
            if rec.state == "pending":
                current[index] = self._step(rec, factory.advance, "add_host", records)
            elif rec.state == "removing":
                current[index] = self._step(rec, factory.remove, "remove_host", records)
            else:
                continue
            self.store.save([r for r in current if r is not None])  # each step, as it lands
        return [r for r in current if r is not None]

    def _step(self, rec: AddedHostRecord, call: Callable[[AddedHostRecord], Progress],
              kind: str, records: list[AddedHostRecord]) -> AddedHostRecord | None:
        """One factory call for ``rec``; None once it is gone."""
        before = self.host_count(records)
        started = time.monotonic()
        try:
            progress = call(rec)
        except Exception as exc:  # one step failed: retried next tick (steps are idempotent)
            progress = Progress(rec.state, f"step failed, retried next tick: "
                                f"{type(exc).__name__}: {str(exc)[:300]}")
            self.actions.append(ActionRecord(kind, before, before, progress.detail, "failed",
                                             time.monotonic() - started, [rec.name]))
        memo = {**rec.memo, **progress.memo}
        if progress.state == "pending" and self._overdue(rec):
            progress = Progress("failed", f"not ready after "
                                f"{self.config.provision_timeout_seconds:.0f}s "
                                f"({progress.detail})")
        if progress.state == rec.state:
            return replace(rec, detail=progress.detail, memo=memo)
        outcome, after = {"ready": ("ok", before + 1), "failed": ("failed", before)}.get(
            progress.state, ("ok", before))
        verb = {"ready": f"host {rec.name} ready: added to the pool",
                "failed": f"host {rec.name} failed: {progress.detail}",
                "gone": f"host {rec.name} removed"}.get(progress.state, progress.detail)
        self.actions.append(ActionRecord(kind, before, after, verb, outcome,
                                         time.monotonic() - started, [progress.detail]))
        (self.log.error if outcome == "failed" else self.log.info)("hosts: %s", verb)
        if progress.state == "gone":
            self._forget(rec.name)
            return None
        state: RecordState = "failed" if progress.state == "failed" else (
            "ready" if progress.state == "ready" else rec.state)
        return replace(rec, state=state, changed_at=self.stamp, detail=progress.detail,
                       memo=memo, host=(progress.host.model_dump(mode="json")
                                        if progress.host else rec.host))

    def _forget(self, name: str) -> None:
        """Drop what the pool remembers of a removed host (its last instances, leftovers):
        a later host of the same name starts clean."""
        store = HostStateStore(self.pool.host_state_file())
        records = store.load()
        if records.pop(name, None) is not None:
            store.save(records)

    def _overdue(self, rec: AddedHostRecord) -> bool:
        since = parse_time(rec.since)
        return since is not None and (
            (self.now - since).total_seconds() > self.config.provision_timeout_seconds)

    def _add(self, factory: HostFactory, records: list[AddedHostRecord], need: HostNeed
             ) -> list[AddedHostRecord]:
        name = self._free_name(records)
        rec = AddedHostRecord(name, "pending", self.stamp, self.stamp, "add started")
        records = [*records, rec]
        self.store.save(records)  # write-ahead: the next tick carries on from here
        before = self.host_count(records)
        self.actions.append(ActionRecord("add_host", before, before, need.reason, "pending",
                                         details=[f"adding host {name}"]))
        return self._advance(factory, records)

    def _remove(self, factory: HostFactory, records: list[AddedHostRecord], need: HostNeed
                ) -> list[AddedHostRecord]:
        before = self.host_count(records)
        records = [replace(r, state="removing", changed_at=self.stamp, detail=need.reason)
                   if r.name == need.host else r for r in records]
        self.store.save(records)  # write-ahead: no instance is placed on it from now on
        self.actions.append(ActionRecord("remove_host", before, self.host_count(records),
                                         need.reason, "pending",
                                         details=[f"removing host {need.host}"]))
        return self._advance(factory, records)

    def _free_name(self, records: list[AddedHostRecord]) -> str:
        taken = {r.name for r in records} | {h.name for h in self.pool.hosts}
        for n in range(1, 1000):
            name = f"{self.config.name_prefix}-{n}"
            if name not in taken:
                return name
        raise StackError("no free name for another added host")

    def failure(self, kind: str, reason: str, hosts: int | None = None) -> ActionRecord:
        count = len(self.pool.hosts) if hosts is None else hosts
        self.log.error("hosts: %s", reason)
        return ActionRecord(kind, count, count, reason, "failed")

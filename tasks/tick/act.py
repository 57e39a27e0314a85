"""Act: change the backend pool through the instance driver and the gateway.

    scale up    start -> wait /ready (timeout) -> gateway.add_target          (per instance)
    scale down  gateway.drain_target -> drain period -> driver.stop(grace) -> remove_target
    reconcile   every tick, before deciding: whatever an earlier tick (or a crash, or an
                operator) left half-done is finished or undone, so the pool converges

Every step is idempotent and re-reads the world first, so a Prefect retry or the next tick
after a crash never duplicates work. Live clients are built inside each task from the
config (never passed as task arguments). ``dry_run`` reports what would happen and changes
nothing.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kongstack.core.errors import GatewayError, InstanceError
from kongstack.core.settings import LocalSettings
from tasks.gateway.protocol import Gateway, Target, TargetHealth
from tasks.instances.base import Instance, InstanceDriver, InstanceState
from tasks.tick.record import ActionRecord

ACTIVE = (InstanceState.STARTING, InstanceState.READY)
"""Instance states that count toward the pool size."""


class PoolConfig(BaseModel):
    """How the autoscaler reaches the pool: which driver and gateway, and the act timings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stack: str = Field(default="kongstack", pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    driver: Literal["auto", "docker", "process"] = "auto"
    gateway: Literal["auto", "nginx", "kong"] = "auto"
    local: dict[str, Any] = Field(
        default_factory=dict, description="LocalSettings overrides (home, ports, image...)"
    )
    redis_url: str | None = None
    data_dir: Path | None = None
    base_port: int | None = Field(default=None, ge=1024, le=65000)
    cpus: float | None = Field(default=None, gt=0, description="CPU limit per container")
    memory: str | None = Field(default=None, description="memory limit per container, e.g. 256m")
    instance_env: dict[str, str] = Field(default_factory=dict)
    gateway_options: dict[str, Any] = Field(default_factory=dict)
    ready_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    drain_seconds: float = Field(default=10.0, ge=0, le=3600, description="max drain period")
    drain_min_seconds: float = Field(default=1.0, ge=0, description="gateway switch-over time")
    stop_grace_seconds: float = Field(default=10.0, ge=0, le=600)
    probe_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    file_sd_path: Path | None = Field(
        default=None, description="Prometheus file_sd JSON (default under the local home)"
    )

    @field_validator("local")
    @classmethod
    def _known_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(LocalSettings.model_fields))
        if unknown:
            raise ValueError(f"unknown LocalSettings field(s): {', '.join(unknown)}")
        return value

    def settings(self) -> LocalSettings:
        return LocalSettings(**self.local)

    def scrape_file(self) -> Path:
        return self.file_sd_path or self.settings().home / "prometheus/targets/stock_api.json"


def build_driver(config: PoolConfig) -> InstanceDriver:
    from tasks.instances.factory import make_driver

    return make_driver(
        config.driver,
        settings=config.settings(),
        stack=config.stack,
        redis_url=config.redis_url,
        data_dir=config.data_dir,
        env=config.instance_env or None,
        base_port=config.base_port,
        cpus=config.cpus,
        memory=config.memory,
    )


def build_gateway(config: PoolConfig) -> Gateway:
    from tasks.gateway.factory import make_gateway

    kind = config.gateway
    if kind == "auto":  # Kong when one is configured, else the local nginx
        kind = "kong" if config.gateway_options.get("admin_url") or os.environ.get(
            "KONG_ADMIN_URL") else "nginx"
    gateway: Gateway = make_gateway(
        kind, stack=config.stack, settings=config.settings(), **config.gateway_options
    )
    return gateway


@dataclass(frozen=True)
class PoolView:
    """The pool after reconciliation."""

    instances: list[Instance]
    targets: list[Target]
    repairs: list[ActionRecord] = field(default_factory=list)

    @property
    def active(self) -> list[Instance]:
        return [i for i in self.instances if i.state in ACTIVE]


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


def plan_repairs(instances: list[Instance], targets: list[Target]) -> list[Repair]:
    """What must change so that every ready instance is a live target and nothing else is.

    Pure. Order: dead instances first (they are replaced), then interrupted drains, then
    unregistered instances, then targets with no instance behind them.
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
    for target in targets:
        if target.address not in known:
            repairs.append(Repair("orphan_target", target.address,
                                  f"target {target.address} has no instance"))
    return repairs


def target_answers(address: str, *, timeout: float) -> bool:
    try:
        return httpx.get(f"http://{address}/ready", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


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


def publish_targets(config: PoolConfig, addresses: list[str]) -> bool:
    """Rewrite the Prometheus file_sd list when the set of addresses changed."""
    path = config.scrape_file()
    wanted = sorted(addresses)
    try:
        current = sorted(t for group in json.loads(path.read_text()) for t in group["targets"])
    except (OSError, ValueError, KeyError, TypeError):
        current = None
    if current == wanted:
        return False
    from tasks.monitoring import write_stock_api_targets

    write_stock_api_targets(path, wanted, {"job": "stock_api", "stack": config.stack})
    return True


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry engine/gateway hiccups; configuration and logic errors will not go away."""
    try:
        state.result()
    except (GatewayError, InstanceError, OSError, TimeoutError):
        return True
    except Exception:
        return False
    return False


_RETRY_DELAYS = [1.0, 3.0]
# Every task that changes the pool: retried on transient faults only, never cached.
_ACTING_TASK: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": _RETRY_DELAYS,
    "retry_jitter_factor": 0.3,
    "retry_condition_fn": _transient,
    "cache_policy": NO_CACHE,
}


def _log() -> Any:
    try:
        return get_run_logger()
    except Exception:  # called outside a run (unit tests): stay quiet
        import logging

        return logging.getLogger("kongstack.autoscale")


# -- reconcile -----------------------------------------------------------------------------


@task(name="reconcile", timeout_seconds=120, **_ACTING_TASK)
def reconcile(config: PoolConfig, *, dry_run: bool = False) -> PoolView:
    """Repair the pool, then return it as it now stands (instances, targets, repairs)."""
    driver, gateway = build_driver(config), build_gateway(config)
    try:
        instances = driver.list()
        targets = gateway.list_targets()
        repairs = plan_repairs(instances, targets)
        actions: list[ActionRecord] = []
        if not repairs:
            return PoolView(instances, targets, actions)
        log = _log()
        for repair in repairs:
            started = time.monotonic()
            if dry_run:
                outcome, note = "dry_run", f"would {repair.describe()}"
            else:
                outcome, note = _apply_repair(config, driver, gateway, repair)
            log.info("repair: %s -> %s", repair.describe(), note)
            if outcome == "skipped":
                continue
            active = sum(1 for i in instances if i.state in ACTIVE)
            actions.append(
                ActionRecord(
                    kind="repair",
                    from_count=active,
                    to_count=active,
                    reason=repair.reason,
                    outcome=outcome,
                    duration_s=time.monotonic() - started,
                    details=[note],
                )
            )
        if dry_run:
            return PoolView(instances, targets, actions)
        return PoolView(driver.list(), gateway.list_targets(), actions)
    finally:
        gateway.close()


def _apply_repair(config: PoolConfig, driver: Any, gateway: Any, repair: Any) -> tuple[str, str]:
    if repair.action == "register":
        gateway.add_target(repair.address)
        return "ok", f"added target {repair.address}"
    if repair.action == "orphan_target":
        if target_answers(repair.address, timeout=config.probe_timeout_seconds):
            # Not ours, but alive: an operator's backend. Respect it.
            return "skipped", f"kept {repair.address}: not ours but answers /ready"
        gateway.remove_target(repair.address)
        return "ok", f"removed target {repair.address} (no instance behind it)"
    if repair.action == "finish_drain":
        driver.stop(repair.instance_id, grace=config.stop_grace_seconds)
        gateway.remove_target(repair.address)
        return "ok", f"finished interrupted scale-down of {repair.address}"
    if repair.action == "replace":
        gateway.remove_target(repair.address)
        driver.stop(repair.instance_id, grace=1.0)  # already dead or unhealthy
        new = driver.start()
        try:
            ready = driver.wait_ready(new, timeout=config.ready_timeout_seconds)
        except InstanceError:
            driver.stop(new.id, grace=1.0)
            raise
        gateway.add_target(ready.address)
        return "ok", f"replaced {repair.address} ({repair.state}) with {ready.address}"
    raise ValueError(f"unknown repair action {repair.action!r}")


# -- scale up ------------------------------------------------------------------------------


@task(name="scale-up", timeout_seconds=300, **_ACTING_TASK)
def scale_up(config: PoolConfig, *, to_count: int, dry_run: bool = False) -> ActionRecord:
    """Grow the active pool to ``to_count``: idempotent (counts what already runs)."""
    started = time.monotonic()
    driver, gateway = build_driver(config), build_gateway(config)
    try:
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
        for _ in range(need):
            fresh.append(driver.start())
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
        outcome = "ok" if failed == 0 else ("partial" if reached > len(before) else "failed")
        return ActionRecord("scale_up", len(before), reached,
                            f"started {len(fresh)}, {failed} failed", outcome,
                            duration_s=time.monotonic() - started, details=details)
    finally:
        gateway.close()


# -- scale down ----------------------------------------------------------------------------


@task(name="scale-down", timeout_seconds=300, **_ACTING_TASK)
def scale_down(
    config: PoolConfig, *, victim_ids: list[str], dry_run: bool = False
) -> ActionRecord:
    """Drain, wait, stop and deregister ``victim_ids`` (already-gone victims count as done)."""
    started = time.monotonic()
    driver, gateway = build_driver(config), build_gateway(config)
    try:
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
    finally:
        gateway.close()


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


# -- after acting --------------------------------------------------------------------------


@task(name="publish-targets", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=1)
def publish_scrape_targets(config: PoolConfig, addresses: list[str] | None = None) -> bool:
    """Point Prometheus at the ready instances (file_sd; listed now when ``addresses`` is
    None); True if the file changed."""
    if addresses is None:
        ready = build_driver(config).list()
        addresses = [i.address for i in ready if i.state is InstanceState.READY]
    return publish_targets(config, addresses)

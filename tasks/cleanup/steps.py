"""Cleanup: plan exactly what carries this stack's owner label/tag, remove exactly that, verify.

The plan is plain data (``CleanupPlan``), shown to the approver, and the removal takes the
*approved plan* as its input: anything that appeared after the plan was made is not touched
(it is reported as "not in the approved plan"). Removal order follows dependencies: instances
leave the gateway first, then the gateway's entities, then storage, then cloud resources.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from kongstack.core import OWNER_LABEL
from kongstack.core.errors import StackError
from tasks.instances.base import InstanceDriver
from tasks.tick.pool import PoolConfig, build_driver, build_gateway

log = logging.getLogger(__name__)

ItemKind = Literal[
    "instance", "gateway_target", "gateway_entity", "gateway_process", "volume", "directory",
    "azure",
]
ORDER: tuple[ItemKind, ...] = (
    "gateway_target", "instance", "gateway_entity", "gateway_process", "volume", "directory",
    "azure",
)


def pool_config(stack: str = "kongstack", *, driver: str = "auto", gateway: str = "auto",
                local: dict[str, Any] | None = None, **extra: Any) -> PoolConfig:
    """The PoolConfig of ``stack`` (``tasks.tick.act.build_gateway`` resolves "auto" and gives
    the gateway the stack's owner tags)."""
    options = dict(extra.pop("gateway_options", None) or {})
    return PoolConfig(stack=stack, driver=driver, gateway=gateway,  # type: ignore[arg-type]
                      local=local or {}, gateway_options=options, **extra)


class CleanupConfig(BaseModel):
    """What to look at. ``pool`` says which driver and gateway the stack uses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: PoolConfig = Field(default_factory=PoolConfig)
    include_data: bool = Field(default=True, description="also remove the stock API data dir")
    include_volumes: bool = True
    topology_file: Path | None = Field(default=None, description="stack file; azure teardown "
                                       "is planned when its provider is azure")

    @property
    def stack(self) -> str:
        return self.pool.stack


@dataclass(frozen=True)
class PlanItem:
    kind: ItemKind
    key: str  # what removal addresses: instance id, address, operation, name, path
    description: str


@dataclass
class CleanupPlan:
    stack: str
    items: list[PlanItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def keys(self, kind: ItemKind) -> list[str]:
        return [i.key for i in self.items if i.kind == kind]

    def markdown(self) -> str:
        lines = [f"## Cleanup plan for stack `{self.stack}`", ""]
        if not self.items:
            lines.append("Nothing carries this stack's owner label or tag: nothing to remove.")
        for kind in ORDER:
            chosen = [i for i in self.items if i.kind == kind]
            if chosen:
                lines.append(f"**{kind.replace('_', ' ')}** ({len(chosen)})")
                lines += [f"- {i.description}" for i in chosen]
                lines.append("")
        if self.notes:
            lines += ["**Notes**"] + [f"- {n}" for n in self.notes]
        lines += ["", "Approve to remove exactly these items; deny or let it time out to keep "
                  "everything."]
        return "\n".join(lines)


@dataclass
class RemovalReport:
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.refused


def _empty_gateway_state(stack: str) -> Any:
    from tasks.gateway.kong.model import GatewayState

    return GatewayState(stack=stack, targets=())


def _entity_ops(gateway: Any, stack: str) -> list[str]:
    """Owner-tagged gateway entities, as the delete operations an empty desired state gives.
    Only gateways that keep entities (Kong) have them; nginx is a process (below)."""
    if not hasattr(gateway, "read_state"):
        return []
    result = gateway.apply(_empty_gateway_state(stack), dry_run=True)
    return [op.describe() for op in result.operations if op.kind != "target"]


def _gateway_process(gateway: Any) -> str | None:
    server = getattr(gateway, "server", None)
    if server is None or server.pid() is None:
        return None
    return f"nginx pid {server.pid()} (prefix {getattr(gateway, 'prefix', '?')})"


def _docker_client(config: CleanupConfig) -> Any:
    import docker

    return docker.DockerClient(base_url=config.pool.settings().docker_host, timeout=5)


def _volumes(config: CleanupConfig, plan: CleanupPlan) -> list[str]:
    try:
        client = _docker_client(config)
        try:
            found = client.volumes.list(filters={"label": f"{OWNER_LABEL}={config.stack}"})
            return sorted(v.name for v in found)
        finally:
            client.close()
    except Exception as exc:  # no engine here is normal (process driver)
        plan.notes.append(f"volumes not listed: engine unavailable ({type(exc).__name__})")
        return []


def data_dir(config: CleanupConfig) -> Path:
    return config.pool.data_dir or config.pool.settings().data_dir / "stock_api"


def _azure(config: CleanupConfig) -> tuple[Any, Any, str] | None:
    if config.topology_file is None:
        return None
    from kongstack.core.topology import load_topology

    topology = load_topology(config.topology_file)
    if topology.provider != "azure":
        return None
    from tasks.providers.azure.clients import subscription_from
    from tasks.providers.azure.provider import client_factory

    clients = client_factory(subscription_from(topology.azure.subscription_id))
    return clients, topology, topology.azure.resource_group


def drivers(config: CleanupConfig) -> dict[str, InstanceDriver]:
    """The drivers to look through. "auto" means both kinds: instances started as processes
    and as containers may both exist (e.g. the engine came up after a process-mode run)."""
    if config.pool.driver != "auto":
        return {config.pool.driver: build_driver(config.pool)}
    from tasks.instances.common import engine_usable

    found = {"process": build_driver(config.pool.model_copy(update={"driver": "process"}))}
    if engine_usable(config.pool.settings().docker_host) is None:
        found["docker"] = build_driver(config.pool.model_copy(update={"driver": "docker"}))
    return found


def plan_cleanup(config: CleanupConfig) -> CleanupPlan:
    """Everything owned by ``config.stack``, read from each system now."""
    plan = CleanupPlan(stack=config.stack)
    for kind, driver in drivers(config).items():
        for inst in driver.list():
            plan.items.append(PlanItem("instance", f"{kind}:{inst.id}",
                                       f"{inst.name} at {inst.address} ({inst.state}, {kind})"))
    gateway = build_gateway(config.pool)
    try:
        for target in gateway.list_targets():
            plan.items.append(PlanItem("gateway_target", target.address,
                                       f"target {target.address} ({target.health})"))
        for op in _entity_ops(gateway, config.stack):
            plan.items.append(PlanItem("gateway_entity", op, op))
        process = _gateway_process(gateway)
        if process:
            plan.items.append(PlanItem("gateway_process", "nginx", f"stop {process}"))
    finally:
        gateway.close()
    if config.include_volumes:
        for name in _volumes(config, plan):
            plan.items.append(PlanItem("volume", name, f"volume {name}"))
    directory = data_dir(config)
    if config.include_data and directory.is_dir():
        plan.items.append(PlanItem("directory", str(directory), f"directory {directory}"))
    azure = _azure(config)
    if azure is not None:
        from tasks.providers.azure.teardown import plan_teardown

        clients, topology, rg = azure
        try:
            teardown = plan_teardown(clients, rg, topology.name)
        finally:
            clients.close()
        for kind, name in teardown.resources:
            plan.items.append(PlanItem("azure", f"{kind}|{name}", f"Azure {kind} {name}"))
        if teardown.resource_group:
            plan.items.append(PlanItem("azure", f"resource group|{rg}",
                                       f"Azure resource group {rg} (only if empty afterwards)"))
        plan.notes += [f"Azure, not ours, kept: {k}" for k in teardown.kept]
    return plan


def remove_planned(config: CleanupConfig, plan: CleanupPlan) -> RemovalReport:
    """Remove the approved items only; an item that is already gone counts as removed."""
    report = RemovalReport()

    def attempt(what: str, action: Any) -> None:
        try:
            action()
            report.removed.append(what)
        except (StackError, OSError) as exc:
            report.failed.append(f"{what}: {exc}")

    by_kind = drivers(config)
    gateway = build_gateway(config.pool)
    try:
        for address in plan.keys("gateway_target"):
            attempt(f"target {address}", lambda a=address: gateway.remove_target(a))
        for key in plan.keys("instance"):
            kind, instance_id = key.split(":", 1)
            driver = by_kind.get(kind)
            if driver is None:
                report.failed.append(f"instance {instance_id}: the {kind} driver is gone")
                continue
            attempt(f"instance {instance_id}",
                    lambda d=driver, i=instance_id: d.stop(i, grace=config.pool.stop_grace_seconds))
        approved_ops = set(plan.keys("gateway_entity"))
        if approved_ops:
            now = set(_entity_ops(gateway, config.stack))
            extra = sorted(now - approved_ops)
            if extra:  # applying the empty state would also delete these: refuse all
                report.refused += [f"gateway entity {op}: not in the approved plan"
                                   for op in extra]
            else:
                attempt(f"gateway entities ({len(now)})", lambda: gateway.apply(
                    _empty_gateway_state(config.stack)))
        if plan.keys("gateway_process"):
            attempt("nginx gateway process", getattr(gateway, "stop"))  # noqa: B009
    finally:
        gateway.close()
    if plan.keys("volume"):
        client = _docker_client(config)
        try:
            for name in plan.keys("volume"):
                attempt(f"volume {name}", lambda n=name: _remove_volume(client, n))
        finally:
            client.close()
    for path in plan.keys("directory"):
        attempt(f"directory {path}", lambda p=path: shutil.rmtree(p, ignore_errors=False)
                if Path(p).exists() else None)
    _remove_azure(config, plan, report)
    return report


def _remove_volume(client: Any, name: str) -> None:
    from docker.errors import NotFound

    try:
        client.volumes.get(name).remove()
    except NotFound:
        pass


def _remove_azure(config: CleanupConfig, plan: CleanupPlan, report: RemovalReport) -> None:
    keys = plan.keys("azure")
    azure = _azure(config) if keys else None
    if azure is None:
        return
    from tasks.providers.azure.teardown import TeardownPlan, execute_teardown

    clients, topology, rg = azure
    approved = TeardownPlan(
        resources=[(k.split("|", 1)[0], k.split("|", 1)[1]) for k in keys
                   if not k.startswith("resource group|")],
        resource_group=f"resource group|{rg}" in keys,
    )
    try:
        report.removed += execute_teardown(clients, rg, topology.name, approved, log)
    except StackError as exc:
        report.failed.append(f"azure: {exc}")
    finally:
        clients.close()


def verify_removed(config: CleanupConfig, plan: CleanupPlan) -> list[str]:
    """Planned items that still exist (empty list = verified)."""
    now = plan_cleanup(config)
    present = {(i.kind, i.key) for i in now.items}
    return [i.description for i in plan.items if (i.kind, i.key) in present]


# -- the cleanup flow's Prefect tasks ----------------------------------------------------------


@task(name="plan-cleanup", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def plan_task(config: CleanupConfig) -> CleanupPlan:
    plan = plan_cleanup(config)
    create_markdown_artifact(plan.markdown(), key="cleanup-plan",
                             description=f"cleanup plan: {len(plan.items)} item(s)")
    return plan


@task(name="remove-planned", cache_policy=NO_CACHE)
def remove_task(config: CleanupConfig, plan: CleanupPlan) -> RemovalReport:
    return remove_planned(config, plan)


@task(name="verify-removed", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 5])
def verify_task(config: CleanupConfig, plan: CleanupPlan) -> list[str]:
    return verify_removed(config, plan)


def outcome(status: str, plan: CleanupPlan, **extra: Any) -> dict[str, Any]:
    """The run's result, also published as the ``cleanup-outcome`` artifact."""
    create_markdown_artifact(
        f"{plan.markdown()}\n\n**Outcome:** {status}\n\n"
        + "\n".join(f"- {k}: {v}" for k, v in extra.items()),
        key="cleanup-outcome", description=f"cleanup {status}",
    )
    return {"status": status, "planned": [i.description for i in plan.items], **extra}

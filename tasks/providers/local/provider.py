"""The local provider behind the ``Provider`` protocol: every host of the topology is this
machine (``LocalStack`` starts what is missing; ``verify_local`` checks it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kongstack.core.settings import LocalSettings
from kongstack.core.topology import Topology
from tasks.gateway.kong.diff import CurrentState
from tasks.gateway.kong.diff import plan as gateway_plan
from tasks.providers.local.stack import LocalStack
from tasks.providers.local.verify import check_names, verify_local
from tasks.providers.protocol import (
    DeployPlan,
    Installed,
    PlannedStep,
    Provisioned,
    Registered,
    Verified,
)

LogFn = Callable[[str], None]


@dataclass
class LocalProvider:
    topo: Topology
    settings: LocalSettings
    log: LogFn = print

    @property
    def stack(self) -> LocalStack:
        return LocalStack(self.topo, self.settings, self.log)

    def plan(self) -> DeployPlan:
        stack = self.stack
        hosts = ", ".join(vm.name for vm in self.topo.vms)
        state = stack.desired_gateway_state(planned=True)
        return DeployPlan(stack=self.topo.name, provider="local", steps=(
            PlannedStep(name="provision", actions=(
                f"this machine hosts {hosts}",
                *(f"create directory {d}" for d in stack.missing_directories()))),
            PlannedStep(name="install", actions=tuple(stack.install_plan())),
            PlannedStep(name="register", actions=(
                *(f"gateway: ensure {op.kind} {op.name}"
                  for op in gateway_plan(CurrentState(), state)),
                "consumers: a key created in each Secret block that has none ("
                + ", ".join(self.topo.key_secret(c) for c in self.topo.consumers) + ")",
                "gateway: the installed stock API instances as targets",
                "Prometheus file_sd: the installed stock API instances")),
            PlannedStep(name="verify", actions=tuple(check_names(stack))),
        ))

    def provision(self) -> Provisioned:
        return self.stack.provision()

    def install(self, provisioned: Provisioned) -> Installed:
        return self.stack.install()

    def register(self, provisioned: Provisioned, installed: Installed) -> Registered:
        stack = self.stack
        addresses = [c.url.removeprefix("http://") for c in installed.components
                     if c.role == "stock-api"]
        changes = stack.register(addresses)
        consumers = stack.consumers()
        return Registered(changes=(*consumers.changes, *changes),
                          notes=tuple(f"warning: {w}" for w in consumers.warnings),
                          urls={"stock API (gateway)": f"{stack.gateway_url()}/api/stocks"})

    def verify(self, provisioned: Provisioned, installed: Installed) -> Verified:
        return verify_local(self.stack, list(installed.components))

"""The deploy steps every provider offers, and what each step returns.

    plan() -> DeployPlan                       what a run would do (the dry run prints it)
    provision() -> Provisioned                 the hosts
    install(provisioned) -> Installed          the components on them
    register(provisioned, installed) -> Registered   the gateway's state and targets
    verify(provisioned, installed) -> Verified       a real request, and every health check

Results are typed and JSON-able (the resume markers store them). A step that fails part-way
returns its result with ``error`` set and whatever it did achieve (the hosts that came up,
the components that started): what exists is part of the result, never an attribute hung on
an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from kongstack.core.topology import Host

StepName = Literal["provision", "install", "register", "verify"]
STEPS: tuple[StepName, ...] = ("provision", "install", "register", "verify")


@dataclass
class Component:
    """One running (or missing) part of the stack, as install or verify saw it."""

    name: str
    role: str
    status: str  # "started" | "running" | "healthy" | "unhealthy" | "substituted" | "absent"
    url: str = ""
    detail: str = ""


class StepResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    changes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    """Seen, not changed: drift, substitutions."""
    error: str = ""
    """Why the step stopped (empty: it completed); the other fields say what exists."""

    @property
    def ok(self) -> bool:
        return not self.error


class Provisioned(StepResult):
    hosts: tuple[Host, ...] = ()


class Installed(StepResult):
    components: tuple[Component, ...] = ()


class Registered(StepResult):
    urls: dict[str, str] = {}


class Verified(StepResult):
    components: tuple[Component, ...] = ()
    urls: dict[str, str] = {}


class PlannedStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StepName
    actions: tuple[str, ...]


class DeployPlan(BaseModel):
    """What a run of the provider would do, step by step, derived from the same objects the
    steps work from (desired resources, install steps per host, the gateway state, checks)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stack: str
    provider: str
    steps: tuple[PlannedStep, ...]

    def actions(self, step: StepName) -> tuple[str, ...]:
        return next((s.actions for s in self.steps if s.name == step), ())

    def render(self) -> str:
        lines = [f"deploy plan for stack {self.stack} (provider {self.provider}):"]
        for step in self.steps:
            lines.append(f"  {step.name}:")
            lines += [f"    - {a}" for a in step.actions] or ["    (nothing)"]
        return "\n".join(lines)


class Provider(Protocol):
    """A place to deploy the stack to (this machine, Azure). Every step is idempotent."""

    def plan(self) -> DeployPlan: ...

    def provision(self) -> Provisioned: ...

    def install(self, provisioned: Provisioned) -> Installed: ...

    def register(self, provisioned: Provisioned, installed: Installed) -> Registered: ...

    def verify(self, provisioned: Provisioned, installed: Installed) -> Verified: ...

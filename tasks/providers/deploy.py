"""deploy-stack's steps as Prefect tasks, and the run that sequences them.

Each task builds the topology's provider (from plain config: the topology and the local
settings, never a live client) and calls one protocol step. A step that fails part-way ends
its task run Failed with the step's typed result as the state's data, so the UI shows the
failed step and the run still knows what exists. ``DeployRun`` skips the steps an interrupted
run finished (resume markers), times each step, folds the results into the summary and stops
at the first failure, or after ``until``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
from prefect.states import Failed

from kongstack.core.errors import ConfigError, StackError
from kongstack.core.settings import LocalSettings
from kongstack.core.topology import Topology
from tasks.providers.protocol import (
    STEPS,
    DeployPlan,
    Installed,
    Provider,
    Provisioned,
    Registered,
    StepName,
    StepResult,
    Verified,
)
from tasks.providers.report import DeploySummary, ResumeMarkers
from tasks.runlog import run_logger

LogFn = Callable[[str], None]
R = TypeVar("R", bound=StepResult)


def provider_for(topology: Topology, settings: LocalSettings,
                 log: LogFn | None = None) -> Provider:
    emit = log or run_logger("kongstack.deploy").info
    if topology.provider == "azure":
        from tasks.providers.azure.provider import AzureProvider

        return AzureProvider(topology, emit)
    from tasks.providers.local.provider import LocalProvider

    return LocalProvider(topology, settings, emit)


def _outcome(result: R) -> R | State[Any]:
    """A failed step ends its task run Failed, carrying the result (what exists)."""
    return Failed(message=result.error, data=result) if result.error else result


@task(name="plan", cache_policy=NO_CACHE)
def plan_deploy(topology: Topology, settings: LocalSettings) -> DeployPlan:
    """What a run would do; read-only (the dry run prints it, a run records it)."""
    return provider_for(topology, settings).plan()


@task(name="provision", cache_policy=NO_CACHE)
def provision(topology: Topology, settings: LocalSettings) -> Provisioned | State[Any]:
    return _outcome(provider_for(topology, settings).provision())


@task(name="install", cache_policy=NO_CACHE)
def install(topology: Topology, settings: LocalSettings,
            provisioned: Provisioned) -> Installed | State[Any]:
    return _outcome(provider_for(topology, settings).install(provisioned))


@task(name="register", cache_policy=NO_CACHE)
def register(topology: Topology, settings: LocalSettings, provisioned: Provisioned,
             installed: Installed) -> Registered | State[Any]:
    return _outcome(provider_for(topology, settings).register(provisioned, installed))


@task(name="verify", cache_policy=NO_CACHE)
def verify(topology: Topology, settings: LocalSettings, provisioned: Provisioned,
           installed: Installed) -> Verified | State[Any]:
    return _outcome(provider_for(topology, settings).verify(provisioned, installed))


def marker_path(settings: LocalSettings, stack: str) -> Path:
    return settings.home / "deploy" / stack / "state.json"


class DeployRun:
    """``run.step("install", Installed, install, topology, settings, provisioned)`` runs one
    step (a Prefect task inside a flow, its function outside one) or takes its result from
    the run it resumes; None means the run stops before this step (a failure, or ``until``)."""

    def __init__(self, topology: Topology, settings: LocalSettings, plan: DeployPlan, *,
                 resume: bool = True, until: StepName | str | None = None,
                 log: LogFn | None = None,
                 progress: Callable[[float], None] | None = None) -> None:
        if until is not None and until not in STEPS:
            raise ConfigError(f"until: expected one of {', '.join(STEPS)}, got {until!r}")
        self.summary = DeploySummary(stack=topology.name, provider=topology.provider,
                                     fingerprint=topology.fingerprint())
        self.plan = plan
        self.until = until
        self.resume = resume
        self.log = log or run_logger("kongstack.deploy").info
        self.markers = ResumeMarkers(marker_path(settings, topology.name),
                                     topology.fingerprint())
        self._stopped = False
        self._progress = progress
        self.log(plan.render())

    def step(self, name: StepName, kind: type[R], runs: Task[..., Any],
             *args: Any) -> R | None:
        if self._stopped:
            return None
        record = self.summary.steps[name]
        if self.resume and self.markers.done(name):
            result = kind.model_validate(self.markers.output(name) or {})
            self.summary.apply(name, result)
            record.status, record.changes = "skipped", []
            self.log(f"[{name}] done in the interrupted run: skipped (resume)")
            return self._after(name, result)
        if self.summary.resumed_from is None and self.markers.previous_incomplete and self.resume:
            self.summary.resumed_from = name
        self.log(f"[{name}] starting")
        started = time.monotonic()
        outcome = self._call(runs, args)
        record.seconds = round(time.monotonic() - started, 3)
        if isinstance(outcome, kind) and outcome.ok:
            record.status = "done"
            self.summary.apply(name, outcome)
            self.markers.mark(name, "done", output=outcome.model_dump(mode="json"))
            self.log(f"[{name}] done in {record.seconds:.2f}s: "
                     f"{'; '.join(outcome.changes) or 'no changes'}")
            return self._after(name, outcome)
        if isinstance(outcome, kind):  # failed part-way: what exists is in the result
            self.summary.apply(name, outcome)
            record.error = outcome.error
        else:
            record.error = (str(outcome) if isinstance(outcome, StackError)
                            else f"{type(outcome).__name__}: {outcome}")
        record.status = "failed"
        self.markers.mark(name, "failed", error=record.error)
        self.log(f"[{name}] FAILED: {record.error}")
        self._stopped = True
        return None

    def finish(self) -> DeploySummary:
        """The summary; a run that reached its end clears the resume markers."""
        if not self._stopped:
            self.markers.complete()
        return self.summary

    def _after(self, name: StepName, result: R) -> R:
        if self._progress is not None:
            self._progress(100.0 * (STEPS.index(name) + 1) / len(STEPS))
        if name == self.until:
            for later in STEPS[STEPS.index(name) + 1:]:
                self.summary.steps[later].status = "skipped"
            self._stopped = True
        return result

    @staticmethod
    def _call(runs: Task[..., Any], args: tuple[Any, ...]) -> Any:
        """The step's result, or the exception that stopped it."""
        outcome: Any
        try:
            if FlowRunContext.get() is not None:  # a task run of its own, visible in the UI
                outcome = runs(*args, return_state=True)
            else:
                outcome = runs.fn(*args)
            if isinstance(outcome, State):
                outcome = outcome.result(raise_on_failure=False)
        except Exception as exc:  # any failure ends the run with a report of what exists
            return exc
        return outcome

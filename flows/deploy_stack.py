"""Flow ``deploy-stack``: provision → install → register → verify → summary artifact.

The same steps run inside Prefect (each one a task, visible in the UI) or as a plain function
(:func:`deploy_local`, used by ``kongstack up``). Every step is idempotent; a second run with
nothing changed reports "no changes"; a run that failed part-way resumes at the failed step
(markers in ``var/deploy/<stack>/state.json``) and the summary says what exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from kongstack.core.errors import ConfigError, StackError
from kongstack.core.settings import LocalSettings
from kongstack.core.topology import Topology, load_topology
from tasks.providers.report import (
    STEPS,
    Component,
    DeploySummary,
    ResumeMarkers,
    hosts_from_json,
    hosts_to_json,
)
from tasks.providers.steps import Out, plan_changes, run_step

LogFn = Callable[[str], None]
ARTIFACT_KEY = "deploy-stack-summary"


def _marker_path(settings: LocalSettings, stack: str) -> Path:
    return settings.home / "deploy" / stack / "state.json"


def _apply(summary: DeploySummary, step: str, out: Out) -> None:
    """Fold one step's output into the summary."""
    record = summary.steps[step]
    record.changes = list(out.get("changes", []))
    record.notes = list(out.get("notes", []))
    if "hosts" in out:
        summary.hosts = hosts_from_json(out["hosts"])
    if "components" in out:
        summary.components = [Component(**c) for c in out["components"]]
    summary.urls.update(out.get("urls", {}))


def execute(
    topo: Topology,
    *,
    settings: LocalSettings,
    log: LogFn,
    call: Callable[[str, Topology, Out], Out],
    resume: bool = True,
    until: str | None = None,
) -> DeploySummary:
    """Run the steps in order through ``call`` (a Prefect task or a plain function)."""
    if until is not None and until not in STEPS:
        raise ConfigError(f"until: expected one of {', '.join(STEPS)}, got {until!r}")
    summary = DeploySummary(stack=topo.name, provider=topo.provider, fingerprint=topo.fingerprint())
    markers = ResumeMarkers(_marker_path(settings, topo.name), topo.fingerprint())
    carried: Out = {}
    for step in STEPS:
        if resume and markers.done(step):
            out = markers.output(step) or {}
            _apply(summary, step, out)
            summary.steps[step].status = "skipped"
            summary.steps[step].changes = []
            carried.update(out)
            log(f"[{step}] done in the interrupted run: skipped (resume)")
            continue
        if summary.resumed_from is None and markers.previous_incomplete and resume:
            summary.resumed_from = step
        log(f"[{step}] starting")
        started = time.monotonic()
        try:
            out = call(step, topo, carried)
        except Exception as exc:  # any failure ends with a report of what exists
            summary.steps[step].status = "failed"
            summary.steps[step].seconds = round(time.monotonic() - started, 3)
            summary.steps[step].error = (
                str(exc) if isinstance(exc, StackError) else f"{type(exc).__name__}: {exc}")
            partial = getattr(exc, "partial", None)
            if partial:
                _apply(summary, step, partial)
            markers.mark(step, "failed", error=summary.steps[step].error)
            log(f"[{step}] FAILED: {summary.steps[step].error}")
            return summary
        summary.steps[step].status = "done"
        summary.steps[step].seconds = round(time.monotonic() - started, 3)
        _apply(summary, step, out)
        carried.update(out)
        markers.mark(step, "done", output=out)
        what = "; ".join(out.get("changes", [])) or "no changes"
        log(f"[{step}] done in {summary.steps[step].seconds:.2f}s: {what}")
        if step == until:
            for later in STEPS[STEPS.index(step) + 1:]:
                summary.steps[later].status = "skipped"
            return summary
    markers.complete()
    return summary


def dry_run_summary(topo: Topology, settings: LocalSettings) -> DeploySummary:
    summary = DeploySummary(stack=topo.name, provider=topo.provider,
                            fingerprint=topo.fingerprint(), dry_run=True)
    for step, planned in plan_changes(topo, settings).items():
        summary.steps[step].changes = planned
        summary.steps[step].status = "planned"
    return summary


# -- plain function (kongstack up / kongstack deploy without a Prefect server) ----------------
def deploy(
    config_path: str | Path | None = None,
    *,
    dry_run: bool = False,
    resume: bool = True,
    until: str | None = None,
    settings: LocalSettings | None = None,
    log: LogFn | None = None,
) -> DeploySummary:
    topo = load_topology(config_path)
    local = settings or LocalSettings()
    emit = log or logging.getLogger("kongstack.deploy").info
    if dry_run:
        return dry_run_summary(topo, local)

    def call(step: str, t: Topology, carried: Out) -> Out:
        return run_step(step, t, carried, settings=local, log=emit)

    return execute(topo, settings=local, log=emit, call=call, resume=resume, until=until)


def deploy_local(config_path: str | Path | None = None, **kwargs: Any) -> DeploySummary:
    """Deploy the local default (``deployments/stack.yaml``) without Prefect; for the CLI."""
    return deploy(config_path, **kwargs)


# -- Prefect ---------------------------------------------------------------------------------
@task(name="deploy-step", cache_policy=NO_CACHE, task_run_name="{step}")
def step_task(step: str, topology: Topology, carried: Out, settings: LocalSettings) -> Out:
    logger = get_run_logger()
    return run_step(step, topology, carried, settings=settings, log=logger.info)


@flow(name="deploy-stack", description="Provision, install, register and verify the stack.")
def deploy_stack(
    config_path: str | None = None,
    dry_run: bool = False,
    resume: bool = True,
    until: str | None = None,
) -> dict[str, Any]:
    """Deploy the topology in ``config_path`` (default ``deployments/stack.yaml``)."""
    logger = get_run_logger()
    topo = load_topology(config_path)  # validated before anything is created
    settings = LocalSettings()
    logger.info("stack %s, provider %s, %d hosts, config %s", topo.name, topo.provider,
                len(topo.vms), topo.fingerprint())
    if dry_run:
        summary = dry_run_summary(topo, settings)
    else:
        progress: Any = create_progress_artifact(0.0, key=f"{ARTIFACT_KEY}-progress",
                                            description=f"deploy-stack {topo.name}: steps done")

        def call(step: str, t: Topology, carried: Out) -> Out:
            out = step_task.with_options(name=step)(step, t, carried, settings)
            update_progress_artifact(progress, 100.0 * (STEPS.index(step) + 1) / len(STEPS))
            return out

        summary = execute(topo, settings=settings, log=logger.info, call=call, resume=resume,
                          until=until)
    create_markdown_artifact(summary.markdown(), key=ARTIFACT_KEY,
                             description=f"deploy-stack {topo.name}: {summary.headline()}")
    logger.info(summary.headline())
    if not summary.ok and not dry_run and summary.failed_step:
        failed = summary.steps[summary.failed_step]
        raise DeployFailed(f"step {failed.name} failed: {failed.error}\n"
                           f"what exists: {', '.join(h.vm for h in summary.hosts) or 'nothing'}")
    result = summary.to_dict()
    result["hosts"] = hosts_to_json(summary.hosts)
    result["components"] = [asdict(c) for c in summary.components]
    return result


class DeployFailed(StackError):
    """The flow's failure: the summary artifact was written first."""

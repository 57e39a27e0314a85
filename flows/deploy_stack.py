"""Flow ``deploy-stack``: plan → provision → install → register → verify → summary artifact.

The provider (local or Azure, from the stack file) is behind one protocol
(tasks/providers/protocol.py); each step is a Prefect task returning a typed result. The same
steps run as plain functions in :func:`deploy` (``kongstack up`` / ``kongstack deploy``
without a Prefect server). Every step is idempotent; a second run with nothing changed
reports "no changes"; a run that failed part-way resumes at the failed step (markers in
``var/deploy/<stack>/state.json``) and the summary says what exists. ``dry_run`` returns the
plan the run would execute and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.runtime import flow_run

from kongstack.core.errors import StackError
from kongstack.core.settings import LocalSettings
from kongstack.core.topology import Topology, load_topology
from tasks.providers.deploy import (
    DeployRun,
    install,
    plan_deploy,
    provision,
    register,
    verify,
)
from tasks.providers.protocol import Installed, Provisioned, Registered, Verified
from tasks.providers.report import DeploySummary, hosts_to_json
from tasks.runlog import forward_project_logs

LogFn = Callable[[str], None]
ARTIFACT_KEY = "deploy-stack-summary"


def run_steps(topo: Topology, settings: LocalSettings, *, dry_run: bool, resume: bool,
              until: str | None, log: LogFn,
              progress: Callable[[float], None] | None = None) -> DeploySummary:
    """The plan, then (unless ``dry_run``) the four steps in order."""
    plan = plan_deploy.fn(topo, settings)
    if dry_run:
        return DeploySummary.planned(plan, topo.fingerprint())
    run = DeployRun(topo, settings, plan, resume=resume, until=until, log=log,
                    progress=progress)
    provisioned = run.step("provision", Provisioned, provision, topo, settings)
    installed = (run.step("install", Installed, install, topo, settings, provisioned)
                 if provisioned else None)
    if provisioned and installed:
        run.step("register", Registered, register, topo, settings, provisioned, installed)
        run.step("verify", Verified, verify, topo, settings, provisioned, installed)
    return run.finish()


def deploy(
    config_path: str | Path | None = None,
    *,
    dry_run: bool = False,
    resume: bool = True,
    until: str | None = None,
    settings: LocalSettings | None = None,
    log: LogFn | None = None,
) -> DeploySummary:
    """The same steps without Prefect (``kongstack up``, ``kongstack deploy``)."""
    return run_steps(load_topology(config_path), settings or LocalSettings(), dry_run=dry_run,
                     resume=resume, until=until,
                     log=log or logging.getLogger("kongstack.deploy").info)


def deploy_run_name() -> str:
    """``deploy-stack-<provider>`` (``-dry-run``): read from the run's stack file."""
    parameters = flow_run.get_parameters()
    provider: str
    try:
        provider = load_topology(parameters.get("config_path")).provider
    except (StackError, OSError):  # the run itself reports the bad config
        provider = "invalid-config"
    return f"deploy-stack-{provider}{'-dry-run' if parameters.get('dry_run') else ''}"


@flow(name="deploy-stack", description="Provision, install, register and verify the stack.",
      flow_run_name=deploy_run_name)
def deploy_stack(
    config_path: str | None = None,
    dry_run: bool = False,
    resume: bool = True,
    until: str | None = None,
) -> dict[str, Any]:
    """Deploy the topology in ``config_path`` (default ``deployments/stack.yaml``)."""
    forward_project_logs()
    logger = get_run_logger()
    topo = load_topology(config_path)  # validated before anything is created
    logger.info("stack %s, provider %s, %d hosts, config %s", topo.name, topo.provider,
                len(topo.vms), topo.fingerprint())
    artifact: Any = None if dry_run else create_progress_artifact(
        0.0, key=f"{ARTIFACT_KEY}-progress", description=f"deploy-stack {topo.name}: steps done")

    def progress(percent: float) -> None:
        update_progress_artifact(artifact, percent)

    summary = run_steps(topo, LocalSettings(), dry_run=dry_run, resume=resume, until=until,
                        log=logger.info, progress=None if dry_run else progress)
    create_markdown_artifact(summary.markdown(), key=ARTIFACT_KEY,
                             description=f"deploy-stack {topo.name}: {summary.headline()}")
    logger.info(summary.headline())
    if not summary.ok and not dry_run and summary.failed_step:
        failed = summary.steps[summary.failed_step]
        raise DeployFailed(f"step {failed.name} failed: {failed.error}\n"
                           f"what exists: {', '.join(h.vm for h in summary.hosts) or 'nothing'}")
    result = summary.to_dict()
    result["hosts"] = hosts_to_json(summary.hosts)
    return result


class DeployFailed(StackError):
    """The flow's failure: the summary artifact was written first."""

"""Serve every kongstack deployment from one process (the local default; no work pool needed).

    python -m kongstack.cli.serve

Registers deploy-stack, autoscale (every 30 s, concurrency 1 with CANCEL_NEW, plus the
alert fast-path trigger), maintenance (daily) and cleanup (on demand) with the Prefect server
in PREFECT_API_URL and runs their flow runs in subprocesses. ``kongstack up`` starts it.
The same deployments for a process work pool are in prefect.yaml.
"""

from __future__ import annotations

import sys
from typing import Any

from kongstack.core.extras import MissingExtra

AUTOSCALE_INTERVAL_SECONDS = 30
MAINTENANCE_CRON = "15 3 * * *"


def build_deployments(stack: str = "kongstack") -> list[Any]:
    """The four RunnerDeployments, matching prefect.yaml (maintenance needs [analysis])."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.events import DeploymentEventTrigger

    from flows.autoscale import autoscale
    from flows.cleanup import cleanup
    from flows.deploy_stack import deploy_stack
    from kongstack.cli.fastpath import fastpath_trigger

    fast_path = DeploymentEventTrigger(**fastpath_trigger(stack))
    deployments = [
        deploy_stack.to_deployment(
            name="deploy-stack", tags=["kongstack", "deploy"],
            parameters={"config_path": "deployments/stack.yaml"},
        ),
        autoscale.to_deployment(
            name="autoscale", tags=["kongstack", "autoscale"],
            interval=AUTOSCALE_INTERVAL_SECONDS,
            parameters={"trigger": "schedule"},
            # One tick at a time: a run that would overlap the running one is cancelled.
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
            triggers=[fast_path],
        ),
        cleanup.to_deployment(
            name="cleanup", tags=["kongstack", "cleanup"], parameters={"stack": stack},
        ),
    ]
    try:
        from flows.maintenance import maintenance
    except MissingExtra as exc:  # a base install: the other three flows still serve
        print(f"maintenance deployment not served: {exc}", file=sys.stderr)
        return deployments
    deployments.insert(2, maintenance.to_deployment(
        name="maintenance", tags=["kongstack", "maintenance"], cron=MAINTENANCE_CRON,
    ))
    return deployments


def main() -> None:
    from prefect import serve

    # pause_on_shutdown=False: `kongstack down` stops the server too, and a later `up`
    # must find the schedule active without a manual resume.
    serve(*build_deployments(), pause_on_shutdown=False)


if __name__ == "__main__":
    main()

"""Serve every kongstack deployment from one process (the local default; no work pool needed).

    python -m kongstack.cli.serve

The deployments are the ones in prefect.yaml, read from it (so the two cannot drift): name,
version, description, tags, parameters, schedules (maintenance daily at 03:15 UTC), the
autoscale tick's concurrency limit (1, CANCEL_NEW) and its alert fast-path trigger. They are
registered with the Prefect server in PREFECT_API_URL and their flow runs run in
subprocesses. ``kongstack up`` starts it. Only the work pool (prefect.yaml's, for
``prefect deploy`` and a worker) does not apply: serve runs the flows itself.
"""

from __future__ import annotations

import importlib
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from kongstack.core.errors import ConfigError
from kongstack.core.extras import MissingExtra
from kongstack.core.settings import REPO_ROOT
from kongstack.core.yamlfile import load_yaml

PREFECT_YAML = REPO_ROOT / "prefect.yaml"
RUNNER_PREFETCH_SECONDS = 3.0
"""How early the runner takes a scheduled run (Prefect's default: 10 s). A taken run is
Pending and holds the deployment's concurrency slot until its time, which refuses the alert
fast path; 3 s still covers the process start on a quiet host (~1-2 s)."""


def deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """prefect.yaml's ``deployments:`` entries, as written."""
    specs = load_yaml(path, what="Prefect deployments file").get("deployments")
    if not isinstance(specs, list) or not specs:
        raise ConfigError(f"{path}: deployments: expected a non-empty list")
    return specs


def load_flow(entrypoint: str) -> Any:
    """``flows/autoscale.py:autoscale`` -> the flow object, imported as a module (an install
    without the flow's extra raises MissingExtra here)."""
    file, _, attr = entrypoint.partition(":")
    module = file.removesuffix(".py").replace("/", ".")
    return getattr(importlib.import_module(module), attr)


def schedule(spec: dict[str, Any]) -> Any:
    """One prefect.yaml ``schedules:`` entry (interval in seconds, or cron/rrule, with
    timezone, active...) as a Prefect Schedule."""
    from prefect.schedules import Schedule

    fields = dict(spec)
    if isinstance(fields.get("interval"), int | float):
        fields["interval"] = timedelta(seconds=fields["interval"])
    return Schedule(**fields)


def build_deployment(spec: dict[str, Any]) -> Any:
    """The RunnerDeployment for one prefect.yaml entry."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.events import DeploymentEventTrigger

    limit = spec.get("concurrency_limit")
    return load_flow(spec["entrypoint"]).to_deployment(
        name=spec["name"], version=spec.get("version"), description=spec.get("description"),
        tags=spec.get("tags"), parameters=spec.get("parameters"),
        schedules=[schedule(s) for s in spec.get("schedules") or []],
        concurrency_limit=ConcurrencyLimitConfig(**limit) if isinstance(limit, dict) else limit,
        triggers=[DeploymentEventTrigger(**t) for t in spec.get("triggers") or []],
    )


def build_deployments(path: Path = PREFECT_YAML) -> list[Any]:
    """Every deployment in prefect.yaml; one whose flow needs a missing extra (maintenance
    needs [analysis]) is left out with a message, the others still serve."""
    deployments = []
    for spec in deployment_specs(path):
        try:
            deployments.append(build_deployment(spec))
        except MissingExtra as exc:
            print(f"{spec['name']} deployment not served: {exc}", file=sys.stderr)
    return deployments


def main() -> None:
    from prefect import serve

    # pause_on_shutdown=False: `kongstack down` stops the server too, and a later `up`
    # must find the schedule active without a manual resume.
    serve(*build_deployments(), pause_on_shutdown=False,
          prefetch_seconds=RUNNER_PREFETCH_SECONDS)


if __name__ == "__main__":
    main()

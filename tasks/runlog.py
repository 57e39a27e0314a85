"""What a Prefect run shows about itself: its logger, its project log lines, its name, its link.

- ``run_logger``: the logger of the Prefect run a task belongs to, or a plain logger outside a
  run (unit tests, the CLI calling ``task.fn``).
- ``forward_project_logs``: the project's own loggers (``kongstack.*``, ``tasks.*``,
  ``autoscaler.*``, ``flows.*``) reach the run's logs in the UI, so the instance and gateway
  steps are visible there. Prefect's ``PREFECT_LOGGING_EXTRA_LOGGERS`` attaches its API handler
  but keeps the logger's level (the root's WARNING by default), which would drop every INFO
  line; this sets INFO and sends only what is logged inside a run.
- ``rename_run``: a flow-run name that says what happened (``autoscale-schedule-3to6``).
- ``run_ui_url``: the run's page in the Prefect UI (for notifications).
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.logging.handlers import APILogHandler

PROJECT_LOGGERS = ("kongstack", "tasks", "autoscaler", "flows")


def run_logger(fallback: str = "kongstack") -> Any:
    try:
        return get_run_logger()
    except Exception:  # MissingContextError: not inside a flow or task run
        return logging.getLogger(fallback)


class RunLogHandler(APILogHandler):
    """Prefect's API log handler, for records logged inside a flow or task run only (outside
    one there is no run to attach them to; they stay on the console)."""

    def emit(self, record: logging.LogRecord) -> None:
        from prefect.context import FlowRunContext, TaskRunContext

        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return
        super().emit(record)


def forward_project_logs(level: int = logging.INFO) -> None:
    """Send the project's loggers at ``level`` and above to the current run's logs.
    Idempotent: called at the start of every flow."""
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > level:
            logger.setLevel(level)
        if not any(isinstance(h, RunLogHandler) for h in logger.handlers):
            logger.addHandler(RunLogHandler(level=level))


def rename_run(name: str) -> bool:
    """Rename the current flow run (best effort: a failure is logged, never raised)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    if not run_id:
        return False
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(UUID(run_id), name=name)
    except Exception as exc:  # a name is cosmetic: never fail the run for it
        logging.getLogger("kongstack").warning("could not rename flow run to %s: %s", name, exc)
        return False
    return True


def run_ui_url() -> str | None:
    """The current flow run's page in the Prefect UI, when a UI URL is known."""
    from prefect.runtime import flow_run
    from prefect.settings import PREFECT_UI_URL

    run_id, base = flow_run.get_id(), PREFECT_UI_URL.value()
    return f"{str(base).rstrip('/')}/runs/flow-run/{run_id}" if run_id and base else None

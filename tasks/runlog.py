"""The logger of the Prefect run a task belongs to, or a plain logger outside a run (unit
tests, the CLI calling ``task.fn``)."""

from __future__ import annotations

import logging
from typing import Any

from prefect import get_run_logger


def run_logger(fallback: str = "kongstack") -> Any:
    try:
        return get_run_logger()
    except Exception:  # MissingContextError: not inside a flow or task run
        return logging.getLogger(fallback)

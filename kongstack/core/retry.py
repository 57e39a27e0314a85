"""The one retry predicate for Prefect tasks: retry a failed run only when its exception is
transient (the same fault may not happen again); configuration and logic errors never are.

    @task(retries=2, retry_condition_fn=retry_on(GatewayError, OSError))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RetryCondition = Callable[[Any, Any, Any], bool]
"""Prefect's ``retry_condition_fn(task, task_run, state) -> bool``."""


def retry_if(transient: Callable[[BaseException], bool]) -> RetryCondition:
    """A ``retry_condition_fn`` that retries when ``transient(exception)`` says so."""

    def condition(task: Any, task_run: Any, state: Any) -> bool:
        try:
            state.result()
        except Exception as exc:  # the failed run's exception, re-raised by result()
            return transient(exc)
        return False

    return condition


def retry_on(*transient: type[BaseException]) -> RetryCondition:
    """A ``retry_condition_fn`` that retries when the exception is one of ``transient``."""
    return retry_if(lambda exc: isinstance(exc, transient))

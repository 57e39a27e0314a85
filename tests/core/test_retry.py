"""The one retry predicate: a Prefect task is retried only on the faults it names as transient,
and every task that retries on a condition uses it (no private copies)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from prefect import flow, task

from kongstack.core.errors import ConfigError, GatewayError
from kongstack.core.retry import retry_if, retry_on
from kongstack.core.settings import REPO_ROOT
from tasks.monitoring.elasticsearch import LogStoreError
from tasks.monitoring.prefect_tasks import log_store_unreachable

PRODUCT = ("autoscaler", "flows", "tasks", "kongstack")
HELPER = REPO_ROOT / "kongstack" / "core" / "retry.py"


def _attempts(exc: BaseException) -> int:
    calls: list[int] = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_on(GatewayError, OSError))
    def flaky() -> None:
        calls.append(1)
        raise exc

    @flow
    def run() -> None:
        flaky()

    with pytest.raises(type(exc)):
        run()
    return len(calls)


@pytest.mark.usefixtures("prefect_harness")
def test_transient_faults_are_retried_others_are_not() -> None:
    assert _attempts(GatewayError("kong 503")) == 3
    assert _attempts(ConnectionResetError("reset")) == 3  # an OSError
    assert _attempts(ConfigError("bad policy")) == 1


@pytest.mark.parametrize(("exc", "retry"), [
    (LogStoreError("PUT http://es:9200/_index_template/x: HTTP 503"), True),
    (LogStoreError("PUT http://es:9200/_index_template/x: HTTP 400: bad mapping"), False),
    (ValueError("HTTP 503"), False),
])
def test_the_log_store_retries_only_when_unreachable(exc: BaseException, retry: bool) -> None:
    assert log_store_unreachable(exc) is retry


def test_retry_if_reads_the_failed_states_exception() -> None:
    class State:
        def __init__(self, exc: BaseException | None) -> None:
            self.exc = exc

        def result(self) -> None:
            if self.exc is not None:
                raise self.exc

    condition = retry_if(lambda exc: isinstance(exc, TimeoutError))
    assert condition(None, None, State(TimeoutError())) is True
    assert condition(None, None, State(KeyError("x"))) is False
    assert condition(None, None, State(None)) is False


def test_no_module_reads_a_failed_state_for_retries_itself() -> None:
    copies = []
    for package in PRODUCT:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if path == HELPER:
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.keyword) and node.arg == "retry_condition_fn" and not (
                        isinstance(node.value, ast.Call)
                        and ast.unparse(node.value.func) in ("retry_on", "retry_if")):
                    copies.append(f"{Path(path).relative_to(REPO_ROOT)}:{node.value.lineno}")
    assert copies == [], f"use kongstack.core.retry.retry_on/retry_if: {copies}"

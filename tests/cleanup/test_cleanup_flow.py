from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from flows.cleanup import cleanup
from kongstack.core.procs import http_ok
from tasks.cleanup.approval import ApprovalError, answer, resolve_run, waiting_runs
from tasks.cleanup.steps import CleanupConfig, plan_cleanup
from tasks.tick.pool import build_driver, build_gateway
from tests.support.ops_stack import LocalStack, local_stack


@pytest.fixture()
def stack(tmp_path: Path, redis_url: str) -> Iterator[LocalStack]:
    with local_stack(tmp_path, redis_url, instances=2) as s:
        yield s


def _params(stack: LocalStack, **extra: Any) -> dict[str, Any]:
    return {"stack": stack.config.stack, "driver": "process", "gateway": "nginx",
            "local": {k: str(v) for k, v in stack.local.items()},
            "redis_url": stack.config.redis_url, "data_dir": str(stack.data_dir),
            "include_volumes": False, "poll_interval_seconds": 1, **extra}


def _inventory(stack: LocalStack) -> tuple[list[str], list[str], bool]:
    driver, gateway = build_driver(stack.config), build_gateway(stack.config)
    addresses = [i.address for i in driver.list()]
    targets = [t.address for t in gateway.list_targets()]
    nginx_up = getattr(gateway, "server").pid() is not None  # noqa: B009
    return addresses, targets, nginx_up


def _run_in_thread(params: dict[str, Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        out["state"] = cleanup(**params, return_state=True)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def _wait_paused(flow_run_deadline: float = 90.0) -> UUID:
    deadline = time.monotonic() + flow_run_deadline
    while time.monotonic() < deadline:
        runs = waiting_runs()
        if runs:
            return runs[0].id
        time.sleep(0.2)
    raise AssertionError("the cleanup run never paused for approval")


def test_plan_lists_exactly_what_the_stack_owns(stack: LocalStack) -> None:
    plan = plan_cleanup(CleanupConfig(pool=stack.config, include_volumes=False))
    addresses, targets, _ = _inventory(stack)
    assert sorted(i.description.split(" at ")[1].split(" ")[0]
                  for i in plan.items if i.kind == "instance") == sorted(addresses)
    assert sorted(plan.keys("gateway_target")) == sorted(targets) and len(targets) == 2
    assert plan.keys("gateway_process") == ["nginx"]
    assert plan.keys("directory") == [str(stack.data_dir)]
    assert "Approve to remove exactly these items" in plan.markdown()


def test_dry_run_plans_and_removes_nothing(prefect_harness: None, stack: LocalStack) -> None:
    before = _inventory(stack)
    result = cleanup(**_params(stack, dry_run=True))
    assert result["status"] == "dry_run" and len(result["planned"]) == 2 + 2 + 1 + 1
    assert _inventory(stack) == before


def test_approved_removes_exactly_the_plan(prefect_harness: None, stack: LocalStack) -> None:
    addresses, _, _ = _inventory(stack)
    thread, out = _run_in_thread(_params(stack, approval_timeout_seconds=120))
    run_id = _wait_paused()
    assert resolve_run(None, latest=True) == run_id
    answer(run_id, approved=True, approver="ops@example.com", reason="decommission")
    thread.join(timeout=120)
    result = out["state"].result()
    assert result["status"] == "removed", result
    assert result["approver"] == "ops@example.com" and result["still_present"] == []
    assert _inventory(stack) == ([], [], False)
    assert not stack.data_dir.exists()
    assert not any(http_ok(f"http://{a}/health") for a in addresses)


def test_denied_removes_nothing(prefect_harness: None, stack: LocalStack) -> None:
    before = _inventory(stack)
    thread, out = _run_in_thread(_params(stack, approval_timeout_seconds=120))
    run_id = _wait_paused()
    answer(run_id, approved=False, approver="lead", reason="still in use")
    thread.join(timeout=60)
    result = out["state"].result()
    assert result["status"] == "denied" and result["reason"] == "still in use"
    assert _inventory(stack) == before and stack.data_dir.exists()


def test_timed_out_removes_nothing(prefect_harness: None, stack: LocalStack) -> None:
    before = _inventory(stack)
    state = cleanup(**_params(stack, approval_timeout_seconds=2), return_state=True)
    assert state.is_completed()
    assert state.result()["status"] == "timed_out"
    assert _inventory(stack) == before
    with pytest.raises(ApprovalError, match="no cleanup run is waiting"):
        resolve_run(None, latest=True)


def test_answer_rejects_bad_arguments(prefect_harness: None) -> None:
    with pytest.raises(ApprovalError, match="RUN_ID"):
        resolve_run("not-a-uuid", latest=False)
    with pytest.raises(ApprovalError, match="not both"):
        resolve_run("x", latest=True)
    with pytest.raises(ApprovalError, match="--approver"):
        answer(UUID(int=1), approved=True, approver=" ")
    with pytest.raises(ApprovalError, match="not found"):
        answer(UUID(int=1), approved=True, approver="me")


def test_terminal_deny_and_approve_answer_a_waiting_run(
        prefect_harness: None, tmp_path: Path, redis_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``kongstack deny|approve`` (Prefect 3.9 has no `flow-run resume` CLI) on real runs."""
    from prefect.settings import PREFECT_API_URL
    from typer.testing import CliRunner

    from kongstack.cli.app import app

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    runner = CliRunner()
    with local_stack(tmp_path, redis_url, instances=0) as small:
        thread, out = _run_in_thread(_params(small, approval_timeout_seconds=120))
        run_id = _wait_paused()
        denied = runner.invoke(app, ["deny", str(run_id), "--approver", "lead",
                                     "--reason", "keep it"])
        assert denied.exit_code == 0, denied.output
        assert f"cleanup run {run_id} denied by lead" in denied.output
        thread.join(timeout=60)
        assert out["state"].result()["status"] == "denied"
        assert _inventory(small)[2]  # nginx still serves

        again = runner.invoke(app, ["approve", str(run_id), "--approver", "lead"])
        assert again.exit_code == 1 and "not waiting for approval" in again.output

        thread, out = _run_in_thread(_params(small, approval_timeout_seconds=120))
        _wait_paused()
        approved = runner.invoke(app, ["approve", "--latest", "--approver", "lead"])
        assert approved.exit_code == 0, approved.output
        thread.join(timeout=60)
        assert out["state"].result()["status"] == "removed"
        assert not _inventory(small)[2]


def test_the_run_is_named_after_the_stack(prefect_harness: None, stack: LocalStack) -> None:
    from prefect import get_client

    state = cleanup(**_params(stack, dry_run=True), return_state=True)
    with get_client(sync_client=True) as client:
        assert state.state_details.flow_run_id is not None
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.name == f"cleanup-{stack.config.stack}"

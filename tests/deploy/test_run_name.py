"""deploy-stack and cleanup runs are named by what they do, as the Prefect UI lists them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.deploy_stack import deploy_stack


def _name(state: Any) -> str:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return str(client.read_flow_run(state.state_details.flow_run_id).name)


def test_deploy_stack_runs_are_named_by_provider(prefect_harness: None, tmp_path: Path) -> None:
    planned = deploy_stack(dry_run=True, return_state=True)
    assert planned.is_completed() and _name(planned) == "deploy-stack-local-dry-run"
    broken = tmp_path / "stack.yaml"
    broken.write_text("provider: mars\n")
    failed = deploy_stack(config_path=str(broken), return_state=True)
    assert failed.is_failed() and _name(failed) == "deploy-stack-invalid-config"

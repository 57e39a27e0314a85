"""deploy-stack on the Azure provider, through Prefect, against the ARM double."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import tasks.providers.azure.provider as azure_provider
from flows.deploy_stack import DeployFailed, deploy_stack
from tasks.providers.azure.clients import AzureClients
from tests.deploy.conftest import write_stack_file
from tests.providers.azure.arm_double import ArmServer, Fault
from tests.providers.azure.conftest import HOST_KEY, SUBSCRIPTION
from tests.providers.azure.test_provision import PUBLIC_KEY


@pytest.fixture()
def azure_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_clients: Callable[..., AzureClients],
    prefect_harness: None,
) -> Path:
    from prefect.blocks.system import Secret

    secret: Any = Secret(value=PUBLIC_KEY)  # type: ignore[arg-type]
    secret.save("test-deploy-ssh-public", overwrite=True)
    monkeypatch.setenv("KONGSTACK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(azure_provider, "client_factory", make_clients)
    return write_stack_file(
        tmp_path / "stack.yaml", provider="azure", allowed_admin_cidr="198.51.100.0/24",
        api_key_secret="test-deploy-api-key", instance_secret="test-deploy-instance-secret",
        log_token_secret="test-deploy-log-token",
        ssh={"public_key_secret": "test-deploy-ssh-public",
             "private_key_secret": "test-deploy-ssh-private",
             "known_hosts": str(tmp_path / "known_hosts")},
        azure={"subscription_id": SUBSCRIPTION, "polling_interval_s": 0.02},
    )


def test_flow_provisions_the_three_vms_and_pins_their_host_keys(
    azure_stack: Path, arm: ArmServer
) -> None:
    result = deploy_stack(config_path=str(azure_stack), until="provision")
    assert result["steps"]["provision"]["status"] == "done"
    assert result["steps"]["install"]["status"] == "skipped"
    assert sorted(h["vm"] for h in result["hosts"]) == ["vm-kong", "vm-logs", "vm-monitoring"]
    assert "virtual machine vm-kong" in result["steps"]["provision"]["changes"]
    keys = (azure_stack.parent / "known_hosts").read_text().splitlines()
    assert sorted(k.split()[0] for k in keys) == sorted(h["address"] for h in result["hosts"])
    assert all(k.endswith(HOST_KEY) for k in keys)
    vm = next(r for r in arm.state.resources.values() if r["name"] == "vm-kong")
    assert vm["properties"]["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0][
        "keyData"] == PUBLIC_KEY


def test_flow_failure_reports_what_exists(azure_stack: Path, arm: ArmServer) -> None:
    arm.state.faults.append(Fault("PUT", "virtualMachines/vm-monitoring", 409,
                                  "OperationNotAllowed", "exceeding approved Cores quota"))
    with pytest.raises(DeployFailed, match="step provision failed") as info:
        deploy_stack(config_path=str(azure_stack), until="provision")
    assert "vm-monitoring" in str(info.value) and "Cores quota" in str(info.value)
    assert "what exists: vm-kong, vm-logs" in str(info.value) or \
        "what exists: vm-logs, vm-kong" in str(info.value)
    state = json.loads((azure_stack.parent / "home/deploy/kongstack/state.json").read_text())
    assert state["steps"]["provision"]["status"] == "failed"


def test_dry_run_lists_the_plan_and_creates_nothing(azure_stack: Path, arm: ArmServer) -> None:
    result = deploy_stack(config_path=str(azure_stack), dry_run=True)
    planned = result["steps"]["provision"]["changes"]
    assert "NSG rule allow-public-api: tcp 8000 from Internet to 10.20.1.4/32" in planned
    assert not [p for p in planned if "from Internet" in p and "allow-public-api" not in p]
    assert any(p.startswith("NSG rule allow-admin-ssh: tcp 22 from 198.51.100.0/24")
               for p in planned)
    assert "NSG rule deny-vnet-inbound: deny any protocol any port from VirtualNetwork to *" \
        in planned
    assert arm.state.calls == [] and yaml.safe_load(azure_stack.read_text())["provider"] == "azure"


def test_the_dry_run_plans_what_the_first_run_creates(azure_stack: Path, arm: ArmServer) -> None:
    planned = deploy_stack(config_path=str(azure_stack), dry_run=True)["steps"]["provision"]
    created = deploy_stack(config_path=str(azure_stack), until="provision")["steps"]["provision"]
    ensured = [p.removeprefix("ensure ") for p in planned["changes"] if p.startswith("ensure ")]
    assert sorted(ensured) == sorted(created["changes"])  # VMs are created in parallel

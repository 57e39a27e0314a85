"""Fixtures: the ARM double on loopback and the REAL azure-mgmt clients pointed at it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from kongstack.core.topology import Topology, load_topology
from tasks.providers.azure.clients import AzureClients, connect
from tests.providers.azure.arm_double import ArmServer, arm_double

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm3eTFv0r1mGmXkq0d0ySLw3a3rZ1t2b0Lh6d2fKq9x"


class StaticTokenCredential:
    """Satisfies azure.core's TokenCredential protocol; tests only."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-token", int(time.time()) + 3600)


class AllowHttpBearer(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """The double speaks plain http on loopback; let the bearer policy send the token."""

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        request.context["enforce_https"] = False


def clients_for(server: ArmServer, **overrides: Any) -> AzureClients:
    kwargs: dict[str, Any] = {
        "base_url": server.base_url,
        "polling_interval": 0.02,
        "retry_backoff_factor": 0,
        "per_call_policies": [AllowHttpBearer()],
        **overrides,
    }
    return connect(SUBSCRIPTION, credential=StaticTokenCredential(), **kwargs)


def azure_topology(tmp_path: Path, **changes: Any) -> Topology:
    base = load_topology()
    data = base.model_dump(mode="json")
    data["provider"] = "azure"
    data["allowed_admin_cidr"] = "198.51.100.0/24"
    data["api_key_secret"] = "test-api-key"
    data["instance_secret"] = "test-instance-secret"
    data["log_token_secret"] = "test-log-token"
    data["ssh"]["known_hosts"] = str(tmp_path / "known_hosts")
    data["azure"] = {**data["azure"], "subscription_id": SUBSCRIPTION, "polling_interval_s": 0.02}
    data.update(changes)
    return Topology.model_validate(data)


@pytest.fixture()
def arm() -> Iterator[ArmServer]:
    keys = {vm: HOST_KEY for vm in ("vm-kong", "vm-logs", "vm-monitoring")}
    with arm_double(host_keys=keys) as server:
        yield server


@pytest.fixture()
def make_clients(arm: ArmServer) -> Iterator[Callable[..., AzureClients]]:
    made: list[AzureClients] = []

    def factory(*_: Any, **overrides: Any) -> AzureClients:
        c = clients_for(arm, **overrides)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()

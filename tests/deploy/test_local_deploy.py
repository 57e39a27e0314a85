"""deploy-stack on the local provider: real redis, nginx, Prometheus, Alertmanager, exporters
and gunicorn instances on free loopback ports. Tests run in file order on one stack."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from flows.deploy_stack import deploy
from kongstack.core.procs import Daemon
from tests.deploy.conftest import LocalEnv
from tests.support.services import require_binary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _binaries() -> None:
    for binary in ("redis-server", "nginx", "/usr/bin/prometheus",
                   "/usr/bin/prometheus-alertmanager", "/usr/bin/prometheus-node-exporter",
                   "/usr/bin/prometheus-redis-exporter", "/usr/bin/prometheus-nginx-exporter"):
        require_binary(binary)


def test_first_deploy_starts_everything_and_serves_through_the_gateway(local_env: LocalEnv) -> None:
    summary = deploy(local_env.config, settings=local_env.settings)

    assert summary.ok, summary.markdown()
    assert summary.changed and summary.resumed_from is None
    changes = " | ".join(summary.changes)
    assert "started redis" in changes and "gateway: create process nginx" in changes
    assert changes.count("started stock API instance") == 2
    assert "seeded 20 symbols" in changes
    status = {c.name: c.status for c in summary.components}
    for name in ("redis", "prometheus", "alertmanager", "node-exporter", "redis-exporter",
                 "nginx-exporter", "nginx", "gateway request"):
        assert status[name] == "healthy", (name, summary.markdown())
    assert status["grafana"] == "absent" and status["kong"] == "substituted"
    # key-auth is on: the deploy created a key per consumer in its Secret block
    stack = local_env.stack().topo.name
    for consumer in ("reader", "writer"):
        assert f"consumer {consumer}: key created in Secret block {stack}-key-{consumer}" \
            in changes
    reader, writer = (_secret(f"{stack}-key-{c}") for c in ("reader", "writer"))
    md = summary.markdown()
    assert reader not in md and writer not in md  # names of blocks, never a key
    assert "without a key -> 401" in md
    # a user's request through the gateway reaches an instance and the seeded store
    url = summary.urls["stock API (gateway)"]
    listing = httpx.get(url, params={"per_page": 5}, headers={"apikey": reader}, timeout=5)
    assert listing.json()["total"] == 20 and len(listing.json()["items"]) == 5
    anonymous = httpx.get(url, timeout=5)
    assert (anonymous.status_code, anonymous.json()["message"]) == (
        401, "No API key found in request")  # Kong's body
    write = httpx.post(url, json={}, headers={"apikey": reader}, timeout=5)
    assert write.status_code == 403, write.text
    assert "| provision | done |" in md and "## Components" in md and "Prometheus" in md


def _secret(name: str) -> str:
    from prefect.blocks.system import Secret

    block: Any = Secret.load(name, _sync=True)  # type: ignore[call-arg]
    return str(block.get())


def test_unchanged_rerun_makes_no_changes_and_says_so(local_env: LocalEnv) -> None:
    summary = deploy(local_env.config, settings=local_env.settings)
    assert summary.ok, summary.markdown()
    assert summary.changes == []
    assert summary.headline() == "no changes: everything was already in the desired state"
    running = [c for c in summary.components if c.role == "stock-api"]
    assert len(running) == 2 and all(c.status == "healthy" for c in running)


def test_a_crashed_component_is_restarted_by_the_next_run(local_env: LocalEnv) -> None:
    Daemon("redis", local_env.settings.run_dir).stop(grace=5)
    summary = deploy(local_env.config, settings=local_env.settings)
    assert summary.ok, summary.markdown()
    assert [c for c in summary.changes if "redis" in c] == [
        f"started redis on 127.0.0.1:{local_env.settings.redis_port}"]


def test_failure_part_way_reports_what_exists_and_the_next_run_resumes(local_env: LocalEnv) -> None:
    stack = local_env.stack()
    stack.gateway().stop()  # nginx down, and its port taken by someone else
    blocker = socket.create_server(("127.0.0.1", local_env.settings.gateway_port))
    try:
        failed = deploy(local_env.config, settings=local_env.settings)
    finally:
        blocker.close()
    assert not failed.ok and failed.failed_step == "install"
    assert failed.steps["provision"].status == "done"
    assert failed.steps["register"].status == "pending"
    assert "FAILED at step install" in failed.markdown()
    assert [c.name for c in failed.components] == ["redis"]  # what exists when it stopped
    assert [h.vm for h in failed.hosts] == ["vm-kong", "vm-logs", "vm-monitoring"]

    resumed = deploy(local_env.config, settings=local_env.settings)
    assert resumed.ok, resumed.markdown()
    assert resumed.resumed_from == "install"
    assert resumed.steps["provision"].status == "skipped"
    assert "gateway: create process nginx" in resumed.changes
    assert "Resumed at step `install`" in resumed.markdown()

    # the run after a completed one starts from the top again
    again = deploy(local_env.config, settings=local_env.settings)
    assert again.resumed_from is None and again.steps["provision"].status == "done"


def test_dry_run_changes_nothing(local_env: LocalEnv) -> None:
    summary = deploy(local_env.config, settings=local_env.settings, dry_run=True)
    assert summary.dry_run and summary.headline().startswith("dry run")
    assert any("stock API instances" in c for c in summary.steps["install"].changes)


def test_prefect_flow_rerun_reports_no_changes_in_its_artifact(
    local_env: LocalEnv, prefect_harness: None
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.deploy_stack import ARTIFACT_KEY, deploy_stack

    result = deploy_stack(config_path=str(local_env.config))
    assert result["ok"] and result["changed"] is False
    assert [h["vm"] for h in result["hosts"]] == ["vm-kong", "vm-logs", "vm-monitoring"]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])))
    latest = max(artifacts, key=lambda a: a.created)  # type: ignore[arg-type,return-value]
    assert "no changes" in str(latest.data) and "| verify | done |" in str(latest.data)

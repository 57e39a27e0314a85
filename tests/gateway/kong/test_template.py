"""The committed Kong template carries the request-log plugins of deployments/logging."""

from __future__ import annotations

from pathlib import Path

import yaml

from kongstack.core.settings import REPO_ROOT
from kongstack.core.topology import load_topology
from tasks.gateway.desired import GatewayStackConfig, build_gateway_state
from tasks.gateway.kong.template import TEMPLATE_PATH, log_endpoint_for

LOGGING_PLUGINS = REPO_ROOT / "deployments" / "logging" / "kong-http-log.yaml"


def _global_plugins(path: Path) -> dict[str, dict[str, object]]:
    doc = yaml.safe_load(path.read_text())
    return {p["name"]: p["config"] for p in doc.get("plugins", [])}


def test_template_has_the_logging_plugins_of_the_log_pipeline() -> None:
    template, wanted = _global_plugins(TEMPLATE_PATH), _global_plugins(LOGGING_PLUGINS)
    for name in ("correlation-id", "http-log"):
        assert template[name] == wanted[name], name  # same settings, global scope


def test_http_log_only_with_a_log_endpoint() -> None:
    names = [p.name for p in build_gateway_state(GatewayStackConfig()).plugins]
    assert "correlation-id" in names and "http-log" not in names


def test_log_endpoint_is_the_forwarders_ingest_port() -> None:
    topo = load_topology()
    assert log_endpoint_for(topo) == "http://vm-logs:8000/kong"
    assert log_endpoint_for(topo, "10.20.1.5") == "http://10.20.1.5:8000/kong"
    data = topo.model_dump(mode="json", by_alias=True)
    data["vms"][1]["services"] = [s for s in data["vms"][1]["services"]
                                  if s["role"] != "log-forwarder"]
    assert log_endpoint_for(type(topo).model_validate(data)) is None

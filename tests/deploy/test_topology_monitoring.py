"""The topology's optional ``monitoring:`` section is validated with the rest of the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kongstack.core.errors import ConfigError
from kongstack.core.topology import DEFAULT_TOPOLOGY_PATH, load_topology


def stack_with(tmp_path: Path, monitoring: object) -> Path:
    data = yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text())
    data["monitoring"] = monitoring
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_committed_stack_has_no_monitoring_section_and_loads() -> None:
    assert load_topology().monitoring is None


def test_monitoring_section_is_parsed_into_the_typed_config(tmp_path: Path) -> None:
    topo = load_topology(stack_with(tmp_path, {
        "alerts": {"host_high_cpu": {"value": 90, "for": "10m"}},
        "alertmanager": {"slack": {"channel": "#ops", "api_url": {"block": "slack-url"}}},
    }))
    assert topo.monitoring is not None
    assert topo.monitoring.alerts.host_high_cpu.value == 90
    assert topo.monitoring.alerts.host_high_cpu.for_ == "10m"
    assert topo.monitoring.alertmanager.slack is not None


@pytest.mark.parametrize(("monitoring", "field"), [
    ({"alerts": {"host_high_cpu": {"value": "high"}}}, "monitoring.alerts.host_high_cpu.value"),
    ({"scrape": {"scrape_interval": "often"}}, "monitoring.scrape.scrape_interval"),
    ({"scrape": {"node_exporter": ["no-port"]}}, "monitoring.scrape.node_exporter[0]"),
    ({"alertmanager": {"slack": {"channel": "#x", "api_url": {}}}},
     "monitoring.alertmanager.slack.api_url"),
    ({"unknown": 1}, "monitoring.unknown"),
])
def test_errors_name_the_monitoring_field(tmp_path: Path, monitoring: object, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_topology(stack_with(tmp_path, monitoring))
    assert f"{field}:" in str(info.value)

"""Every YAML file under deployments/ loads through the loader the product reads it with
(or, for files only Prometheus, Alertmanager, Grafana and promtool read, through the one YAML
door with the shape those tools expect). A new YAML file must be added to the table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kongstack.core.monitoring_config import load_monitoring_config
from kongstack.core.settings import REPO_ROOT
from kongstack.core.topology import load_topology
from kongstack.core.yamlfile import load_yaml, parse_yaml
from tasks.gateway.kong import declarative
from tasks.providers.azure.cloud_init import render_cloud_init
from tasks.tick.config import load_autoscale_config

DEPLOY = REPO_ROOT / "deployments"


def _cloud_init(path: Path) -> object:
    topo = load_topology()
    return [parse_yaml(render_cloud_init(topo, vm, template=path), what="cloud-init",
                       origin=f"{path} for {vm.name}") for vm in topo.vms]


def _keys(*required: str) -> Callable[[Path], object]:
    def check(path: Path) -> object:
        doc = load_yaml(path, what="external tool config")
        assert set(required) <= set(doc), f"{path}: missing {set(required) - set(doc)}"
        return doc
    return check


LOADERS: dict[str, Callable[[Path], Any]] = {
    "stack.yaml": load_topology,
    "autoscale.yaml": lambda p: load_autoscale_config(file=p, environ={}),
    "prometheus/monitoring.yaml": load_monitoring_config,
    "kong/kong.yaml": declarative.load,
    "logging/kong-http-log.yaml": declarative.load,
    "cloud-init/base.yaml": _cloud_init,
    # Read by the tools themselves (rendered by tasks.monitoring, checked by promtool/amtool
    # in tests/monitoring; Grafana's provisioning staged by tasks.providers.azure.role_files).
    "prometheus/prometheus.yml": _keys("global", "scrape_configs", "rule_files"),
    "prometheus/rules/kongstack.rules.yml": _keys("groups"),
    "prometheus/tests/alerts.test.yml": _keys("rule_files", "tests"),
    "prometheus/tests/recording.test.yml": _keys("rule_files", "tests"),
    "alertmanager/alertmanager.yml": _keys("route", "receivers"),
    "grafana/provisioning/datasources/kongstack.yml": _keys("apiVersion", "datasources"),
    "grafana/provisioning/dashboards/kongstack.yml": _keys("apiVersion", "providers"),
}


def test_the_table_covers_every_yaml_file() -> None:
    found = {str(p.relative_to(DEPLOY)) for pattern in ("*.yaml", "*.yml")
             for p in DEPLOY.rglob(pattern)}
    assert found == set(LOADERS)


@pytest.mark.parametrize("relative", sorted(LOADERS))
def test_each_file_loads_through_its_loader(relative: str) -> None:
    assert LOADERS[relative](DEPLOY / relative)

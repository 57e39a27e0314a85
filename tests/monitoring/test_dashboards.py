"""Every Grafana panel's PromQL parses in a real Prometheus and selects exported metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kongstack.core.settings import REPO_ROOT
from tasks.providers.local.monitoring import LocalMonitoring
from tests.monitoring.helpers import ApiInstance, Prom
from tests.monitoring.known_metrics import (
    DOCUMENTED,
    metric_names,
    scrape_names,
    substitute_grafana_vars,
)

GRAFANA = REPO_ROOT / "deployments" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


def _exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    found += [(f"annotation {a['name']}", a["expr"])
              for a in dashboard["annotations"]["list"] if "expr" in a]
    return found


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_dashboards_cover_gateway_pool_redis_and_mongodb() -> None:
    assert {p.stem for p in DASHBOARDS} == {"gateway", "backend-pool", "redis", "mongodb"}
    uids = [_load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    pool = _load(GRAFANA / "dashboards" / "backend-pool.json")
    annotations = {a["name"]: a for a in pool["annotations"]["list"]}
    assert "kongstack_autoscaler_current_instances" in annotations["Scaling events"]["expr"]
    titles = {p["title"] for p in pool["panels"]}
    assert {"Instances", "CPU per instance", "Resident memory per instance"} <= titles


def test_panels_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "kongstack.yml")
                                 .read_text())
    uids = {d["uid"] for d in provisioned["datasources"]}
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "kongstack.yml")
                               .read_text())
    assert providers["providers"][0]["type"] == "file"
    for path in DASHBOARDS:
        for panel in _load(path)["panels"]:
            assert panel["datasource"]["uid"] in uids, (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_query_parses_in_prometheus(path: Path, prom: Prom) -> None:
    errors = {title: err for title, expr in _exprs(_load(path))
              if (err := prom.parse_error(substitute_grafana_vars(expr)))}
    assert not errors


@pytest.fixture(scope="module")
def exported(monitoring: LocalMonitoring, api_instances: list[ApiInstance]) -> set[str]:
    """Names the running stack really exports, plus the documented ones that cannot run here."""
    ports = monitoring.ports
    exporters = scrape_names(f"http://127.0.0.1:{ports.node_exporter}/metrics")
    exporters |= scrape_names(f"http://127.0.0.1:{ports.redis_exporter}/metrics")
    if ports.nginx_exporter:
        exporters |= scrape_names(f"http://127.0.0.1:{ports.nginx_exporter}/metrics")
    # An exporter's own process_*/go_* series describe the exporter, not the stack: panels
    # that chart instance CPU/memory must get them from the stock API itself.
    exporters = {n for n in exporters if not n.startswith(("process_", "go_", "promhttp_"))}
    return scrape_names(f"http://{api_instances[0].address}/metrics") | exporters | DOCUMENTED


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_references_exported_metrics(path: Path, exported: set[str]) -> None:
    unknown = {title: sorted(names - exported) for title, expr in _exprs(_load(path))
               if (names := metric_names(expr)) - exported}
    assert not unknown


def test_alert_and_recording_rules_reference_exported_metrics(exported: set[str]) -> None:
    rules = yaml.safe_load((REPO_ROOT / "deployments/prometheus/rules/kongstack.rules.yml")
                           .read_text())
    unknown = {r.get("alert") or r["record"]: sorted(metric_names(r["expr"]) - exported)
               for g in rules["groups"] for r in g["rules"] if metric_names(r["expr"]) - exported}
    assert not unknown


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (job, le) (rate(a_bucket{job="x",le=~"1|2"}[1m]))', {"a_bucket"}),
    ("100 * (1 - b / c) > 0.5 and on (instance) d offset 5m", {"b", "c", "d"}),
    ("histogram_quantile(0.95, sum by (le) (rate(kong_x_bucket[$__rate_interval])))",
     {"kong_x_bucket"}),
    ('label_replace(up == 0, "instance", "$1", "target", "(.*)")', {"up"}),
    ("time() - job:up:sum > 1e3", {"job:up:sum"}),
    ('rate(x_total{instance=~"$instance",route=~"$route"}[$__rate_interval])', {"x_total"}),
])
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    assert metric_names(substitute_grafana_vars(expr)) == names


def test_prometheus_rejects_a_broken_expression(prom: Prom) -> None:
    assert prom.parse_error("sum(rate(stock_api_requests_total[1m])") is not None
    assert prom.parse_error("sum(rate(stock_api_requests_total[1m]))") is None


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboards_filter_by_instance_and_route_variables(path: Path, prom: Prom) -> None:
    dashboard = _load(path)
    variables = _variables(dashboard)
    wanted = {"instance", "route"} if path.stem in {"backend-pool", "gateway"} else {"instance"}
    assert wanted <= set(variables), path.name
    used = " ".join(expr for _, expr in _exprs(dashboard))
    for name in wanted:
        var = variables[name]
        assert var["type"] == "query" and var["includeAll"] and var["multi"], name
        query = var["query"]["query"]
        selector = query.removeprefix("label_values(").rsplit(",", 1)[0]
        assert query.startswith("label_values(") and query.endswith(f", {name})"), query
        assert prom.parse_error(selector) is None, query
        assert f'{name}=~"${name}"' in used, f"no panel of {path.name} filters by ${name}"


def test_pool_panels_over_instance_series_all_follow_the_instance_variable() -> None:
    pool = _load(GRAFANA / "dashboards" / "backend-pool.json")
    per_instance = [(title, expr) for title, expr in _exprs(pool)
                    if expr.startswith(("instance:stock_api", "instance:process", "stock_api_",
                                        "process_", "up{"))]
    assert per_instance
    assert all('instance=~"$instance"' in expr for _, expr in per_instance), per_instance

"""Rendering for the VMs: Fluent Bit and Grafana configs follow the topology's addresses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kongstack.core.errors import InstallError
from kongstack.core.topology import Host, Topology
from tasks.providers.azure.role_files import (
    LOGGING_DIR,
    aggregator_conf,
    grafana_datasources,
    log_gate_conf,
    set_option,
    shipper_conf,
)
from tests.providers.azure.conftest import azure_topology


def hosts_for(topo: Topology) -> list[Host]:
    return [Host(vm.name, tuple(vm.roles), f"203.0.113.{i}", f"10.20.1.{4 + i}")
            for i, vm in enumerate(topo.vms)]


def test_set_option_changes_one_key_of_one_plugin_and_keeps_the_rest() -> None:
    conf = (LOGGING_DIR / "fluent-bit-aggregator.conf").read_text()
    changed = set_option(conf, "INPUT", "http", "Port", "8100")
    before, after = conf.splitlines(), changed.splitlines()
    diff = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert diff == [("    Port              9880", "    Port              8100")]
    with pytest.raises(InstallError, match="expected one Port in \\[INPUT\\] tail"):
        set_option(conf, "INPUT", "tail", "Port", "1")


def test_aggregator_uses_the_topologys_ingest_and_elasticsearch_ports(tmp_path: Path) -> None:
    data = azure_topology(tmp_path).model_dump(mode="json", by_alias=True)
    logs = data["vms"][1]["services"]
    logs[0]["ports"]["ingest"] = 8088
    logs[1]["ports"]["http"] = 9299
    topo = Topology.model_validate(data)
    hosts = hosts_for(topo)
    conf = aggregator_conf(topo, hosts, hosts[1])
    # Kong's http-log posts to the ingest port (8088), where nginx checks the log token and
    # passes it on to Fluent Bit's HTTP input on loopback
    assert "    Listen            127.0.0.1\n    Port              9880" in conf
    gate = log_gate_conf("log-token-0123456789abcdef", 8088)
    assert "listen 8088;" in gate and "proxy_pass http://127.0.0.1:9880;" in gate
    assert "    Port                9299" in conf  # Elasticsearch on the same VM
    assert "    Host                127.0.0.1" in conf
    assert "Logstash_Prefix     kongstack-logs" in conf  # what the index template matches


def test_the_ingest_port_cannot_be_the_loopback_http_inputs(tmp_path: Path) -> None:
    data = azure_topology(tmp_path).model_dump(mode="json", by_alias=True)
    data["vms"][1]["services"][0]["ports"]["ingest"] = 9880
    topo = Topology.model_validate(data)
    hosts = hosts_for(topo)
    with pytest.raises(InstallError, match="log-forwarder.ingest must not be 9880"):
        aggregator_conf(topo, hosts, hosts[1])


def test_shipper_forwards_to_the_logs_vms_private_address(tmp_path: Path) -> None:
    hosts = hosts_for(azure_topology(tmp_path))
    conf = shipper_conf(hosts[1])
    assert "    Host              10.20.1.5" in conf and "vm-logs" not in conf.split("[OUTPUT]")[1]
    assert "Path              /var/log/kongstack/api-*.log" in conf


def test_grafana_datasources_keep_uids_and_point_at_this_stack(tmp_path: Path) -> None:
    topo = azure_topology(tmp_path)
    hosts = hosts_for(topo)
    doc = yaml.safe_load(grafana_datasources(topo, hosts, hosts[2]))
    by_uid = {d["uid"]: d for d in doc["datasources"]}
    assert by_uid["kongstack-prometheus"]["url"] == "http://localhost:9200"  # same VM
    assert by_uid["kongstack-prometheus"]["isDefault"] is True
    assert by_uid["kongstack-logs"]["url"] == "http://10.20.1.5:9201"
    assert by_uid["kongstack-logs"]["jsonData"]["index"] == "kongstack-logs-*"


def test_without_elasticsearch_there_is_no_log_datasource(tmp_path: Path) -> None:
    data = azure_topology(tmp_path).model_dump(mode="json", by_alias=True)
    data["vms"][1]["services"] = [s for s in data["vms"][1]["services"]
                                  if s["role"] != "elasticsearch"]
    topo = Topology.model_validate(data)
    hosts = hosts_for(topo)
    doc = yaml.safe_load(grafana_datasources(topo, hosts, hosts[2]))
    assert [d["uid"] for d in doc["datasources"]] == ["kongstack-prometheus"]

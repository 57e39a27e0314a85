"""The stack configuration is validated before anything is created; errors name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kongstack.core.errors import ConfigError
from kongstack.core.topology import DEFAULT_TOPOLOGY_PATH, Role, load_topology, parse_topology
from tasks.providers.azure.plan import nsg_rules


def default_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text())
    return data


def test_default_stack_is_the_seed_topology() -> None:
    topo = load_topology()
    assert topo.provider == "local"
    assert [vm.name for vm in topo.vms] == ["vm-kong", "vm-logs", "vm-monitoring"]
    kong = topo.vms[0]
    assert kong.roles == [Role.KONG, Role.NGINX, Role.STOCK_API, Role.REDIS, Role.MONGODB]
    svc = kong.service(Role.KONG)
    assert svc is not None and svc.ports["proxy"] == 8000 and svc.public == ["proxy"]
    assert topo.vms[1].service(Role.KIBANA).ports["ui"] == 9200  # type: ignore[union-attr]
    assert topo.vms[2].service(Role.GRAFANA).ports["ui"] == 3000  # type: ignore[union-attr]
    assert topo.vms[0].service(Role.MONGODB).ports["mongodb"] == 5044  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(lambda d: d["vms"][0]["services"][1].update(role="varnish"),
                     "vms[0].services[1].role: Input should be 'kong'", id="unknown-role"),
        pytest.param(lambda d: d["vms"][0]["services"][1].update(ports={"http": 8000}),
                     "vms[0].services[1].ports.http: port 8000 already used by kong.proxy",
                     id="port-clash"),
        pytest.param(lambda d: d["vms"][0]["services"][2].update(ports={"http": 8000}, count=3),
                     "vms[0].services[2].ports.http: port 8000 already used", id="instances-clash"),
        pytest.param(lambda d: d["vms"][1]["services"][0].update(ports={"ssh": 22}),
                     "vms[1].services[0].ports.ssh: port 22 already used by ssh", id="ssh-port"),
        pytest.param(lambda d: d["vms"][2].update(size="B2s-large"),
                     "vms[2].size: Value error, 'B2s-large' is not an Azure VM size name",
                     id="bad-size"),
        pytest.param(lambda d: d.update(provider="azure", ssh={"private_key_secret": "k"}),
                     "ssh.public_key_secret: required for provider 'azure'", id="missing-key"),
        pytest.param(lambda d: d.update(api_key_secret="old-key",
                                        consumers=[{"name": "api", "access": "write"}]),
                     "consumers[0].name: 'api' is the consumer of api_key_secret's key",
                     id="consumer-named-like-the-older-key"),
        pytest.param(lambda d: d.update(consumers=[{"name": "reader", "access": "delete"}]),
                     "consumers[0].access: Input should be 'read' or 'write'",
                     id="consumer-access"),
        pytest.param(lambda d: d.update(consumers=[{"name": "r1", "rate_limit_per_minute": 0}]),
                     "consumers[0].rate_limit_per_minute: Input should be greater than or equal",
                     id="consumer-limit"),
        pytest.param(lambda d: d.update(surprise=1), "surprise: Extra inputs are not permitted",
                     id="unknown-key"),
        pytest.param(lambda d: d.update(allowed_admin_cidr="0.0.0.0/0"),
                     "allowed_admin_cidr: Value error, must not be 0.0.0.0/0", id="open-admin"),
        pytest.param(lambda d: d["vms"][0]["services"][0].update(public=["metrics"]),
                     "vms[0].services[0]: Value error, public port 'metrics' is not one of",
                     id="public-unknown-port"),
        pytest.param(lambda d: d["vms"][1].update(name="vm-kong"),
                     "vms: Value error, VM names must be unique", id="duplicate-vm"),
        pytest.param(lambda d: d["azure"].update(subnet_cidr="10.99.0.0/24"),
                     "azure: Value error, subnet_cidr 10.99.0.0/24 is not inside", id="subnet"),
        # Only the gateway's API port may face the Internet: admin, data and log ports not.
        pytest.param(lambda d: d["vms"][0]["services"][0].update(public=["proxy", "admin"]),
                     "vms[0].services[0].public: kong.admin (admin port 8001) must not face "
                     "the Internet; only the gateway's API port (kong.proxy) may",
                     id="public-kong-admin"),
        pytest.param(lambda d: d["vms"][0]["services"][0].update(public=["status"]),
                     "vms[0].services[0].public: kong.status (metrics port 8100)",
                     id="public-kong-status"),
        pytest.param(lambda d: d["vms"][0]["services"][3].update(public=["redis"]),
                     "vms[0].services[3].public: redis.redis (data port 6379) must not face",
                     id="public-redis"),
        pytest.param(lambda d: d["vms"][0]["services"][2].update(public=["http"]),
                     "vms[0].services[2].public: stock-api.http (backend port 3021)",
                     id="public-instances"),
        pytest.param(lambda d: d["vms"][0]["services"][1].update(public=["http"]),
                     "vms[0].services[1].public: nginx.http (API port 8080) must not face the "
                     "Internet; only the gateway's API port (kong.proxy)", id="public-2nd-proxy"),
        pytest.param(lambda d: d["vms"][1]["services"][1].update(public=["http"]),
                     "vms[1].services[1].public: elasticsearch.http (data port 9201)",
                     id="public-elasticsearch"),
        pytest.param(lambda d: d["vms"][1]["services"][0].update(public=["ingest"]),
                     "vms[1].services[0].public: log-forwarder.ingest (log input port 8000)",
                     id="public-fluent-bit"),
        pytest.param(lambda d: d["vms"][2]["services"][3].update(public=["ui"],
                                                                 public_unsafe_reason="short"),
                     "vms[2].services[3].public_unsafe_reason: String should have at least 10",
                     id="override-needs-a-reason"),
        pytest.param(lambda d: d["vms"][0]["services"][0]["ports"].pop("status"),
                     "vms[0].services[0].ports.status: required for role kong",
                     id="kong-without-status"),
        pytest.param(lambda d: d.update(provider="azure", api_key_secret="a", ssh={
                         "private_key_secret": "k", "public_key_secret": "p"}),
                     "instance_secret: required for provider 'azure'",
                     id="missing-instance-secret"),
        pytest.param(lambda d: d.update(provider="azure", api_key_secret="a",
                                        instance_secret="i", ssh={"private_key_secret": "k",
                                                                  "public_key_secret": "p"}),
                     "log_token_secret: required for provider 'azure' with a log-forwarder",
                     id="missing-log-token"),
        pytest.param(lambda d: d["azure"].update(subnet_cidr="10.20.1.0/30") or d.update(
                         provider="azure"),
                     "azure.subnet_cidr: 10.20.1.0/30 has room for 0 VMs' static addresses",
                     id="subnet-too-small"),
        # Upper bounds (issue 16): a typo is refused naming the field, not obeyed.
        pytest.param(lambda d: d.setdefault("ssh", {}).update(connect_timeout_s=1e9),
                     "ssh.connect_timeout_s: Input should be less than or equal to 300",
                     id="ssh-timeout-bound"),
        pytest.param(lambda d: d["azure"].update(polling_interval_s=86400),
                     "azure.polling_interval_s: Input should be less than or equal to 300",
                     id="poll-interval-bound"),
    ],
)
def test_invalid_configuration_is_rejected_naming_the_field(mutate: Any, expected: str) -> None:
    data = default_data()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_topology(data, source="stack.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("stack.yaml: invalid stack configuration")


def test_load_topology_reports_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_topology(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("vms: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_topology(bad)


def test_fingerprint_changes_with_the_configuration() -> None:
    data = default_data()
    first = parse_topology(data).fingerprint()
    assert parse_topology(default_data()).fingerprint() == first
    data["local"]["instances"] = 4
    assert parse_topology(data).fingerprint() != first


def test_nsg_rules_open_the_api_to_all_and_admin_ports_to_the_range() -> None:
    data = default_data()
    data["allowed_admin_cidr"] = "203.0.113.0/24"
    rules = {r.name: r for r in nsg_rules(parse_topology(data))}
    assert rules["allow-public-api"].ports == (8000,)
    assert rules["allow-public-api"].source == "Internet"
    assert rules["allow-public-api"].destinations == ("10.20.1.4/32",)  # vm-kong only
    assert rules["allow-admin-ssh"].ports == (22,)
    admin = {p for r in rules.values() if r.source == "203.0.113.0/24" for p in r.ports}
    assert {22, 9200, 9201, 9093, 3000} <= admin
    assert not {8001, 8100, 6379, 5044, 3021, 8080, 9100} & admin  # never from the range

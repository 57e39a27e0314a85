"""register: Kong (the Kong Admin API double) gets the stack's state with the VMs' instances."""

from __future__ import annotations

from urllib.parse import urlsplit

from kongstack.core.topology import Host, Role, Topology, load_topology
from tasks.providers.azure.remote import register_kong, role_env
from tests.doubles.kong_server import kong_double


def topology_with_admin_port(port: int) -> Topology:
    data = load_topology().model_dump(mode="json")
    data["vms"][0]["services"][0]["ports"]["admin"] = port
    return Topology.model_validate(data)


HOSTS = [
    Host("vm-kong", (Role.KONG, Role.NGINX, Role.STOCK_API, Role.REDIS, Role.MONGODB),
         "127.0.0.1", "10.20.1.4", "azureuser"),
    Host("vm-logs", (Role.LOG_FORWARDER, Role.ELASTICSEARCH, Role.KIBANA), "127.0.0.2",
         "10.20.1.5", "azureuser"),
]


def test_register_puts_instances_consumer_and_log_endpoint_in_kong() -> None:
    with kong_double() as kong:
        topo = topology_with_admin_port(int(urlsplit(kong.url).port or 0))
        changes = register_kong(topo, HOSTS, admin_secret_block=None, api_key="k-123")
        assert any(c.startswith("kong: create upstream stock-api-upstream") for c in changes)
        targets = sorted(r["target"] for r in kong.rows("targets"))
        assert targets == ["10.20.1.4:3021", "10.20.1.4:3022", "10.20.1.4:3023"]
        assert [c["username"] for c in kong.rows("consumers")] == ["api"]
        http_log = [p for p in kong.rows("plugins") if p["name"] == "http-log"]
        assert http_log[0]["config"]["http_endpoint"] == "http://10.20.1.5:8000/kong"
        assert http_log[0]["service"] is None  # global: every request Kong answers is logged
        # unchanged second run: nothing to do
        assert register_kong(topo, HOSTS, admin_secret_block=None, api_key="k-123") == []


def test_role_env_carries_ports_and_peer_addresses_but_no_secrets() -> None:
    env = role_env(load_topology(), HOSTS[0], HOSTS)
    assert env["KONGSTACK_KONG_PROXY_PORT"] == "8000"
    assert env["KONGSTACK_STOCK_API_HTTP_PORT"] == "3021"
    assert env["KONGSTACK_STOCK_API_COUNT"] == "3"
    assert env["KONGSTACK_HOST_VM_LOGS"] == "10.20.1.5"
    assert not any("SECRET" in k or "KEY" in k for k in env)

"""register: Kong (the Kong Admin API double, listening on loopback like Kong on its VM)
gets the stack's state with the VMs' instances, through an SSH tunnel to a real sshd."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr

from kongstack.core.topology import Host, Role, Topology, load_topology
from tasks.gateway.desired import ConsumerConfig
from tasks.providers.azure.remote import register_kong, role_env
from tasks.providers.azure.role_files import StackSecrets
from tests.doubles.kong_server import kong_double
from tests.support.sshd import SshServer, sshd

SECRETS = StackSecrets(instance_secret="gateway-secret-0123456789",
                       log_token="log-token-0123456789abcdef")


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


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


CONSUMERS = (ConsumerConfig(username="reader", key=SecretStr("k-reader"), access="read",
                            rate_limit_per_minute=30_000),
             ConsumerConfig(username="writer", key=SecretStr("k-writer"), access="write",
                            rate_limit_per_minute=600))


def test_register_puts_instances_consumers_and_log_endpoint_in_kong(
    ssh_server: SshServer, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(ssh_server.known_hosts_line())
    # the Kong VM is the loopback sshd; its Admin API (the double) listens on its loopback
    hosts = [dataclasses.replace(HOSTS[0], ssh_port=ssh_server.port, ssh_user=ssh_server.user),
             HOSTS[1]]
    options = {"admin_secret_block": None, "consumers": CONSUMERS, "api_key": "k-123",
               "secrets": SECRETS, "private_key": ssh_server.user_private_key,
               "known_hosts": known_hosts}
    with kong_double() as kong:
        topo = topology_with_admin_port(int(urlsplit(kong.url).port or 0))
        changes = register_kong(topo, hosts, **options)  # type: ignore[arg-type]
        assert any(c.startswith("kong: create upstream stock-api-upstream") for c in changes)
        targets = sorted(r["target"] for r in kong.rows("targets"))
        assert targets == ["10.20.1.4:3021", "10.20.1.4:3022", "10.20.1.4:3023"]
        ids = {c["id"]: c["username"] for c in kong.rows("consumers")}
        assert sorted(ids.values()) == ["api", "reader", "writer"]
        groups = sorted((ids[a["consumer"]["id"]], a["group"]) for a in kong.rows("acls"))
        assert groups == [("api", "readers"), ("api", "writers"), ("reader", "readers"),
                          ("writer", "readers"), ("writer", "writers")]
        limits = {ids[p["consumer"]["id"]]: p["config"]["minute"] for p in kong.rows("plugins")
                  if p["name"] == "rate-limiting" and p.get("consumer")}
        assert limits == {"reader": 30_000, "writer": 600}  # api: the service's default
        http_log = [p for p in kong.rows("plugins") if p["name"] == "http-log"]
        assert http_log[0]["config"]["http_endpoint"] == "http://10.20.1.5:8000/kong"
        assert http_log[0]["service"] is None  # global: every request Kong answers is logged
        assert http_log[0]["config"]["headers"] == {"Authorization": f"Bearer {SECRETS.log_token}"}
        transformer = next(p for p in kong.rows("plugins") if p["name"] == "request-transformer")
        assert transformer["config"]["add"]["headers"] == [
            f"X-Gateway-Secret:{SECRETS.instance_secret}"]
        assert not any(SECRETS.instance_secret in c or SECRETS.log_token in c  # type: ignore[operator]
                       for c in changes)
        # unchanged second run: nothing to do
        assert register_kong(topo, hosts, **options) == []  # type: ignore[arg-type]
        # the autoscaler added a target: a redeploy keeps it (the autoscaler owns the list),
        # and puts back an installed instance's target that went missing
        admin = httpx.Client(base_url=kong.url, timeout=2.0)
        admin.post("/upstreams/stock-api-upstream/targets", json={
            "target": "10.20.1.4:3024", "tags": ["kongstack", "kongstack-kongstack"]})
        admin.delete("/upstreams/stock-api-upstream/targets/10.20.1.4:3021")
        admin.close()
        assert register_kong(topo, hosts, **options) == [  # type: ignore[arg-type]
            "kong: add target 10.20.1.4:3021"]
        assert sorted(r["target"] for r in kong.rows("targets")) == [
            "10.20.1.4:3021", "10.20.1.4:3022", "10.20.1.4:3023", "10.20.1.4:3024"]
        # the tunnel refuses a Kong VM whose host key is not pinned
        known_hosts.write_text("")
        with pytest.raises(Exception, match="not in known_hosts"):
            register_kong(topo, hosts, **options)  # type: ignore[arg-type]


def test_role_env_carries_ports_and_peer_addresses_but_no_secrets() -> None:
    env = role_env(load_topology(), HOSTS[0], HOSTS)
    assert env["KONGSTACK_KONG_PROXY_PORT"] == "8000"
    assert env["KONGSTACK_STOCK_API_HTTP_PORT"] == "3021"
    assert env["KONGSTACK_STOCK_API_COUNT"] == "3"
    assert env["KONGSTACK_HOST_VM_LOGS"] == "10.20.1.5"
    assert not any("SECRET" in k or "KEY" in k for k in env)

"""The Kong client reaches the Admin API double through an SSH tunnel to a real OpenSSH server.

The double listens on 127.0.0.1 like Kong's Admin API on its VM (admin_listen on loopback);
the tunnel's far end is the loopback sshd, so "on the VM" and "here" are the same machine but
every byte goes through SSH. Host keys are pinned; a dropped SSH connection is reconnected.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kongstack.core.errors import ConfigError, GatewayError
from kongstack.core.procs import free_port, port_open
from tasks.gateway.desired import GatewayStackConfig, build_gateway_state
from tasks.gateway.factory import make_gateway
from tasks.gateway.kong.client import KongAdminClient
from tasks.gateway.kong.sync import KongGateway
from tasks.providers.ssh import HostKeyRejected, SSHTarget
from tasks.providers.ssh_tunnel import SSHTunnel
from tests.doubles.kong_server import kong_double
from tests.support.sshd import DroppingProxy, SshServer, ed25519_keypair


def _options(server: SshServer, tmp_path: Path, *, port: int | None = None,
             known_hosts: str | None = None) -> dict[str, object]:
    kh = tmp_path / "known_hosts"
    kh.write_text(server.known_hosts_line(port) if known_hosts is None else known_hosts)
    key = tmp_path / "id_ed25519"
    key.write_text(server.user_private_key)
    key.chmod(0o600)
    return {"host": server.host, "port": port or server.port, "username": server.user,
            "key_path": str(key), "known_hosts": str(kh), "connect_timeout_s": 5,
            "attempts": 3}


def _admin_url(kong_url: str) -> str:
    return "http://127.0.0.1:" + kong_url.rsplit(":", 1)[1]  # as Kong's own VM sees it


def test_kong_gateway_applies_its_state_through_the_tunnel(
    ssh_server: SshServer, tmp_path: Path
) -> None:
    with kong_double() as kong:
        gateway = make_gateway("kong", stack="tunnel", admin_url=_admin_url(kong.url),
                               ssh_tunnel=_options(ssh_server, tmp_path))
        assert isinstance(gateway, KongGateway)
        local = gateway.client.base_url
        assert local.startswith("http://127.0.0.1:") and local != _admin_url(kong.url)
        try:
            first = gateway.apply(build_gateway_state(GatewayStackConfig(stack="tunnel"),
                                                      ["10.0.0.5:3021"]))
            assert first.writes > 0
            assert [t["target"] for t in kong.rows("targets")] == ["10.0.0.5:3021"]
            again = gateway.apply(build_gateway_state(GatewayStackConfig(stack="tunnel"),
                                                      ["10.0.0.5:3021"]))
            assert again.operations == []  # converged, read back through the tunnel
        finally:
            gateway.close()
        # closing the gateway closed the tunnel: nothing listens on its local end any more
        port = int(local.rsplit(":", 1)[1])
        assert not port_open("127.0.0.1", port)
        assert not [t for t in threading.enumerate() if t.name.startswith("tunnel-")]


def test_an_unknown_host_key_is_refused_before_anything_is_sent(
    ssh_server: SshServer, tmp_path: Path
) -> None:
    _, other_host_key = ed25519_keypair("impostor")
    forged = f"[{ssh_server.host}]:{ssh_server.port} {' '.join(other_host_key.split()[:2])}\n"
    with kong_double() as kong:
        with pytest.raises(HostKeyRejected, match="CHANGED|not in known_hosts"):
            make_gateway("kong", admin_url=_admin_url(kong.url),
                         ssh_tunnel=_options(ssh_server, tmp_path, known_hosts=forged))
        assert sum(kong.server.requests.values()) == 0


def test_a_dropped_ssh_connection_is_reconnected(ssh_server: SshServer, tmp_path: Path) -> None:
    """The first SSH connection is cut after the first request; the next request opens a
    new one (backoff) and succeeds: the caller sees no error."""
    first_done = threading.Event()
    proxy = DroppingProxy(ssh_server.port, drop_on=1, when=first_done.is_set)
    try:
        with kong_double() as kong:
            opts = _options(ssh_server, tmp_path, port=proxy.port)
            gateway = make_gateway("kong", admin_url=_admin_url(kong.url), ssh_tunnel=opts)
            assert isinstance(gateway, KongGateway)
            try:
                assert gateway.list_targets() == []
                assert proxy.connections == 1
                first_done.set()  # the proxy now cuts the SSH connection
                assert proxy.cut.wait(timeout=10)
                assert gateway.list_targets() == []  # retried through a new connection
                assert proxy.connections == 2
            finally:
                gateway.close()
    finally:
        proxy.close()


def test_kong_down_behind_the_tunnel_fails_after_bounded_retries(
    ssh_server: SshServer, tmp_path: Path
) -> None:
    dead = free_port()  # nothing listens there "on the VM"
    target = SSHTarget(host=ssh_server.host, port=ssh_server.port, username=ssh_server.user,
                       private_key=ssh_server.user_private_key,
                       known_hosts=_known_hosts(ssh_server, tmp_path), connect_timeout=5)
    with SSHTunnel(target, "127.0.0.1", dead, channel_timeout=5) as tunnel:
        client = KongAdminClient(base_url=tunnel.url(), attempts=2, backoff_initial=0.01,
                                 timeout=5)
        with pytest.raises(GatewayError, match="failed after 2 attempts"):
            client.get_json("/status")
        client.close()
        assert tunnel.connects == 1  # the SSH connection itself stayed up


def test_plain_http_across_the_network_is_refused_unless_overridden(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("KONGSTACK_KONG_ADMIN_ALLOW_PLAIN_HTTP", raising=False)
    for url in ("http://203.0.113.7:8001", "http://kong.internal:8001", "http://10.20.1.4:8001"):
        with pytest.raises(ConfigError, match="plain HTTP to a non-loopback host"):
            KongAdminClient(base_url=url)
        with pytest.raises(ConfigError, match="admin_url"):
            make_gateway("kong", admin_url=url)
    for url in ("http://127.0.0.1:8001", "http://localhost:8001", "http://[::1]:8001",
                "https://kong.example.com:8444"):
        KongAdminClient(base_url=url).close()
    with caplog.at_level("WARNING"):
        KongAdminClient(base_url="http://203.0.113.7:8001", allow_plain_http=True).close()
        monkeypatch.setenv("KONGSTACK_KONG_ADMIN_ALLOW_PLAIN_HTTP", "1")
        KongAdminClient(base_url="http://203.0.113.8:8001").close()
    loud = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("INSECURE" in m and "203.0.113.7" in m and "allow_plain_http" in m for m in loud)
    assert any("203.0.113.8" in m and "KONGSTACK_KONG_ADMIN_ALLOW_PLAIN_HTTP" in m for m in loud)


def test_a_tunnel_must_point_at_the_loopback_admin_api(
    ssh_server: SshServer, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="loopback address on the Kong VM"):
        make_gateway("kong", admin_url="http://10.20.1.4:8001",
                     ssh_tunnel=_options(ssh_server, tmp_path))


def _known_hosts(server: SshServer, tmp_path: Path) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(server.known_hosts_line())
    return path

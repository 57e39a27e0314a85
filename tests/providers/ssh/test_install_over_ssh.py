"""install_host: common.sh then one script per role, over real SSH, with the topology's env."""

from __future__ import annotations

from pathlib import Path

import pytest

import tasks.providers.azure.remote as remote
from kongstack.core.errors import InstallError
from kongstack.core.topology import Host, Role, load_topology
from tasks.providers.ssh import SSHTarget
from tests.support.sshd import SshServer


def fake_scripts(directory: Path, failing: str | None = None) -> None:
    directory.mkdir()
    for name in ("common", "redis", "stock-api"):
        body = f'echo "changed: {name} ran on $KONGSTACK_VM"\n'
        if name == "stock-api":
            body += ('echo "instances $KONGSTACK_STOCK_API_COUNT '
                     'from $KONGSTACK_STOCK_API_HTTP_PORT"\n')
        if name == failing:
            body += 'echo "E: docker pull failed" >&2\nexit 7\n'
        (directory / f"{name}.sh").write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + body)


def target(server: SshServer, tmp_path: Path) -> SSHTarget:
    known = tmp_path / "known_hosts"
    known.write_text(server.known_hosts_line())
    return SSHTarget(host=server.host, port=server.port, username=server.user,
                     private_key=server.user_private_key, known_hosts=known, connect_timeout=5)


def test_roles_installed_in_order_with_their_ports(
    ssh_server: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_scripts(tmp_path / "install")
    monkeypatch.setattr(remote, "INSTALL_DIR", tmp_path / "install")
    host = Host(vm="vm-kong", roles=(Role.REDIS, Role.STOCK_API), address="127.0.0.1")
    lines: list[str] = []
    changes = remote.install_host(load_topology(), host, target(ssh_server, tmp_path),
                                  lines.append)
    assert changes == ["vm-kong: common ran on vm-kong", "vm-kong: redis ran on vm-kong",
                       "vm-kong: stock-api ran on vm-kong"]
    assert any("instances 3 from 3021" in line for line in lines)


def test_a_failing_role_stops_the_host_with_the_scripts_output(
    ssh_server: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_scripts(tmp_path / "install", failing="stock-api")
    monkeypatch.setattr(remote, "INSTALL_DIR", tmp_path / "install")
    host = Host(vm="vm-kong", roles=(Role.STOCK_API, Role.REDIS), address="127.0.0.1")
    with pytest.raises(InstallError, match="stock-api.sh exited with code 7") as info:
        remote.install_host(load_topology(), host, target(ssh_server, tmp_path), lambda _: None)
    assert "E: docker pull failed" in str(info.value)

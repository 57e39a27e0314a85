"""Kong's rendered configuration has no non-loopback Admin API (or Kong Manager) listener, for
every stack file and test stack; kong.sh refuses to install one that has."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kongstack.core.settings import REPO_ROOT
from kongstack.core.topology import Host, Role, Topology
from tasks.providers.azure.role_files import kong_conf
from tests.providers.azure.test_nsg import _variants

KONG_SH = REPO_ROOT / "deployments" / "install" / "kong.sh"
LOOPBACK = ("127.0.0.1:", "[::1]:")


def _settings(conf: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in conf.splitlines()
             if "=" in line and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def _kong_host(topo: Topology) -> Host | None:
    vm = topo.vm_with(Role.KONG)
    return Host(vm.name, tuple(vm.roles), "203.0.113.4", "10.20.1.4") if vm else None


def test_no_stack_renders_a_non_loopback_admin_listener(tmp_path: Path) -> None:
    checked = 0
    for name, topo in _variants(tmp_path).items():
        host = _kong_host(topo)
        if host is None:
            continue
        settings = _settings(kong_conf(topo, host))
        listeners = [part.split()[0] for part in settings["admin_listen"].split(",")]
        assert listeners and all(addr.startswith(LOOPBACK) for addr in listeners), name
        assert settings["admin_gui_listen"] == "off", name  # Kong Manager (3.4+ OSS)
        svc = topo.vm_with(Role.KONG).service(Role.KONG)  # type: ignore[union-attr]
        assert settings["status_listen"] == f"0.0.0.0:{svc.ports['status']}", name  # type: ignore[union-attr]
        assert settings["proxy_listen"].startswith(f"0.0.0.0:{svc.ports['proxy']} "), name  # type: ignore[union-attr]
        checked += 1
    assert checked >= 4


def _guard() -> str:
    """kong.sh's own check of the staged kong.conf, as it runs on the VM."""
    text = KONG_SH.read_text()
    start = text.index("# Refuse a configuration")
    end = text.index("\ndone\n", start) + len("\ndone\n")
    return text[start:end]


@pytest.mark.parametrize(("conf", "refused"), [
    ("admin_listen = 127.0.0.1:8001\nadmin_gui_listen = off\n", None),
    ("admin_listen = 127.0.0.1:8001, [::1]:8001\nadmin_gui_listen = off\n", None),
    ("admin_listen = 0.0.0.0:8001\nadmin_gui_listen = off\n", "admin_listen 0.0.0.0:8001"),
    ("admin_listen = 127.0.0.1:8001, 10.20.1.4:8444 ssl\nadmin_gui_listen = off\n",
     "admin_listen 10.20.1.4:8444"),
    ("admin_listen = 127.0.0.1:8001\nadmin_gui_listen = 0.0.0.0:8002\n",
     "admin_gui_listen 0.0.0.0:8002"),
    ("admin_listen = 127.0.0.1:8001\n", "sets no admin_gui_listen"),
])
def test_kong_sh_refuses_a_config_that_exposes_the_admin_api(
    tmp_path: Path, conf: str, refused: str | None
) -> None:
    staged = tmp_path / "kong.conf"
    staged.write_text("database = off\n" + conf)
    script = ('die() { echo "error: $*" >&2; exit 1; }\n'
              f'CONFIG={staged}\n' + _guard() + 'echo "guard passed"\n')
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                            text=True, timeout=30, check=False)
    if refused is None:
        assert result.returncode == 0 and "guard passed" in result.stdout, result.stderr
    else:
        assert result.returncode == 1 and refused in result.stderr, result.stderr


def test_kong_sh_installs_the_rendered_conf_and_writes_no_listener_itself() -> None:
    text = KONG_SH.read_text()
    assert 'CONFIG=$(staged kong.conf)' in text
    assert 'put_file "$CONFIG" /etc/kong/kong.conf' in text
    assert "_listen =" not in text  # no heredoc of its own

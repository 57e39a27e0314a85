"""install on Azure VMs: each role gets the rendered configuration it installs, over real SSH.

The hosts are a real OpenSSH server on loopback (one per test module); the role scripts are
stand-ins that report what they were given, so the test sees exactly what a VM would.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

import tasks.providers.azure.remote as remote
import tasks.providers.secrets as provider_secrets
from kongstack.core.errors import ConfigError, InstallError
from kongstack.core.topology import Host, Role, Topology
from tasks.providers.azure.plan import instance_targets
from tasks.providers.azure.provider import AzureProvider
from tasks.providers.azure.role_files import StagedFile, host_steps, render_bundle
from tasks.providers.azure.staging import remove, upload
from tasks.providers.protocol import Provisioned
from tasks.providers.ssh import SSHTarget
from tests.providers.azure.conftest import azure_topology
from tests.support.services import require_binary
from tests.support.sshd import SshServer, sshd

SLACK_URL = "https://hooks.slack.invalid/services/T000/B000/secret-token-123"
SMTP_PASSWORD = "smtp-pass-456"
GATEWAY_SECRET = "gateway-secret-0123456789abcdef"
LOG_TOKEN = "log-token-0123456789abcdef"
ROLE_SCRIPTS = ["common", "node-exporter", "log-shipper", *(r.value for r in Role)]
# Each stand-in reports: its name, the files it got and their directory's mode, and the
# command line of the shell that started it (what `ps` on the VM would show).
FAKE_SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
echo "changed: {name}"
if [ -n "${{KONGSTACK_FILES:-}}" ]; then
  stat -c %a "$KONGSTACK_FILES" > "{record}/{name}.mode"
  echo "$KONGSTACK_FILES" > "{record}/{name}.dir"
  cp -r "$KONGSTACK_FILES" "{record}/{name}.files"
fi
tr '\\0' ' ' < /proc/$PPID/cmdline > "{record}/{name}.cmdline"
"""


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture()
def fake_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    scripts, record = tmp_path / "install", tmp_path / "record"
    scripts.mkdir()
    record.mkdir()
    for name in ROLE_SCRIPTS:
        (scripts / f"{name}.sh").write_text(FAKE_SCRIPT.format(name=name, record=record))
    monkeypatch.setattr(remote, "INSTALL_DIR", scripts)
    # every "VM" is this machine; parallel installs are safe (unique remote script paths)
    return record


def loopback_hosts(topo: Topology, server: SshServer) -> list[Host]:
    """Every VM of the topology is the loopback sshd; private addresses are only rendered."""
    return [Host(vm.name, tuple(vm.roles), server.host, f"10.20.1.{4 + i}", server.user,
                 ssh_port=server.port) for i, vm in enumerate(topo.vms)]


def with_receivers(tmp_path: Path) -> Topology:
    return azure_topology(tmp_path, monitoring={
        "alertmanager": {
            "slack": {"channel": "#ops", "api_url": {"env": "TEST_KONGSTACK_SLACK_URL"}},
            "email": {"to": "ops@example.com", "from": "am@example.com",
                      "smarthost": "smtp.example.com:587", "auth_username": "am",
                      "auth_password": {"env": "TEST_KONGSTACK_SMTP_PASSWORD"}},
        },
        "alerts": {"host_high_cpu": {"value": 90, "for": "10m"}},
    })


def files_by_script(topo: Topology, hosts: list[Host]) -> dict[tuple[str, str], list[str]]:
    bundle = render_bundle(topo, hosts, instance_targets(topo, hosts))
    return {(h.vm, s.script): [f.path for f in s.files]
            for h in hosts for s in host_steps(topo, h, hosts, bundle)}


def test_each_role_gets_the_files_it_installs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_KONGSTACK_SLACK_URL", SLACK_URL)
    monkeypatch.setenv("TEST_KONGSTACK_SMTP_PASSWORD", SMTP_PASSWORD)
    topo = with_receivers(tmp_path)
    hosts = [Host(vm.name, tuple(vm.roles), f"203.0.113.{i}", f"10.20.1.{4 + i}")
             for i, vm in enumerate(topo.vms)]
    files = files_by_script(topo, hosts)
    assert files[("vm-monitoring", "prometheus")] == [
        "prometheus.yml", "rules/kongstack.rules.yml", "targets/stock_api.json"]
    assert files[("vm-monitoring", "alertmanager")] == [
        "alertmanager.yml", "secrets/slack_api_url", "secrets/smtp_auth_password"]
    assert files[("vm-logs", "log-forwarder")] == [
        "fluent-bit.conf", "parsers.conf", "fluent-bit.env"]
    assert files[("vm-kong", "log-shipper")] == ["fluent-bit.conf", "parsers.conf",
                                                  "fluent-bit.env"]
    assert files[("vm-kong", "kong")] == ["kong.conf"]
    assert "provisioning/datasources/kongstack.yml" in files[("vm-monitoring", "grafana")]
    assert "dashboards/backend-pool.json" in files[("vm-monitoring", "grafana")]
    # every VM runs the node exporter; only the VM that writes request logs ships them
    assert [vm for (vm, script) in files if script == "node-exporter"] == [
        "vm-kong", "vm-logs", "vm-monitoring"]
    assert [vm for (vm, script) in files if script == "log-shipper"] == ["vm-kong"]
    order = [script for (vm, script) in files if vm == "vm-kong"]
    assert order[:2] == ["common", "node-exporter"] and order[-1] == "log-shipper"


def test_prometheus_config_scrapes_private_addresses_and_passes_promtool(
    tmp_path: Path,
) -> None:
    promtool = require_binary("promtool")
    topo = azure_topology(tmp_path)
    hosts = [Host(vm.name, tuple(vm.roles), f"203.0.113.{i}", f"10.20.1.{4 + i}")
             for i, vm in enumerate(topo.vms)]
    bundle = render_bundle(topo, hosts, instance_targets(topo, hosts))
    assert bundle.monitoring is not None
    staged = tmp_path / "staged"
    for rel, body in bundle.monitoring.prometheus.items():
        (staged / rel).parent.mkdir(parents=True, exist_ok=True)
        (staged / rel).write_bytes(body)
    doc = yaml.safe_load((staged / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert jobs["kong"]["static_configs"][0]["targets"] == ["10.20.1.4:8001"]
    assert jobs["node"]["static_configs"][0]["targets"] == [
        "10.20.1.4:9100", "10.20.1.5:9100", "10.20.1.6:9100"]
    assert jobs["redis"]["static_configs"][0]["targets"] == ["10.20.1.6:9121"]
    assert doc["rule_files"] == ["rules/kongstack.rules.yml"]
    assert doc["global"]["external_labels"] == {"stack": topo.name}
    targets = json.loads((staged / "targets/stock_api.json").read_text())
    assert targets[0]["targets"] == ["10.20.1.4:3021", "10.20.1.4:3022", "10.20.1.4:3023"]
    result = subprocess.run([promtool, "check", "config", str(staged / "prometheus.yml")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


def test_explicit_scrape_targets_in_the_topology_win(tmp_path: Path) -> None:
    topo = azure_topology(tmp_path, monitoring={"scrape": {"node_exporter": ["metrics:9100"]}})
    hosts = [Host(vm.name, tuple(vm.roles), f"203.0.113.{i}", f"10.20.1.{4 + i}")
             for i, vm in enumerate(topo.vms)]
    bundle = render_bundle(topo, hosts, [])
    assert bundle.monitoring is not None
    doc = yaml.safe_load(bundle.monitoring.prometheus["prometheus.yml"])
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert jobs["node"]["static_configs"][0]["targets"] == ["metrics:9100"]
    assert jobs["kong"]["static_configs"][0]["targets"] == ["10.20.1.4:8001"]  # derived


def test_a_missing_secret_fails_before_any_host_is_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_KONGSTACK_SLACK_URL", raising=False)
    monkeypatch.setenv("TEST_KONGSTACK_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setattr(provider_secrets, "read_secret", _secrets_of(None))
    topo = with_receivers(tmp_path)
    # nothing listens on port 1: any connection attempt would fail differently
    hosts = [Host(vm.name, tuple(vm.roles), "127.0.0.1", None, "root", ssh_port=1)
             for vm in topo.vms]
    with pytest.raises(ConfigError, match="TEST_KONGSTACK_SLACK_URL is not set"):
        remote.install_hosts(topo, hosts, private_key="unused", known_hosts=tmp_path / "kh",
                             log=lambda _: None)


def _secrets_of(private_key: str | None) -> Any:
    """read_secret for these tests: the stack's tokens, and the SSH key."""
    values = {"instance_secret": GATEWAY_SECRET, "log_token_secret": LOG_TOKEN,
              "ssh.private_key_secret": private_key}

    def read(block: str | None, field: str) -> str:
        value = values.get(field)
        if value is None:
            raise ConfigError(f"{field}: Secret block {block!r} not found")
        return value
    return read


def test_a_missing_stack_secret_fails_before_any_host_is_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(block: str | None, field: str) -> str:
        raise ConfigError(f"{field}: Secret block {block!r} not found")

    monkeypatch.setattr(provider_secrets, "read_secret", missing)
    topo = azure_topology(tmp_path)
    hosts = [Host(vm.name, tuple(vm.roles), "127.0.0.1", None, "root", ssh_port=1)
             for vm in topo.vms]
    with pytest.raises(ConfigError, match="instance_secret: Secret block 'test-instance-secret'"):
        remote.install_hosts(topo, hosts, private_key="unused", known_hosts=tmp_path / "kh",
                             log=lambda _: None)


class _EsDouble(BaseHTTPRequestHandler):
    puts: list[str] = []

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        json.loads(body)
        type(self).puts.append(self.path)
        payload = b'{"acknowledged": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def es_double() -> Iterator[tuple[int, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EsDouble)
    _EsDouble.puts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), _EsDouble.puts
    finally:
        server.shutdown()
        server.server_close()


def test_install_step_uploads_each_roles_files_privately_over_ssh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ssh_server: SshServer,
    fake_install: Path, es_double: tuple[int, list[str]],
) -> None:
    monkeypatch.setenv("TEST_KONGSTACK_SLACK_URL", SLACK_URL)
    monkeypatch.setenv("TEST_KONGSTACK_SMTP_PASSWORD", SMTP_PASSWORD)
    es_port, es_puts = es_double
    data = with_receivers(tmp_path).model_dump(mode="json", by_alias=True)
    data["vms"][1]["services"][1]["ports"]["http"] = es_port  # elasticsearch on vm-logs
    topo = Topology.model_validate(data)
    (tmp_path / "known_hosts").write_text(ssh_server.known_hosts_line())
    monkeypatch.setattr(provider_secrets, "read_secret", _secrets_of(ssh_server.user_private_key))
    hosts = loopback_hosts(topo, ssh_server)

    out = AzureProvider(topo, log=lambda _: None).install(Provisioned(hosts=tuple(hosts)))

    changes = out.changes
    for host in hosts:
        ran = [c.split(": ", 1)[1] for c in changes if c.startswith(f"{host.vm}: ")]
        assert ran[:2] == ["common", "node-exporter"], ran
        assert ran[2:2 + len(host.roles)] == [r.value for r in host.roles]
    got = fake_install
    # the files each script found in $KONGSTACK_FILES, as the deployer rendered them
    prom = yaml.safe_load((got / "prometheus.files/prometheus.yml").read_text())
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "10.20.1.6:9093"]
    assert (got / "prometheus.files/rules/kongstack.rules.yml").read_text().startswith("#")
    assert (got / "alertmanager.files/secrets/slack_api_url").read_text() == SLACK_URL
    assert (got / "alertmanager.files/secrets/smtp_auth_password").read_text() == SMTP_PASSWORD
    am = (got / "alertmanager.files/alertmanager.yml").read_text()
    assert "/etc/prometheus/alertmanager-secrets/slack_api_url" in am and SLACK_URL not in am
    shipper = (got / "log-shipper.files/fluent-bit.conf").read_text()
    assert "Host              10.20.1.5" in shipper
    # the stack's secrets reach the roles that need them as files only
    assert (got / "stock-api.files/stock-api.env").read_text() == \
        f"GATEWAY_SECRET={GATEWAY_SECRET}\n"
    assert f"KONGSTACK_LOG_TOKEN='{LOG_TOKEN}'" in (
        got / "log-shipper.files/fluent-bit.env").read_text()
    assert f"KONGSTACK_LOG_TOKEN='{LOG_TOKEN}'" in (
        got / "log-forwarder.files/fluent-bit.env").read_text()
    assert f'"Bearer {LOG_TOKEN}" 1;' in (got / "log-forwarder.files/log-gate.conf").read_text()
    assert LOG_TOKEN not in shipper
    for script in ("stock-api", "log-shipper", "log-forwarder"):
        cmdline = (got / f"{script}.cmdline").read_text()
        assert GATEWAY_SECRET not in cmdline and LOG_TOKEN not in cmdline, script
    datasources = yaml.safe_load(
        (got / "grafana.files/provisioning/datasources/kongstack.yml").read_text())
    prom_ds = next(d for d in datasources["datasources"] if d["type"] == "prometheus")
    assert prom_ds["uid"] == "kongstack-prometheus"
    # staging directories were private while they existed, and are gone now
    for name in ("prometheus", "alertmanager", "log-forwarder", "log-shipper", "grafana"):
        staged_dir = Path((got / f"{name}.dir").read_text().strip())
        assert not staged_dir.exists(), staged_dir
        assert (got / f"{name}.mode").read_text().strip() == "700"
    assert not (got / "redis.dir").exists()  # a script without files gets none
    # secrets travel as files, never on the command line that `ps` shows on the VM
    cmdline = (got / "alertmanager.cmdline").read_text()
    assert "KONGSTACK_FILES=" in cmdline
    assert SLACK_URL not in cmdline and SMTP_PASSWORD not in cmdline
    # the log store's template, policy and pipeline were installed after the hosts
    # (in this order: the template names the policy and the pipeline)
    assert es_puts == ["/_ilm/policy/kongstack-logs", "/_ingest/pipeline/kongstack-logs",
                       "/_index_template/kongstack-logs"]
    assert any("index template kongstack-logs" in n for n in out.notes)


def test_staging_directory_is_created_private(
    tmp_path: Path, ssh_server: SshServer
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(ssh_server.known_hosts_line())
    target = SSHTarget(host=ssh_server.host, port=ssh_server.port, username=ssh_server.user,
                       private_key=ssh_server.user_private_key, known_hosts=known,
                       connect_timeout=5)
    directory = Path(upload(target, "probe", [StagedFile("a/b.txt", b"x", secret=True)],
                            retries=0))
    try:
        assert oct(directory.stat().st_mode)[-3:] == "700"
        assert oct((directory / "a").stat().st_mode)[-3:] == "700"
        assert (directory / "a" / "b.txt").read_bytes() == b"x"
    finally:
        remove(target, str(directory), lambda _: None)
    assert not directory.exists()


@pytest.mark.parametrize("bad", ["/etc/passwd", "../escape", "a/../../b"])
def test_staged_paths_must_stay_inside_the_directory(bad: str) -> None:
    target = SSHTarget(host="127.0.0.1", port=1)
    with pytest.raises(InstallError, match="must be relative"):
        upload(target, "probe", [StagedFile(bad, b"x")], retries=0)

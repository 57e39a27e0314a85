"""The per-role install scripts: one per role, strict mode, valid bash, idempotent helpers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from kongstack.core.topology import Role
from tasks.providers.azure.remote import INSTALL_DIR, script_for
from tests.support.services import require_binary

SCRIPTS = sorted(INSTALL_DIR.glob("*.sh"))
ME = '"$(id -un):$(id -gn)"'  # file owner for the helpers when the tests do not run as root


def test_every_role_has_a_script() -> None:
    for role in Role:
        assert script_for(role).exists()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_strict_and_parses(script: Path) -> None:
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines[:6]
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=10)
    assert not re.search(r"(password|secret|token)\s*=\s*\S", script.read_text(), re.I)


def lib_file(tmp_path: Path) -> Path:
    text = (INSTALL_DIR / "common.sh").read_text()
    body = text.split("<<'LIBEOF'\n", 1)[1].split("\nLIBEOF\n", 1)[0]
    lib = tmp_path / "lib.sh"
    lib.write_text(body + "\n")
    return lib


def bash(lib: Path, snippet: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f"set -euo pipefail; . {lib}; {snippet}"],
                          capture_output=True, text=True, timeout=10)


def test_write_file_changes_only_when_content_differs(tmp_path: Path) -> None:
    lib, target = lib_file(tmp_path), tmp_path / "etc" / "app.conf"
    snippet = f"if write_file {target} 0640 <<< 'port 1'; then echo RESTART; fi"
    first = bash(lib, snippet)
    assert first.stdout.splitlines() == [f"changed: wrote {target}", "RESTART"]
    assert oct(target.stat().st_mode)[-3:] == "640"
    assert bash(lib, snippet).stdout == ""  # unchanged: no change line, no restart
    changed = bash(lib, snippet.replace("port 1", "port 2"))
    assert "RESTART" in changed.stdout and target.read_text() == "port 2\n"


def test_require_env_names_the_missing_variable(tmp_path: Path) -> None:
    result = bash(lib_file(tmp_path), "require_env KONGSTACK_STOCK_API_IMAGE")
    assert result.returncode == 1
    assert "KONGSTACK_STOCK_API_IMAGE is not set" in result.stderr


def test_put_file_replaces_only_changed_content_and_repairs_mode(tmp_path: Path) -> None:
    lib, src, dest = lib_file(tmp_path), tmp_path / "src.yml", tmp_path / "etc" / "app.yml"
    src.write_text("a: 1\n")
    snippet = f"if put_file {src} {dest} 0600 {ME}; then echo RELOAD; fi"
    assert bash(lib, snippet).stdout.splitlines() == [f"changed: wrote {dest}", "RELOAD"]
    assert oct(dest.stat().st_mode)[-3:] == "600"
    assert bash(lib, snippet).stdout == ""  # same content and mode: nothing to reload
    dest.chmod(0o644)  # drift: a secret file made world-readable
    assert "RELOAD" in bash(lib, snippet).stdout and oct(dest.stat().st_mode)[-3:] == "600"
    src.write_text("a: 2\n")
    assert "RELOAD" in bash(lib, snippet).stdout and dest.read_text() == "a: 2\n"


def test_sync_dir_installs_new_files_and_removes_stale_ones(tmp_path: Path) -> None:
    lib, src, dest = lib_file(tmp_path), tmp_path / "staged" / "secrets", tmp_path / "secrets"
    src.mkdir(parents=True)
    (src / "slack_api_url").write_text("https://hooks.invalid/x")
    dest.mkdir()
    (dest / "smtp_auth_password").write_text("old")  # a receiver that was removed
    snippet = f"if sync_dir {src} {dest} 0600 {ME}; then echo RELOAD; fi"
    out = bash(lib, snippet).stdout.splitlines()
    assert out[-1] == "RELOAD" and f"changed: removed {dest}/smtp_auth_password" in out
    assert sorted(p.name for p in dest.iterdir()) == ["slack_api_url"]
    assert oct((dest / "slack_api_url").stat().st_mode)[-3:] == "600"
    assert bash(lib, snippet).stdout == ""
    # nothing staged (no receivers with secrets): every secret file goes
    missing = tmp_path / "staged" / "none"
    emptied = bash(lib, f"if sync_dir {missing} {dest} 0600 {ME}; then echo RELOAD; fi")
    assert "RELOAD" in emptied.stdout
    assert list(dest.iterdir()) == []


def test_set_line_keeps_exactly_one_line_per_key(tmp_path: Path) -> None:
    lib, defaults = lib_file(tmp_path), tmp_path / "prometheus-mongodb-exporter"
    defaults.write_text("# comment\nMONGODB_URL='mongodb://localhost:27017'\nARGS=''\n")
    snippet = f"if set_line {defaults} MONGODB_URL \"'mongodb://10.0.0.4:5044'\"; then echo R; fi"
    first = bash(lib, snippet)
    assert first.stdout.splitlines() == [f"changed: set MONGODB_URL in {defaults}", "R"]
    assert "10.0.0.4" not in first.stdout  # the value may hold a password: never printed
    assert bash(lib, snippet).stdout == ""
    lines = defaults.read_text().splitlines()
    assert lines.count("MONGODB_URL='mongodb://10.0.0.4:5044'") == 1
    assert "ARGS=''" in lines and "# comment" in lines


def test_staged_names_the_missing_rendered_file(tmp_path: Path) -> None:
    lib = lib_file(tmp_path)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "prometheus.yml").write_text("x")
    ok = bash(lib, f"KONGSTACK_FILES={tmp_path}/files; staged prometheus.yml")
    assert ok.stdout.strip() == f"{tmp_path}/files/prometheus.yml"
    missing = bash(lib, f"KONGSTACK_FILES={tmp_path}/files; staged rules/kongstack.rules.yml")
    assert missing.returncode == 1 and "rules/kongstack.rules.yml missing" in missing.stderr
    unset = bash(lib, "unset KONGSTACK_FILES; staged prometheus.yml")
    assert unset.returncode == 1 and "KONGSTACK_FILES is not set" in unset.stderr


def test_wait_loaded_waits_for_a_successful_reload_after_the_change(tmp_path: Path) -> None:
    lib, metrics = lib_file(tmp_path), tmp_path / "metrics"
    url = f"file://{metrics}"
    metrics.write_text("prometheus_config_last_reload_successful 1\n"
                       "prometheus_config_last_reload_success_timestamp_seconds 1.7e+09\n")
    assert bash(lib, f"loaded_since {url} prometheus 1600000000").returncode == 0
    stale = bash(lib, f"loaded_since {url} prometheus 1800000000")  # reloaded before the change
    assert stale.returncode == 1
    metrics.write_text("prometheus_config_last_reload_successful 0\n"
                       "prometheus_config_last_reload_success_timestamp_seconds 1.7e+09\n")
    failed = bash(lib, f"wait_loaded {url} prometheus 1600000000 1")
    assert failed.returncode == 1 and "did not load its new configuration" in failed.stderr


def test_exporters_keep_the_mongodb_uri_off_the_command_line() -> None:
    text = (INSTALL_DIR / "exporters.sh").read_text()
    args_lines = [ln for ln in text.splitlines() if "ARGS=" in ln]
    assert args_lines and not any("mongodb://" in ln for ln in args_lines)
    assert "MONGODB_URL=" in text


def test_configs_come_from_the_deployer_not_from_inline_copies() -> None:
    for name, files in {"prometheus.sh": ["prometheus.yml", "rules/kongstack.rules.yml"],
                        "alertmanager.sh": ["alertmanager.yml"],
                        "log-forwarder.sh": ["fluent-bit.conf", "parsers.conf"],
                        "log-shipper.sh": ["fluent-bit.conf", "parsers.conf"]}.items():
        text = (INSTALL_DIR / name).read_text()
        assert "<<CONF" not in text, name
        for rel in files:
            assert f"staged {rel}" in text or f"staged {rel})" in text, (name, rel)


def test_nginx_site_with_json_access_log_passes_nginx_t(tmp_path: Path) -> None:
    nginx = require_binary("/usr/sbin/nginx")
    text = (INSTALL_DIR / "nginx.sh").read_text()
    heredoc = text.split("<<CONF\n", 1)[1].split("\nCONF\n", 1)[0]
    rendered = subprocess.run(
        ["bash", "-c", "set -euo pipefail; PORT=18080; "
         "servers=$'    server 127.0.0.1:3021;\\n'; cat <<CONF\n" + heredoc + "\nCONF\n"],
        capture_output=True, text=True, timeout=10, check=True).stdout
    assert "log_format kongstack_json escape=json" in rendered
    site = tmp_path / "kongstack.conf"
    site.write_text(rendered.replace("/var/log/kongstack/", f"{tmp_path}/"))
    main = tmp_path / "nginx.conf"
    main.write_text(f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\n"
                    f"events {{}}\nhttp {{ access_log off; include {site}; }}\n")
    result = subprocess.run([nginx, "-t", "-q", "-e", str(tmp_path / "error.log"),
                             "-p", str(tmp_path), "-c", str(main)],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr

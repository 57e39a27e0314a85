"""Generated Prometheus/Alertmanager config: valid for promtool/amtool, rules unit-tested,
committed files current, config errors name the field, secrets never rendered."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from kongstack.core.errors import ConfigError
from kongstack.core.settings import REPO_ROOT
from tasks.monitoring import (
    MonitoringConfig,
    load_monitoring_config,
    parse_monitoring_config,
    write_alertmanager_secrets,
    write_monitoring_files,
)
from tasks.monitoring.__main__ import COMMITTED_SECRETS_DIR
from tasks.monitoring.rules import RecordedNames, runbook_anchor
from tests.support.services import require_binary

DEPLOY = REPO_ROOT / "deployments"
MONITORING_YAML = DEPLOY / "prometheus" / "monitoring.yaml"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _ok(*argv: str) -> str:
    result = _run(*argv)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


FULL = {
    "scrape": {"gateway": "kong", "kong": ["127.0.0.1:8100"], "nginx_exporter": [],
               "redis_exporter": ["127.0.0.1:9121"], "mongodb_exporter": ["127.0.0.1:9216"],
               "node_exporter": ["127.0.0.1:9100"]},
    "alertmanager": {
        "email": {"to": "ops@example.com", "from": "am@example.com",
                  "smarthost": "smtp.example.com:587", "auth_username": "am",
                  "auth_password": {"env": "KONGSTACK_TEST_SMTP_PASSWORD"}},
        "slack": {"channel": "#ops", "api_url": {"env": "KONGSTACK_TEST_SLACK_URL"}},
        "teams": {"bridge_url": "http://127.0.0.1:2000/kongstack"},
    },
}


@pytest.mark.parametrize("data", [{}, FULL, {"scrape": {"nginx_exporter": ["127.0.0.1:9113"]}}],
                         ids=["defaults", "kong-and-every-receiver", "nginx-exporter"])
def test_rendered_files_pass_promtool_and_amtool(tmp_path: Path, data: dict[str, object]) -> None:
    require_binary("promtool")
    require_binary("amtool")
    files = write_monitoring_files(parse_monitoring_config(data), tmp_path)
    out = _ok("promtool", "check", "config", str(files.prometheus_config))
    assert "SUCCESS" in out and "lint" not in out.lower()
    _ok("promtool", "check", "rules", str(files.rules))
    _ok("amtool", "check-config", str(files.alertmanager_config))


def test_promtool_unit_tests_prove_alerts_fire_and_resolve_and_rules_compute() -> None:
    require_binary("promtool")
    tests = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
    assert tests
    _ok("promtool", "test", "rules", *map(str, tests))
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "kongstack.rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    covered: dict[str, set[str]] = {}
    for test_file in tests:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                state = "firing" if check["exp_alerts"] else "quiet"
                covered.setdefault(check["alertname"], set()).add(state)
    assert alerts == set(covered), "every alert needs a promtool test"
    assert all(states == {"firing", "quiet"} for states in covered.values()), covered
    checked = {t["expr"] for f in tests for case in yaml.safe_load(f.read_text())["tests"]
               for t in case.get("promql_expr_test", [])}
    names = RecordedNames("1m")
    assert {names.request_rate, names.latency_p95, names.error_ratio} <= checked


def test_committed_files_match_the_committed_config(tmp_path: Path) -> None:
    cfg = load_monitoring_config(MONITORING_YAML)
    files = write_monitoring_files(cfg, tmp_path, secrets_dir=COMMITTED_SECRETS_DIR)
    for rendered in (files.prometheus_config, files.rules, files.alertmanager_config):
        committed = DEPLOY / rendered.relative_to(tmp_path)
        assert committed.read_text() == rendered.read_text(), (
            f"{committed} is stale: python -m tasks.monitoring {MONITORING_YAML} deployments")


def test_thresholds_and_durations_come_from_config(tmp_path: Path) -> None:
    cfg = parse_monitoring_config({"alerts": {"slow_responses": {"value": 250, "for": "45s"}}})
    files = write_monitoring_files(cfg, tmp_path)
    rules = yaml.safe_load(files.rules.read_text())
    slow = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "SlowResponses")
    assert slow["expr"].endswith("> 0.25") and slow["for"] == "45s"  # ms -> seconds


def test_request_rate_threshold_comes_from_config_and_rules_count_only_api_routes(
    tmp_path: Path,
) -> None:
    cfg = parse_monitoring_config({"alerts": {"high_request_rate": {"value": 25, "for": "30s"}}})
    rules = yaml.safe_load(write_monitoring_files(cfg, tmp_path).rules.read_text())
    high = next(r for g in rules["groups"] for r in g["rules"]
                if r.get("alert") == "HighRequestRate")
    assert high["expr"].endswith("> 25") and high["for"] == "30s"
    backend = [r for r in rules["groups"][0]["rules"] if "stock_api_request" in r["expr"]]
    assert backend and all('route=~"/api.*"' in r["expr"] for r in backend)


def test_kong_gateway_adds_its_job_and_gateway_recording_rules(tmp_path: Path) -> None:
    files = write_monitoring_files(parse_monitoring_config(FULL), tmp_path)
    prom = yaml.safe_load(files.prometheus_config.read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert set(jobs) == {"prometheus", "kong", "stock_api", "redis", "mongodb", "node"}
    assert jobs["kong"]["static_configs"][0]["targets"] == ["127.0.0.1:8100"]
    assert jobs["stock_api"]["file_sd_configs"][0]["files"] == ["targets/stock_api.json"]
    records = yaml.safe_load(files.rules.read_text())["groups"][0]["rules"]
    gateway = [r for r in records if r["record"].startswith("service:")]
    names = RecordedNames("1m")
    assert {r["record"] for r in gateway} == {
        names.kong_request_rate, names.kong_latency_p95, names.kong_error_ratio}
    assert all("kong_" in r["expr"] for r in gateway)


@pytest.mark.parametrize(("data", "field"), [
    ({"scrape": {"scrape_intervall": "1s"}}, "scrape.scrape_intervall"),
    ({"scrape": {"scrape_interval": "soon"}}, "scrape.scrape_interval"),
    ({"scrape": {"node_exporter": ["localhost"]}}, "scrape.node_exporter.0"),
    ({"alerts": {"host_high_cpu": {"value": "high"}}}, "alerts.host_high_cpu.value"),
    ({"alertmanager": {"slack": {"channel": "#x", "api_url": {}}}}, "alertmanager.slack.api_url"),
    ({"alertmanager": {"fastpath_group_interval": "5s"}}, "fastpath_group_interval"),
])
def test_config_errors_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_monitoring_config(data)


def test_secrets_are_referenced_by_file_and_never_rendered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONGSTACK_TEST_SMTP_PASSWORD", "smtp-pw-31337")
    monkeypatch.setenv("KONGSTACK_TEST_SLACK_URL", "https://hooks.slack.test/T0/B0/xyz")
    cfg = MonitoringConfig.model_validate(FULL)
    files = write_monitoring_files(cfg, tmp_path, resolve_secrets=True)
    rendered = "".join(p.read_text() for p in (files.prometheus_config, files.alertmanager_config))
    assert "smtp-pw-31337" not in rendered and "hooks.slack.test" not in rendered
    am = yaml.safe_load(files.alertmanager_config.read_text())
    operators = next(r for r in am["receivers"] if r["name"] == "operators")
    password_file = Path(operators["email_configs"][0]["auth_password_file"])
    assert password_file.read_text() == "smtp-pw-31337"
    assert Path(operators["slack_configs"][0]["api_url_file"]).read_text().startswith("https://")
    assert oct(password_file.stat().st_mode & 0o777) == "0o600"


def test_missing_secret_is_a_config_error_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KONGSTACK_TEST_SMTP_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="KONGSTACK_TEST_SMTP_PASSWORD"):
        write_alertmanager_secrets(MonitoringConfig.model_validate(FULL), tmp_path)


def test_alertmanager_routes_autoscale_alerts_to_the_webhook_and_inhibits_per_instance() -> None:
    am = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    fast = am["route"]["routes"][0]
    assert fast["receiver"] == "autoscale-fastpath" and fast["matchers"] == ['autoscale="true"']
    # immediate first delivery; a group interval long enough for the webhook to answer
    assert (fast["group_wait"], fast["group_interval"], fast["repeat_interval"]) == (
        "0s", "10s", "1m")
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "kongstack.rules.yml").read_text())
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert by_name["HighRequestRate"]["labels"]["autoscale"] == "true"
    webhook = next(r for r in am["receivers"] if r["name"] == "autoscale-fastpath")
    assert webhook["webhook_configs"][0]["url"].endswith("/alerts")
    down = am["inhibit_rules"][0]
    assert "InstanceDown" in down["source_matchers"][0]
    assert "InstanceSlowResponses" in down["target_matchers"][0]
    assert down["equal"] == ["instance"]


RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
# level:metric:operations; base units only (no ms, percent or MiB in a recorded name).
RECORD_NAME = re.compile(r"^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$")


def _heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    return {re.sub(r"[^a-z0-9 _-]", "", m.group(1).strip().lower()).replace(" ", "-")
            for m in re.finditer(r"^#{1,6} (.+)$", markdown, re.MULTILINE)}


@pytest.mark.parametrize("data", [{}, FULL], ids=["defaults", "kong"])
def test_recording_rules_follow_the_naming_convention_in_base_units(
    tmp_path: Path, data: dict[str, object],
) -> None:
    rules = yaml.safe_load(write_monitoring_files(parse_monitoring_config(data), tmp_path)
                           .rules.read_text())
    names = [r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r]
    assert names and all(RECORD_NAME.match(n) for n in names), names
    assert not [n for n in names if re.search(r"(^|_)(ms|percent|mib)(_|$)", n.split(":")[2]
                                             + "_" + n.split(":")[1])], names
    assert len(names) == len(set(names)), "one name, one series family"


def test_every_alert_has_severity_summary_description_and_a_runbook_section() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "kongstack.rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    anchors = _heading_anchors(RUNBOOK.read_text())
    assert alerts
    for alert in alerts:
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}, alert["alert"]
        notes = alert["annotations"]
        assert set(notes) == {"summary", "description", "runbook_url"}, alert["alert"]
        assert notes["summary"] and len(notes["description"]) > len(notes["summary"]) / 2
        page, _, anchor = notes["runbook_url"].partition("#")
        assert page == "docs/runbook.md" and anchor == runbook_anchor(alert["alert"])
        assert anchor in anchors, f"docs/runbook.md has no section #{anchor}"


def test_runbook_sections_say_what_to_check_and_do() -> None:
    text = RUNBOOK.read_text()
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "kongstack.rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    by_alert = {s.splitlines()[0].strip(): s for s in sections}
    assert alerts <= set(by_alert)
    for name in alerts:
        body = by_alert[name]
        for part in ("**Means**", "**Check**", "**Do**"):
            assert part in body, f"{name}: no {part}"


def test_runbook_url_base_comes_from_config(tmp_path: Path) -> None:
    cfg = parse_monitoring_config(
        {"alerts": {"runbook_url": "https://docs.example.com/kongstack/runbook"}})
    rules = yaml.safe_load(write_monitoring_files(cfg, tmp_path).rules.read_text())
    urls = {r["annotations"]["runbook_url"] for g in rules["groups"] for r in g["rules"]
            if "alert" in r}
    assert "https://docs.example.com/kongstack/runbook#instancedown" in urls

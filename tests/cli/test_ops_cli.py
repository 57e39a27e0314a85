"""The operator CLI against a real local stack (gunicorn processes behind a real nginx)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from kongstack.cli.app import app
from kongstack.cli.views import StackOptions
from tasks.tick.lock import tick_lock
from tasks.tick.pool import build_driver, build_gateway
from tasks.tick.scaling_log import ScalingLog, ScalingLogEntry
from tests.support.ops_stack import LocalStack, local_stack

runner = CliRunner()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LocalStack]:
    with local_stack(tmp_path_factory.mktemp("cli"), redis_url, instances=2) as s:
        yield s


@pytest.fixture()
def env(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return stack.env() | {
        "KONGSTACK_STACK": stack.config.stack, "KONGSTACK_DRIVER": "process",
        "KONGSTACK_GATEWAY": "nginx", "KONGSTACK_AUTOSCALE_MIN_INSTANCES": "1",
        "KONGSTACK_AUTOSCALE_MAX_INSTANCES": "3", "COLUMNS": "200",
    }


def _addresses(stack: LocalStack) -> list[str]:
    return sorted(i.address for i in build_driver(stack.config).list())


def _targets(stack: LocalStack) -> list[str]:
    return sorted(t.address for t in build_gateway(stack.config).list_targets())


def test_status_shows_instances_targets_decisions_and_cooldown(
        stack: LocalStack, env: dict[str, str]) -> None:
    ScalingLog(stack.home / "data" / "history.sqlite").append(ScalingLogEntry(
        ts=datetime.now(UTC), kind="decision", from_count=2, to_count=2,
        reason="cpu 12% within tolerance", outcome="noop"))
    result = runner.invoke(app, ["status"], env=env)
    assert result.exit_code == 0, result.output
    for address in _addresses(stack):
        assert result.output.count(address) == 2  # once as an instance, once as a target
    assert "HEALTHY" in result.output
    assert "cpu 12% within tolerance" in result.output
    assert "Cooldown remaining" in result.output and "Prefect server not running" in result.output


def test_scale_respects_min_max_and_records_manual_events(
        stack: LocalStack, env: dict[str, str]) -> None:
    over = runner.invoke(app, ["scale", "5"], env=env)
    assert over.exit_code == 2 and "COUNT" in over.output and "--force" in over.output
    forced_dry = runner.invoke(app, ["scale", "5", "--force", "--dry-run"], env=env)
    assert forced_dry.exit_code == 0 and "would scale 2 → 5" in forced_dry.output
    assert len(_addresses(stack)) == 2

    before = set(_addresses(stack))
    up = runner.invoke(app, ["scale", "3", "--ready-timeout", "120"], env=env)
    assert up.exit_code == 0, up.output
    assert len(_addresses(stack)) == 3 and _targets(stack) == _addresses(stack)
    (added,) = set(_addresses(stack)) - before
    # The policy's victim_selection chooses, as in a tick: "oldest" keeps the one just added
    # (the default, "newest", would remove it).
    down = runner.invoke(app, ["scale", "2"],
                         env=env | {"KONGSTACK_AUTOSCALE_VICTIM_SELECTION": "oldest"})
    assert down.exit_code == 0, down.output
    assert len(_addresses(stack)) == 2 and _targets(stack) == _addresses(stack)
    assert added in _addresses(stack)

    manual = [e for e in ScalingLog(stack.home / "data" / "history.sqlite").recent(10)
              if e.kind == "manual"]
    assert [(e.from_count, e.to_count, e.source) for e in manual[:2]] == [
        (3, 2, "cli"), (2, 3, "cli")]
    assert runner.invoke(app, ["scale", "-1"], env=env).exit_code == 2


def test_scale_and_restart_wait_for_a_running_tick_then_refuse(
        stack: LocalStack, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tasks.tick.manual_scale.LOCK_WAIT_SECONDS", 0.5)
    config = StackOptions(stack=stack.config.stack, driver="process", gateway="nginx")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = _addresses(stack)
    with tick_lock(config.config().lock_file()) as held:
        assert held
        refused = runner.invoke(app, ["scale", "3"], env=env)
        restart = runner.invoke(app, ["restart", "--all"], env=env)
    assert refused.exit_code == 1 and "holds" in refused.output
    # A rolling restart is a change to the pool too: it never runs beside a tick.
    assert restart.exit_code == 1 and "holds" in restart.output
    assert _addresses(stack) == before


def test_logs_of_an_instance_and_of_the_gateway(stack: LocalStack, env: dict[str, str]) -> None:
    port = stack.local["gateway_port"]
    httpx.get(f"http://127.0.0.1:{port}/api/stocks", headers={"X-Correlation-ID": "cli-logs-1"},
              timeout=5)
    gateway = runner.invoke(app, ["logs", "gateway", "--tail", "20"], env=env)
    assert gateway.exit_code == 0 and "cli-logs-1" in gateway.output
    instance_port = _addresses(stack)[0].rsplit(":", 1)[1]
    inst = runner.invoke(app, ["logs", f"api-{instance_port}", "-n", "50"], env=env)
    assert inst.exit_code == 0 and inst.output.strip(), inst.output
    unknown = runner.invoke(app, ["logs", "no-such-thing"], env=env)
    assert unknown.exit_code == 2 and "NAME" in unknown.output and "gateway" in unknown.output


def test_logs_follow_prints_new_lines(stack: LocalStack, env: dict[str, str]) -> None:
    port = stack.local["gateway_port"]
    started = threading.Event()

    def request_soon() -> None:
        started.wait(5)
        for _ in range(20):  # a few requests while the follower polls
            httpx.get(f"http://127.0.0.1:{port}/api/stocks",
                      headers={"X-Correlation-ID": "cli-follow-2"}, timeout=5)
            if stop.wait(0.1):
                return

    stop = threading.Event()
    worker = threading.Thread(target=request_soon, daemon=True)
    worker.start()
    started.set()
    try:
        result = runner.invoke(app, ["logs", "gateway", "--tail", "0", "--follow",
                                     "--follow-seconds", "2"], env=env)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert result.exit_code == 0 and "cli-follow-2" in result.output


def test_health_reports_every_component(stack: LocalStack, env: dict[str, str]) -> None:
    result = runner.invoke(app, ["health"], env=env)
    assert result.exit_code == 0, result.output
    for component in ("gateway", "redis", "prometheus", "alertmanager", "prefect server"):
        assert component in result.output
    ready_instances = [line for line in result.output.splitlines()
                       if "instance kongstack-api-" in line and "/ready: HTTP 200" in line]
    assert len(ready_instances) == 2, result.output


def test_monitor_once_exports_rates_and_highlights_breaches(
        stack: LocalStack, env: dict[str, str], tmp_path: Path) -> None:
    address = _addresses(stack)[0]
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                client.get(f"http://{address}/health")

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        out = tmp_path / "metrics.json"
        result = runner.invoke(app, ["monitor", "--once", "--sample-seconds", "1",
                                     "--rps-threshold", "1", "--export", str(out)], env=env)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert result.exit_code == 0, result.output
    snapshot = json.loads(out.read_text())[0]
    rows = {r["address"]: r for r in snapshot["instances"]}
    assert rows[address]["rps"] > 1 and rows[address]["cpu_percent"] is not None
    assert any(a.startswith(f"{rows[address]['name']}: rps") for a in snapshot["alerts"])
    assert "ALERT" in result.output
    bad = runner.invoke(app, ["monitor", "--once", "--export", str(tmp_path / "x.csv")], env=env)
    assert bad.exit_code == 2 and "--export" in bad.output


def test_monitor_history_summarises_the_scaling_history(
        stack: LocalStack, env: dict[str, str]) -> None:
    store = ScalingLog(stack.home / "data" / "history.sqlite")
    base = datetime.now(UTC) - timedelta(hours=2)
    store.append_many([
        ScalingLogEntry(ts=base, kind="decision", from_count=2, to_count=2, reason="r",
                     outcome="noop", metrics={"rps": 10}),
        ScalingLogEntry(ts=base + timedelta(minutes=30), kind="scale_up", from_count=2,
                     to_count=3, reason="r", outcome="ok", metrics={"rps": 30}),
    ])
    result = runner.invoke(app, ["monitor", "--history", "1"], env=env)
    assert result.exit_code == 0, result.output
    assert "Scaling log, last 1 day(s)" in result.output
    assert "Time at each instance count" in result.output


def test_rolling_restart_replaces_every_instance(stack: LocalStack, env: dict[str, str]) -> None:
    before = _addresses(stack)
    began = datetime.now(UTC)
    result = runner.invoke(app, ["restart", "--all", "--ready-timeout", "120"], env=env)
    assert result.exit_code == 0, result.output
    after = build_driver(stack.config).list()
    assert len(after) == len(before)  # ports may be reused; the processes are new
    assert all(i.started_at >= began - timedelta(seconds=1) for i in after)
    assert _targets(stack) == _addresses(stack)
    (row, *_) = ScalingLog(stack.home / "data" / "history.sqlite").recent(1)
    assert (row.kind, row.source, row.outcome) == ("manual", "cli", "ok")
    assert (row.from_count, row.to_count) == (len(before), len(before))
    assert row.reason.startswith("rolling restart: replaced ") and row.ts >= began
    assert runner.invoke(app, ["restart"], env=env).exit_code == 2
    missing = runner.invoke(app, ["restart", "kongstack-api-1"], env=env)
    assert missing.exit_code == 2 and "INSTANCE" in missing.output


def test_bad_arguments_name_the_argument(env: dict[str, str]) -> None:
    bad_driver = runner.invoke(app, ["status", "--driver", "vm"], env=env)
    assert bad_driver.exit_code == 2 and "--driver" in bad_driver.output
    no_approver = runner.invoke(app, ["approve", "--latest"], env=env)
    assert no_approver.exit_code == 2 and "--approver" in no_approver.output
    both = runner.invoke(app, ["deny", "abc", "--latest", "--approver", "me"], env=env)
    assert both.exit_code == 2 and "RUN_ID" in both.output
    neither = runner.invoke(app, ["approve", "--approver", "me"], env=env)
    assert neither.exit_code == 2 and "RUN_ID" in neither.output


def test_status_json_has_every_fact_and_whole_reasons(
        stack: LocalStack, env: dict[str, str]) -> None:
    words = [f"w{n:02d}" for n in range(40)]  # a reason far longer than the old 80-char cut
    reason = "scale-up held: " + " ".join(words)
    ScalingLog(stack.home / "data" / "history.sqlite").append(ScalingLogEntry(
        ts=datetime.now(UTC), kind="decision", from_count=2, to_count=2, reason=reason,
        outcome="noop"))
    result = runner.invoke(app, ["status", "--json"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert sorted(i["address"] for i in doc["instances"]) == _addresses(stack)
    assert {t["health"] for t in doc["targets"]} == {"HEALTHY"}
    assert doc["decisions"][0]["reason"] == reason
    assert doc["policy"]["fields"]["max_instances"] == {"value": 3, "from": "environment"}
    assert "Prefect server not running" in doc["cooldowns"]["note"]
    table = runner.invoke(app, ["status"], env=env | {"COLUMNS": "100"})
    assert table.exit_code == 0 and all(w in table.output for w in words), table.output
    assert "…" not in table.output


def test_health_json_and_exit_code_3_when_redis_does_not_answer(
        stack: LocalStack, env: dict[str, str]) -> None:
    from kongstack.core.procs import free_port

    result = runner.invoke(app, ["health", "--json"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["exit_code"] == 0
    assert {c["component"] for c in doc["checks"]} >= {"gateway", "redis", "prefect server"}
    closed = runner.invoke(app, ["health", "--json"],
                           env=env | {"KONGSTACK_REDIS_PORT": str(free_port())})
    assert closed.exit_code == 3, closed.output
    redis = next(c for c in json.loads(closed.stdout)["checks"] if c["component"] == "redis")
    assert redis["ok"] is False and redis["answered"] is False


def test_scale_and_monitor_once_print_json(stack: LocalStack, env: dict[str, str]) -> None:
    planned = runner.invoke(app, ["scale", "3", "--dry-run", "--json"], env=env)
    assert planned.exit_code == 0, planned.output
    doc = json.loads(planned.stdout)
    assert (doc["from"], doc["to"], doc["outcome"], doc["dry_run"]) == (2, 3, "dry_run", True)
    same = json.loads(runner.invoke(app, ["scale", "2", "--json"], env=env).stdout)
    assert same["outcome"] == "noop" and same["from"] == same["to"] == 2
    once = runner.invoke(app, ["monitor", "--once", "--json", "--sample-seconds", "0.2"],
                         env=env)
    assert once.exit_code == 0, once.output
    reading = json.loads(once.stdout)
    assert sorted(r["address"] for r in reading["instances"]) == _addresses(stack)

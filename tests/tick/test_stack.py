"""The autoscale flow on a real local stack: nginx, Prometheus (1 s scrapes), stock API
instances, a real Prefect server. The flow is ticked directly (no 30 s schedule), with a
6 s stabilisation window and a 10 rps-per-instance target so a full cycle takes seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kongstack.cli.load import LoadGenerator, LoadReport
from kongstack.core.procs import Daemon, wait_until
from kongstack.core.settings import REPO_ROOT
from tasks.instances.base import Instance, InstanceState
from tasks.tick.scaling_log import ScalingLog
from tests.support.autoscale_stack import API_HEADERS, Stack

pytestmark = pytest.mark.slow


class Load:
    """A LoadGenerator in a background thread."""

    def __init__(self, stack: Stack, rps: float, duration: float = 120) -> None:
        self.gen = LoadGenerator(url=stack.gateway_url, rps=rps, duration=duration,
                                 timeout=10, max_in_flight=64, headers=API_HEADERS)
        self.report: LoadReport | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.report = self.gen.run()

    def stop(self) -> LoadReport:
        self.gen.stop.set()
        self.thread.join(timeout=30)
        assert self.report is not None
        return self.report


def served_by(stack: Stack) -> set[str]:
    """Instances that served API requests through the gateway in the last 5 s."""
    result = stack.prometheus.query(
        'sum by (instance) (rate(stock_api_requests_total{route=~"/api.*"}[5s])) > 0')
    return {r["metric"]["instance"] for r in result}


def tick_until(stack: Stack, done: Any, *, ticks: int, **kw: Any) -> list[dict[str, Any]]:
    seen = []
    for _ in range(ticks):
        seen.append(stack.tick(**kw))
        if done(seen[-1]):
            return seen
        time.sleep(1.0)  # let Prometheus take a fresh scrape between ticks
    raise AssertionError(f"not done after {ticks} ticks: {[s.get('reason') for s in seen]}")


def bootstrap(stack: Stack, size: int = 2) -> None:
    """Grow the empty pool to min_instances (a second tick covers a start that lost a race
    for its port with another test on this machine: the partial outcome is repaired)."""
    tick_until(stack, lambda t: t["after"] == size and len(stack.ready()) == size, ticks=2)


def kill(stack: Stack, instance: Instance) -> None:
    """Kill an instance the hard way (SIGKILL), as a crash would."""
    if stack.config.pool.driver == "docker":
        import docker

        client = docker.DockerClient(base_url=stack.config.pool.settings().docker_host)
        client.containers.get(instance.id).kill()
        return
    pid = Daemon(instance.name, stack.config.pool.settings().run_dir / "instances").pid()
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)


def test_load_step_scales_out_then_back_in_after_the_window_with_no_failed_requests(
    process_stack: Stack,
) -> None:
    s = process_stack
    bootstrap(s)  # empty pool -> min_instances
    assert s.targets() == s.ready()

    burst = Load(s, rps=40)  # 4x the per-instance target of 10 rps
    s.wait_rps(lambda v: v > 30, what="40 rps visible in Prometheus")
    up_at = time.monotonic()
    up = s.tick()
    assert (up["current"], up["desired"], up["after"]) == (2, 4, 4), up["reason"]
    assert len(s.ready()) == 4 and s.targets() == s.ready()
    wait_until(lambda: len(served_by(s)) == 4, timeout=20, what="all 4 instances serving")
    burst_report = burst.stop()
    assert burst_report.failed == 0, (burst_report.statuses, burst_report.errors)

    steady = Load(s, rps=8)  # one instance's worth: the pool may shrink back to min (2)
    s.wait_rps(lambda v: v < 12, what="load down to 8 rps")
    ticks: list[tuple[float, dict[str, Any]]] = []
    while not ticks or ticks[-1][1]["after"] != 2:
        assert len(ticks) < 12, [t["reason"] for _, t in ticks]
        ticks.append((time.monotonic(), s.tick()))
        time.sleep(0.5)
    down_at, down = ticks[-1]
    assert down["current"] in (3, 4) and "scale down" in down["reason"]
    window = s.config.policy.scale_down_stabilization_seconds
    assert down_at - up_at >= window  # never inside the stabilisation window
    held = [t for _, t in ticks[:-1]]
    assert all(t["after"] == 4 for t in held)  # earlier ticks held the pool
    assert len(s.ready()) == 2 and s.targets() == s.ready()
    report = steady.stop()
    assert report.ok > 50 and report.failed == 0, (report.statuses, report.errors)

    kinds = [e.kind for e in ScalingLog(s.config.record.scaling_log_path).recent(100)]
    assert "scale_up" in kinds and "scale_down" in kinds
    text = s.config.record.textfile_path.read_text()
    assert "kongstack_autoscaler_current_instances 2" in text


def _killed_backend_is_replaced(s: Stack) -> None:
    bootstrap(s)
    victim = s.driver().list()[0]
    kill(s, victim)
    wait_until(lambda: any(i.id == victim.id and i.state is InstanceState.EXITED
                           for i in s.driver().list()), timeout=15, what="the kill to be seen")
    ticks = tick_until(s, lambda t: len(s.ready()) == 2 and s.targets() == s.ready(), ticks=2)
    assert any("repair" in a for t in ticks for a in t["actions"])
    replaced = {i.address: i for i in s.driver().list()}
    # The replacement may reuse the freed port; it is a new instance either way.
    assert victim.address not in replaced or replaced[victim.address].started_at > (
        victim.started_at)
    assert s.get().status_code == 200
    kinds = {e.kind for e in ScalingLog(s.config.record.scaling_log_path).recent(20)}
    assert "repair" in kinds


def test_killed_backend_is_replaced_within_two_ticks(process_stack: Stack) -> None:
    _killed_backend_is_replaced(process_stack)


@pytest.mark.engine
def test_killed_container_is_replaced_within_two_ticks(docker_stack: Stack) -> None:
    _killed_backend_is_replaced(docker_stack)


def test_tick_killed_mid_scale_up_is_repaired_by_the_next(process_stack: Stack,
                                                          tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    s = process_stack
    bootstrap(s)
    grow = s.with_policy(min_instances=3)
    cfg = tmp_path / "tick-config.json"
    cfg.write_text(grow.model_dump_json())
    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()))
    # The tick runs in its own process (as a worker's run would) and is killed after it
    # started its new instance and before that instance became a gateway target.
    proc = subprocess.Popen([sys.executable, "-m", "tests.tick.doomed_tick", str(cfg)],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started", "the doomed tick never scaled up"
        proc.kill()
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert len(s.driver().list()) == 3
    assert len(s.targets()) == 2  # the crash left an instance the gateway does not know
    tick_until(s, lambda t: len(s.ready()) == 3 and s.targets() == s.ready(), ticks=3,
               config=grow)
    assert len(s.driver().list()) == 3  # repaired, not duplicated


def test_tick_killed_between_acting_and_recording_is_recorded_by_the_next(
        process_stack: Stack, tmp_path: Path) -> None:
    """Write-ahead records: the scale-up is done, the tick is killed before it records
    anything; the next tick records it truthfully as a scale-up (not "manual") and closes
    its intent."""
    from prefect.settings import PREFECT_API_URL

    s = process_stack
    bootstrap(s)
    grow = s.with_policy(min_instances=3)
    cfg = tmp_path / "tick-config.json"
    cfg.write_text(grow.model_dump_json())
    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()))
    log = ScalingLog(s.config.record.scaling_log_path)
    rows_before = log.count()
    proc = subprocess.Popen([sys.executable, "-m", "tests.tick.doomed_tick", str(cfg),
                             "recording"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "acted", "the doomed tick never acted"
        proc.kill()
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert len(s.ready()) == 3 and s.targets() == s.ready()  # acted...
    assert log.count() == rows_before  # ...and recorded nothing
    [intent] = log.open_intents()
    assert (intent.kind, intent.from_count, intent.to_count) == ("scale_up", 2, 3)

    after = s.tick(config=grow)
    assert after["actions"] == ["scale_up 2->3 ok"], after
    assert log.open_intents() == []
    row = next(e for e in log.recent(10) if e.kind == "scale_up")
    assert (row.from_count, row.to_count, row.outcome) == (2, 3, "ok")
    assert "written ahead" in row.reason
    assert not any(e.kind == "manual" for e in log.recent(10))
    assert s.tick(config=grow)["actions"] == []  # recorded once, nothing left open


def test_interrupted_scale_in_is_finished_by_the_next_tick(process_stack: Stack) -> None:
    s = process_stack
    bootstrap(s)
    wider = s.with_policy(min_instances=3)
    assert s.tick(config=wider)["after"] == 3
    victim = s.driver().list()[0]
    s.gateway().drain_target(victim.address)  # what a tick killed after draining leaves
    result = s.tick(config=wider)
    assert any(a.startswith("repair") for a in result["actions"])
    now = {i.address: i for i in s.driver().list()}
    assert victim.address not in now or now[victim.address].started_at > victim.started_at
    assert all(t.weight > 0 for t in s.gateway().list_targets())  # nothing left draining
    wait_until(lambda: len(s.ready()) == 3 and s.targets() == s.ready(), timeout=5,
               what="pool back at 3")


def test_prometheus_down_blocks_scale_in_and_manual_scaling_is_respected(
    process_stack: Stack,
) -> None:
    s = process_stack
    bootstrap(s)
    # An operator adds a backend by hand.
    driver, gateway = s.driver(), s.gateway()
    extra = driver.wait_ready(driver.start(), timeout=60)
    gateway.add_target(extra.address)
    seen = s.tick()
    assert seen["after"] == 3 and any(a.startswith("manual 2->3") for a in seen["actions"])

    s.prometheus.stop()
    time.sleep(s.config.policy.scale_down_stabilization_seconds + 1)  # the window passes
    blind = s.tick()
    assert blind["after"] == 3, blind["reason"]
    assert "no fresh" in blind["reason"] or "scale-down blocked" in blind["reason"]

    s.prometheus.start()  # same data, same port: the control that scale-in was possible
    wait_until(lambda: s.scraping() == 3, timeout=30, what="Prometheus scraping again")
    tick_until(s, lambda t: t["after"] == 2, ticks=10)
    kinds = [e.kind for e in ScalingLog(s.config.record.scaling_log_path).recent(50)]
    assert "manual" in kinds


def test_two_ticks_started_at_once_one_runs(process_stack: Stack,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The first tick is held inside its lock (at its act step) until the second tick has
    answered: no timing decides which one runs. flock locks belong to the open file
    description, so two ticks in one process exclude each other as two processes would."""
    import flows.autoscale as autoscale_flow
    from tasks.tick.act import act

    s = process_stack
    grow = s.with_policy(min_instances=3)  # a tick with real work: it must act
    inside, release = threading.Event(), threading.Event()

    def held_act(*args: Any, **kwargs: Any) -> Any:
        inside.set()  # the first tick holds the lock now
        assert release.wait(timeout=120), "the test never released the first tick"
        return act(*args, **kwargs)

    monkeypatch.setattr(autoscale_flow, "act", held_act)
    first: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: first.update(s.tick(config=grow, trigger="first")))
    runner.start()
    try:
        assert inside.wait(timeout=120), "the first tick never reached its act step"
        second = s.tick(config=grow, trigger="second")
    finally:
        release.set()
        runner.join(timeout=180)
    assert not runner.is_alive()
    assert second.get("skipped") is True, second
    assert first.get("after") == 3, first
    assert len(s.driver().list()) == 3  # one tick's worth of instances, not two


@pytest.mark.usefixtures("prefect_harness")
def test_deployment_concurrency_cancels_the_second_run() -> None:
    """The deployment's own guard (prefect.yaml: limit 1, CANCEL_NEW), on the real server:
    a worker proposes PENDING for each run it picks up; the second is cancelled."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Pending, Scheduled

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("autoscale")
        deployment = client.create_deployment(
            flow_id=flow_id, name=f"cc-{time.time_ns()}", concurrency_limit=1,
            concurrency_options=ConcurrencyOptions(
                collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW))
        first = client.create_flow_run_from_deployment(deployment, state=Scheduled())
        second = client.create_flow_run_from_deployment(deployment, state=Scheduled())
        a: Any = client.set_flow_run_state(first.id, Pending())
        b: Any = client.set_flow_run_state(second.id, Pending())
        assert a.status is SetStateStatus.ACCEPT
        assert b.status is SetStateStatus.REJECT
        state = client.read_flow_run(second.id).state
        assert state is not None and state.is_cancelled()


def test_dry_run_reports_and_changes_nothing(process_stack: Stack) -> None:
    s = process_stack
    result = s.tick(config=s.with_policy(dry_run=True))
    assert result["desired"] == 2 and "[dry run]" in result["reason"]
    assert s.driver().list() == [] and s.targets() == []
    assert json.loads(s.config.pool.scrape_file().read_text()) == []


def test_a_tick_builds_the_instance_driver_once(process_stack: Stack,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Repair, observe, act and publish share the tick's driver (one engine ping a tick)."""
    import tasks.tick.pool as pool_module

    s = process_stack
    builds: list[str] = []
    real = pool_module.build_driver

    def counted(config: Any) -> Any:
        builds.append(config.stack)
        return real(config)

    monkeypatch.setattr(pool_module, "build_driver", counted)
    result = s.tick()  # empty pool -> min_instances: repair, observe, scale up, publish
    assert result["after"] == 2, result
    assert builds == [s.config.pool.stack]

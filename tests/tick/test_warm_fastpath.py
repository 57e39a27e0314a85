"""The fast path in run mode: an alert becomes a run of the deployment, executed in the warm
webhook process by Prefect's flow engine, under the deployment's concurrency rule (real
Prefect server; runs synchronise on events, never on sleeps)."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import flow

from kongstack.cli.fastpath import WebhookServer
from kongstack.cli.warmrun import IN_FLIGHT, WarmRunner
from kongstack.core.errors import ConfigError
from kongstack.core.procs import free_port
from tests.support.autoscale_stack import Stack
from tests.tick.test_fastpath import alertmanager_body

WAIT_S = 60.0  # bound on every wait: a hung run fails the test instead of hanging it


class Gate:
    """A run that says when it started and waits until the test lets it finish."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.pids: list[int] = []


GATES: dict[str, Gate] = {}


@flow(name="warm-probe", retries=0, timeout_seconds=120)
async def probe(gate: str, trigger: str = "schedule") -> dict[str, Any]:
    """Stands in for the tick: records the process it ran in, then holds the slot."""
    g = GATES[gate]
    g.pids.append(os.getpid())
    g.started.set()
    released = await asyncio.to_thread(g.release.wait, WAIT_S)
    return {"trigger": trigger, "released": released}


def make_deployment(gate: str) -> tuple[str, UUID]:
    """A deployment of the probe with the autoscale deployment's rule: 1, CANCEL_NEW."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions

    name = f"warm-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(probe.name)
        deployment_id = client.create_deployment(
            flow_id=flow_id, name=name, parameters={"gate": gate, "trigger": "schedule"},
            concurrency_limit=1,
            concurrency_options=ConcurrencyOptions(
                collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW))
    return f"{probe.name}/{name}", deployment_id


def runs_of(deployment_id: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return list(client.read_flow_runs(deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[deployment_id]))))


def read_run(run_id: str | UUID) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(str(run_id)))


@pytest.fixture
def gate() -> Iterator[str]:
    key = uuid.uuid4().hex
    GATES[key] = Gate()
    yield key
    GATES[key].release.set()  # never leave a run waiting
    GATES.pop(key)


@pytest.fixture
def webhook() -> Iterator[Any]:
    """``start(runner)`` -> the URL of a run-mode webhook in this process; stopped after."""
    servers: list[WebhookServer] = []

    def start(warm: WarmRunner) -> str:
        server = WebhookServer("127.0.0.1", free_port(), runner=warm)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/alerts"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
        assert server.runner is not None and server.runner.wait_idle(WAIT_S)


def alert_runner(gate: str, webhook: Any) -> tuple[WarmRunner, str, str, UUID]:
    """A new deployment of the probe, and a run-mode webhook for it: (the webhook's runner,
    its URL, the deployment's "flow/name", its id)."""
    name, deployment_id = make_deployment(gate)
    runner = WarmRunner(probe, name, parameters={"trigger": "alert"})
    return runner, webhook(runner), name, deployment_id


def alert(url: str) -> dict[str, Any]:
    r = httpx.post(url, json=alertmanager_body("firing"), timeout=WAIT_S)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.usefixtures("prefect_harness")
def test_an_alert_runs_the_deployment_in_this_process_and_repeats_coalesce(
        gate: str, webhook: Any) -> None:
    warm, url, _, deployment_id = alert_runner(gate, webhook)

    first = alert(url)
    assert first["run"] == "started" and first["state"] == "Pending"
    assert GATES[gate].started.wait(WAIT_S), "the run did not start"
    # Rapid repeats while the tick runs start nothing: no pile of runs.
    assert [alert(url)["run"] for _ in range(3)] == ["coalesced"] * 3
    assert warm.busy
    GATES[gate].release.set()
    assert warm.wait_idle(WAIT_S)

    run = read_run(first["flow_run_id"])
    assert run.deployment_id == deployment_id  # a run OF the deployment (shows under it)
    assert run.parameters == {"gate": gate, "trigger": "alert"}  # deployment's + the alert's
    assert run.state.is_completed(), run.state
    assert GATES[gate].pids == [os.getpid()]  # executed here: no process was started
    assert warm.finished == [(run.id, "Completed")]
    assert len(runs_of(deployment_id)) == 1


@pytest.mark.usefixtures("prefect_harness")
def test_the_deployment_concurrency_rule_holds_between_schedule_and_fast_path(
        gate: str, webhook: Any) -> None:
    fast, url, name, deployment_id = alert_runner(gate, webhook)
    # The scheduled run, taken the runner's way (Pending first, then the engine). Another
    # WarmRunner does exactly those steps; only the process start is missing.
    scheduled = WarmRunner(probe, name, parameters={"trigger": "schedule"})

    held = scheduled.trigger()
    assert held.outcome == "started" and held.flow_run_id
    assert GATES[gate].started.wait(WAIT_S)
    # A fast-path run while the scheduled one runs: the server cancels it (CANCEL_NEW) and
    # the alert waits for that tick, which read its metrics before the alert.
    refused = alert(url)
    assert refused["run"] == "refused" and refused["state"] == "Cancelled"
    assert refused["deferred"] is True
    assert "concurrency limit" in (read_run(refused["flow_run_id"]).state.message or "")
    assert not fast.busy  # nothing runs beside the scheduled tick
    GATES[gate].release.set()
    assert scheduled.wait_idle(WAIT_S)
    # ...then runs once the slot is free: the alert's run, after the scheduled one.
    assert fast.wait_idle(WAIT_S)
    assert fast.follow_ups == ["ran"]
    assert [state for _, state in fast.finished] == ["Completed"]
    after = read_run(fast.finished[0][0])
    assert after.parameters["trigger"] == "alert"
    assert after.start_time >= read_run(held.flow_run_id).end_time  # never side by side

    # The other way round: the fast-path run holds the slot, the schedule's run is refused.
    GATES[gate].started.clear()
    GATES[gate].release.clear()
    went = alert(url)
    assert went["run"] == "started"
    assert GATES[gate].started.wait(WAIT_S)
    assert scheduled.trigger().state == "Cancelled"
    GATES[gate].release.set()
    assert fast.wait_idle(WAIT_S)
    assert read_run(went["flow_run_id"]).state.is_completed()
    assert scheduled.wait_idle(WAIT_S)  # its follow-up ran after the fast-path run

    states = sorted(r.state.name for r in runs_of(deployment_id))
    assert states == ["Cancelled", "Cancelled", "Completed", "Completed", "Completed",
                      "Completed"]
    assert len(GATES[gate].pids) == 4 and set(GATES[gate].pids) == {os.getpid()}
    runs = sorted((r for r in runs_of(deployment_id) if r.state.is_completed()),
                  key=lambda r: r.start_time)
    for before, later in zip(runs, runs[1:], strict=False):
        assert later.start_time >= before.end_time  # the slot was held by one run at a time


def hold_slot_pending(deployment_id: UUID) -> UUID:
    """A run of the deployment taken the runner's way but not started: Pending holds the
    slot, as a scheduled run the runner picked up before its time does."""
    from prefect.client.orchestration import get_client
    from prefect.states import Pending
    from prefect.utilities.engine import propose_state_sync

    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(deployment_id)
        assert propose_state_sync(client, Pending(), flow_run_id=run.id).is_pending()
    return run.id


def move(run_id: UUID, state: Any) -> None:
    from prefect.client.orchestration import get_client
    from prefect.utilities.engine import propose_state_sync

    with get_client(sync_client=True) as client:
        assert propose_state_sync(client, state, flow_run_id=run_id).type == state.type


@pytest.mark.usefixtures("prefect_harness")
def test_a_refused_alert_covered_by_a_tick_that_starts_after_it_runs_nothing_more(
        gate: str, webhook: Any) -> None:
    from prefect.states import Completed, Running

    fast, url, _, deployment_id = alert_runner(gate, webhook)
    holder = hold_slot_pending(deployment_id)

    refused = alert(url)
    assert refused["run"] == "refused" and refused["deferred"] is True
    move(holder, Running())  # the scheduled tick starts after the alert: it sees its load
    assert fast.wait_idle(WAIT_S)  # the follow-up decides while that tick still runs
    assert fast.follow_ups == ["covered"]
    move(holder, Completed())
    assert fast.finished == []  # no second tick for the same load
    assert not GATES[gate].started.is_set()


@pytest.mark.usefixtures("prefect_harness")
def test_a_follow_up_answers_for_the_newest_refusal_not_the_first(
        gate: str, webhook: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two alerts refused while a scheduled tick holds the slot, that tick starting between
    them: it read the first alert's load, not the second's, so one more tick runs after it."""
    from prefect.states import Completed, Running

    from kongstack.cli import warmrun

    fast, url, _, deployment_id = alert_runner(gate, webhook)
    holder = hold_slot_pending(deployment_id)
    looked = [threading.Event(), threading.Event()]
    resume = threading.Event()
    real_in_flight, calls = warmrun._in_flight, []

    def in_flight_in_step(client: Any, deployment: UUID) -> list[Any]:
        calls.append(deployment)
        if len(calls) == 2:  # the follow-up's second look waits for the test's moves
            assert resume.wait(WAIT_S)
        runs = real_in_flight(client, deployment)
        looked[min(len(calls), 2) - 1].set()
        return runs

    monkeypatch.setattr(warmrun, "_in_flight", in_flight_in_step)

    first = alert(url)
    assert first["run"] == "refused" and first["deferred"] is True
    assert looked[0].wait(WAIT_S)  # the follow-up saw the holder Pending: waiting
    move(holder, Running())  # the tick starts after the first alert...
    second = alert(url)  # ...and before the second
    assert second["run"] == "refused" and second["deferred"] is True
    resume.set()
    assert looked[1].wait(WAIT_S)  # it saw the tick Running, started before the second
    move(holder, Completed())
    assert GATES[gate].started.wait(WAIT_S), "no tick ran for the second alert"
    GATES[gate].release.set()
    assert fast.wait_idle(WAIT_S)
    assert fast.follow_ups == ["ran"]  # one follow-up, for the second alert
    assert [state for _, state in fast.finished] == ["Completed"]
    ran = read_run(fast.finished[0][0])
    assert ran.start_time >= read_run(holder).end_time
    assert ran.start_time > read_run(second["flow_run_id"]).state.timestamp


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_cancelled_from_the_ui_while_its_tick_runs_ends_cancelled(
        gate: str, webhook: Any) -> None:
    """The UI's Cancel sets Cancelling; nothing kills a tick executing in this process, so
    the run must still end Cancelled, not stay Cancelling (and look in flight) for good."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    from kongstack.cli.warmrun import CANCELLED_WHILE_RUNNING

    fast, url, _, deployment_id = alert_runner(gate, webhook)
    started = alert(url)
    assert GATES[gate].started.wait(WAIT_S)
    with get_client(sync_client=True) as client:
        cancel: Any = client.set_flow_run_state(started["flow_run_id"], Cancelling())
    assert cancel.state.name == "Cancelling"  # what the UI's Cancel button does
    GATES[gate].release.set()
    assert fast.wait_idle(WAIT_S)
    run = read_run(started["flow_run_id"])
    assert run.state.is_cancelled() and run.state.message == CANCELLED_WHILE_RUNNING
    assert fast.finished == [(run.id, "Cancelled")]
    assert runs_of(deployment_id)[0].state.type.value not in IN_FLIGHT
    follow = alert(url)  # the slot is free: the next alert runs at once
    assert follow["run"] == "started"
    assert fast.wait_idle(WAIT_S)


@pytest.mark.parametrize(
    ("in_flight", "expected", "why"),
    [
        ([], True, "nothing in flight: the alert's own run can go now"),
        ([("RUNNING", -5)], None, "started before the refusal: may have missed the load; wait"),
        ([("PENDING", None)], None, "taken, not started: cannot tell yet; wait"),
        ([("RUNNING", 2)], False, "started after the refusal: it reads what the alert saw"),
        ([("RUNNING", 0)], False, "started at the refusal's instant: same metrics"),
        ([("RUNNING", -5), ("PENDING", None)], None, "one in flight started before: wait"),
        ([("RUNNING", 3), ("CANCELLING", -1)], None, "any started before: wait"),
    ],
)
def test_follow_up_needed_table(in_flight: list[tuple[str, int | None]], expected: bool | None,
                                why: str) -> None:
    from datetime import UTC, datetime, timedelta

    from kongstack.cli.warmrun import follow_up_needed

    refused_at = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)
    runs = [(state, None if offset is None else refused_at + timedelta(seconds=offset))
            for state, offset in in_flight]
    assert follow_up_needed(refused_at, runs) is expected, why


@pytest.mark.usefixtures("prefect_harness")
def test_a_missing_deployment_is_a_503_naming_it(webhook: Any) -> None:
    url = webhook(WarmRunner(probe, "warm-probe/not-registered"))
    r = httpx.post(url, json=alertmanager_body("firing"), timeout=WAIT_S)
    assert r.status_code == 503  # Alertmanager retries a 5xx
    assert "warm-probe/not-registered" in r.json()["error"] and "not registered" in \
        r.json()["error"]
    r = httpx.post(url, json=alertmanager_body("firing"), timeout=WAIT_S)
    assert r.status_code == 503  # the failure released the process: it tries again


def test_bad_wiring_is_refused_before_serving() -> None:
    with pytest.raises(ConfigError, match="deployment: expected 'flow-name/deployment-name'"):
        WarmRunner(probe, "autoscale")
    with pytest.raises(ValueError, match="exactly one of emit"):
        WebhookServer("127.0.0.1", free_port())


def test_the_real_tick_runs_in_the_warm_process_alert_after_alert(process_stack: Stack) -> None:
    """The autoscale flow itself, as the webhook runs it: a run of the deployment that acts
    (an empty pool grows to min 3), then a second alert's run in the same process that holds."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions

    from flows.autoscale import autoscale

    s = process_stack
    grow = s.with_policy(min_instances=3)
    name = f"warm-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        deployment_id = client.create_deployment(
            flow_id=client.create_flow_from_name(autoscale.name), name=name,
            parameters={"config": grow.model_dump(mode="json"), "trigger": "schedule"},
            concurrency_limit=1, concurrency_options=ConcurrencyOptions(
                collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW))
    warm = WarmRunner(autoscale, f"{autoscale.name}/{name}", parameters={"trigger": "alert"})
    ids: list[UUID] = []
    for _ in range(2):
        started = warm.trigger()
        assert started.outcome == "started" and started.flow_run_id, started
        assert warm.wait_idle(120)
        ids.append(started.flow_run_id)
    runs = [read_run(i) for i in ids]
    assert [r.deployment_id for r in runs] == [deployment_id, deployment_id]
    assert all(r.state.is_completed() for r in runs), [r.state for r in runs]
    # The tick's own name for what it did: it acted once, then held.
    assert [r.name for r in runs] == ["autoscale-alert-0to3", "autoscale-alert-3to3"]
    assert len(s.ready()) == 3 and s.targets() == s.ready()

"""Run a deployment's flow run in this process, already warm, instead of in a new one.

The autoscale fast path's seconds went mostly to Prefect's runner starting a new Python
process for every run (import Prefect and the flow: ~1 s idle, ~7 s on a loaded machine).
``WarmRunner`` keeps the flow imported in a long-lived process (the fast-path webhook) and,
for each alert, does what the runner does, minus the process:

1. create a flow run OF THE DEPLOYMENT (``create_flow_run_from_deployment``): it shows in the
   UI under the deployment, with the deployment's parameters merged with ``trigger=alert``;
2. propose Pending, as the runner does before it starts a process. The server's
   ``SecureFlowConcurrencySlots`` rule enforces the deployment's concurrency limit on that
   transition: with CANCEL_NEW a run that would overlap a running tick comes back Cancelled
   and is not executed (the scheduled path is held to the same rule the same way);
3. execute it here with Prefect's flow engine (``prefect.flow_engine.run_flow`` with
   ``flow_run=``, the call the runner's subprocess makes), in a thread of its own. The engine
   keeps the deployment's concurrency lease alive while the run lasts and releases it at the
   end; inside, the tick takes its pool lock as always.

Coalescing: one run at a time per process. An alert that arrives while this process runs a
tick starts nothing (that tick already observes the load the alert reports); Alertmanager
repeats a firing alert, and the next delivery after the tick finds the process free.

Deferral: an alert the concurrency rule refuses is not dropped. The tick that holds the slot
may have read its metrics before the alert's load showed (a scheduled run is Pending from
the moment the runner picks it up, before its time). A follow-up thread watches the
deployment's runs in flight: if each of them went Running after the refusal, it reads what
the alert saw and nothing more is needed; otherwise, as soon as none is in flight, the
alert's run is created again (once). Refusals that arrive while a follow-up waits join it,
and it answers for the newest of them: a tick that started between two refusals covers the
first, not the second.

Cancel: the runner stops a cancelled run by killing its process; a run executing here is a
thread, which nothing can kill safely. The tick runs to its end (seconds; each step converges
on the next tick) and the run then ends Cancelled, saying so, instead of staying Cancelling.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from kongstack.core.errors import ConfigError

log = logging.getLogger("kongstack.fastpath")


@dataclass(frozen=True)
class Started:
    """What one alert led to. ``outcome``: "started" (a run executes here now), "coalesced"
    (this process is running one already), "refused" (the server's concurrency rule or
    another runner took it: ``state`` says which)."""

    outcome: str
    flow_run_id: UUID | None = None
    state: str | None = None
    deferred: bool = False
    """Refused by the concurrency rule; a follow-up runs once the tick in flight ends."""

    def as_json(self) -> dict[str, Any]:
        return {"run": self.outcome,
                "flow_run_id": str(self.flow_run_id) if self.flow_run_id else None,
                "state": self.state, "deferred": self.deferred}


IN_FLIGHT = ("PENDING", "RUNNING", "CANCELLING")
"""Run states that hold a deployment's concurrency slot."""
FOLLOW_UP_POLL_S = 0.25
FOLLOW_UP_TIMEOUT_S = 120.0
"""Longest a refused alert waits for the tick in flight (the flow's own timeout is shorter)."""


def follow_up_needed(refused_at: datetime, in_flight: list[tuple[str, datetime | None]]
                     ) -> bool | None:
    """Whether a refused alert still needs its own run, given the deployment's runs in flight
    as (state type, start time): ``None`` while undecided (wait), ``True`` once none is in
    flight (run again), ``False`` when every one went Running after the refusal (they read
    the metrics the alert saw)."""
    if not in_flight:
        return True
    if all(start is not None and start >= refused_at for _, start in in_flight):
        return False
    return None


class WarmRunner:
    """Creates runs of ``deployment`` ("flow-name/deployment-name") and executes them in
    this process with ``flow``, one at a time."""

    def __init__(self, flow: Any, deployment: str,
                 parameters: dict[str, Any] | None = None) -> None:
        if "/" not in deployment:
            raise ConfigError(f"deployment: expected 'flow-name/deployment-name', got "
                              f"{deployment!r}")
        self.flow = flow
        self.deployment = deployment
        self.parameters = dict(parameters or {})
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self._follower: threading.Thread | None = None
        self._refused_at: datetime | None = None
        """The newest refusal the follow-up answers for (guarded by ``_defer_lock``)."""
        self._defer_lock = threading.Lock()  # alerts arrive on concurrent request threads
        self._stop = threading.Event()
        self.follow_ups: list[str] = []
        """What each deferred alert came to: "ran"; "covered" (a tick that started after it
        read its load); "coalesced" or "refused" (its second attempt met a run, which
        started after it); "timed out", "stopped" (shutdown) or "failed" (Prefect error)."""
        self.finished: list[tuple[UUID, str]] = []
        """(flow run id, final state name) of every run executed here, oldest first."""

    @property
    def busy(self) -> bool:
        return self._busy.locked()

    def deployment_id(self) -> UUID:
        """The deployment's id, read each time (``serve`` may have re-registered it); its
        flow must be the one this process runs."""
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                found = client.read_deployment_by_name(self.deployment)
            except ObjectNotFound:
                raise ConfigError(f"deployment {self.deployment!r} is not registered with the "
                                  "Prefect server (is `kongstack up` / serve running?)") \
                    from None
        flow_name = self.deployment.split("/", 1)[0]
        if flow_name != self.flow.name:
            raise ConfigError(f"deployment {self.deployment!r} runs flow {flow_name!r}, this "
                              f"process has flow {self.flow.name!r}")
        return found.id

    def trigger(self) -> Started:
        """Start a run of the deployment here unless one is running here already. Returns
        once the run is Pending (or refused); the run executes in a background thread.
        Raises on Prefect API errors (the webhook answers 503, Alertmanager retries)."""
        if not self._busy.acquire(blocking=False):
            return Started("coalesced")
        try:
            flow_run, state = self._create_pending()
        except BaseException:
            self._busy.release()
            raise
        if not state.is_pending():
            self._busy.release()
            log.info("fast-path run %s not executed: the server set it %s (%s)", flow_run.id,
                     state.name, state.message or "")
            deferred = "concurrency" in (state.message or "").lower() and self._defer(state)
            return Started("refused", flow_run.id, state.name, deferred=deferred)
        self._thread = threading.Thread(target=self._execute, args=(flow_run,),
                                        name=f"warm-run-{flow_run.id}", daemon=True)
        self._thread.start()
        return Started("started", flow_run.id, state.name)

    def _defer(self, refusal: Any) -> bool:
        """Have a follow-up answer for a refused alert: the one waiting already (it now
        answers for this newer refusal too) or a new one. A refusal met by the follow-up's
        own run is left to the run that holds the slot, which started after it."""
        with self._defer_lock:
            follower = self._follower
            if follower is not None:
                if follower is threading.current_thread():
                    return False
                if self._refused_at is None or refusal.timestamp > self._refused_at:
                    self._refused_at = refusal.timestamp
                return True
            self._refused_at = refusal.timestamp
            self._follower = threading.Thread(target=self._follow_up, name="warm-follow-up",
                                              daemon=True)
            self._follower.start()
            return True

    def _newest_refusal(self) -> datetime:
        with self._defer_lock:
            assert self._refused_at is not None  # set before the follow-up starts
            return self._refused_at

    def _follow_up(self) -> None:
        """Answer for the newest refusal until no newer one arrived meanwhile."""
        try:
            while True:
                outcome, answered = "failed", self._newest_refusal()
                try:
                    outcome, answered = self._await_slot()
                    if outcome == "free":
                        started = self.trigger()
                        outcome = "ran" if started.outcome == "started" else started.outcome
                        log.info("deferred alert: %s %s", started.outcome,
                                 started.flow_run_id or "")
                except Exception as exc:  # Prefect unreachable: Alertmanager repeats
                    log.error("deferred alert not run: %s", exc)
                self.follow_ups.append(outcome)
                with self._defer_lock:
                    newer = self._refused_at is not None and self._refused_at > answered
                    if not newer or outcome in ("failed", "timed out", "stopped"):
                        self._follower = None
                        return
        finally:
            with self._defer_lock:
                if self._follower is threading.current_thread():
                    self._follower = None

    def _await_slot(self) -> tuple[str, datetime]:
        """Watch the deployment's runs in flight (server times) until the newest refusal is
        covered by a tick that started after it or none is in flight. Returns the outcome
        and the refusal it answered."""
        from prefect.client.orchestration import get_client

        deployment_id = self.deployment_id()
        deadline = time.monotonic() + FOLLOW_UP_TIMEOUT_S
        with get_client(sync_client=True) as client:
            while not self._stop.is_set():
                runs = _in_flight(client, deployment_id)
                refused_at = self._newest_refusal()
                needed = follow_up_needed(refused_at, [(r.state_type.value, r.start_time)
                                                       for r in runs])
                if needed is not None:
                    if not needed:
                        log.info("deferred alert covered by %s (started after the refusal)",
                                 ", ".join(r.name for r in runs))
                    return ("free" if needed else "covered"), refused_at
                if time.monotonic() > deadline:
                    log.warning("deferred alert dropped: %s still in flight after %.0f s",
                                ", ".join(r.name for r in runs), FOLLOW_UP_TIMEOUT_S)
                    return "timed out", refused_at
                self._stop.wait(FOLLOW_UP_POLL_S)
        return "stopped", self._newest_refusal()

    def _create_pending(self) -> tuple[Any, Any]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.objects import State, StateType
        from prefect.exceptions import Abort
        from prefect.states import Pending
        from prefect.utilities.engine import propose_state_sync

        deployment_id = self.deployment_id()
        with get_client(sync_client=True) as client:
            flow_run = client.create_flow_run_from_deployment(
                deployment_id, parameters=self.parameters)
            try:
                state = propose_state_sync(client, Pending(), flow_run_id=flow_run.id)
            except Abort as exc:  # a runner polling the deployment took it first
                return flow_run, State(type=StateType.CANCELLED, name="TakenByRunner",
                                       message=str(exc))
            if state.is_pending():
                # The engine starts from the server's copy: its Pending state carries the
                # deployment concurrency lease that the engine keeps alive.
                flow_run = client.read_flow_run(flow_run.id)
        return flow_run, state

    def _execute(self, flow_run: Any) -> None:
        from prefect.client.schemas.objects import State
        from prefect.flow_engine import run_flow

        name = "Crashed"
        try:
            outcome = run_flow(self.flow, flow_run=flow_run, return_type="state")
            state = asyncio.run(outcome) if asyncio.iscoroutine(outcome) else outcome
            if isinstance(state, State) and state.is_cancelling():
                state = _finish_cancel(flow_run.id)
            name = getattr(state, "name", None) or "Completed"
            log.info("fast-path run %s (%s) ended %s", flow_run.id, flow_run.name, name)
        except BaseException as exc:  # the engine has recorded the failure on the run
            log.error("fast-path run %s failed in the engine: %s", flow_run.id, exc)
        finally:
            self.finished.append((flow_run.id, name))
            self._busy.release()

    def wait_idle(self, timeout: float) -> bool:
        """Wait (bounded) for a deferred alert's follow-up and the run executing here to
        end; True if neither is left."""
        deadline = time.monotonic() + timeout
        follower = self._follower
        if follower is not None:
            follower.join(timeout)
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not self.busy and not (follower is not None and follower.is_alive())

    def stop(self) -> None:
        """Stop waiting on behalf of deferred alerts (a run executing here goes on)."""
        self._stop.set()


CANCELLED_WHILE_RUNNING = (
    "cancelled while its tick ran: a fast-path tick executes in the webhook's process and "
    "is not interrupted part-way; it ran to its end (a tick is short and each step converges "
    "on the next)")


def _finish_cancel(flow_run_id: UUID) -> Any:
    """Cancelled from the UI while the tick ran here: the engine's end state was refused
    (the run is Cancelling), so the run would stay Cancelling for good. Prefect's runner
    ends it Cancelled after stopping the process; this ends it Cancelled after the tick."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        result: Any = client.set_flow_run_state(
            flow_run_id, Cancelled(message=CANCELLED_WHILE_RUNNING), force=True)
    log.warning("fast-path run %s %s", flow_run_id, CANCELLED_WHILE_RUNNING)
    return result.state


def _in_flight(client: Any, deployment_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    return list(client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
            any_=[StateType(t) for t in IN_FLIGHT])))))

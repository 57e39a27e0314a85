"""The autoscale fast path: an Alertmanager alert runs a tick at once instead of waiting for
the next 30-second slot.

Two modes (``--mode``):

- ``run`` (the default, what ``kongstack up`` starts): this long-lived process has the
  autoscale flow imported and executes the run itself (kongstack/cli/warmrun.py):
      Prometheus alert (autoscale="true") -> Alertmanager -> POST /alerts (this webhook)
        -> run of the ``autoscale`` deployment created here (trigger="alert") -> Pending
        (the server applies the deployment's concurrency rule) -> executed in this process
  No new Python process per run, which was most of the fast path's time on a busy machine.
- ``event``: the webhook only emits the Prefect event ``kongstack.alert.firing``; the
  deployment trigger (prefect.yaml) / automation has the runner or a worker start the run,
  in a new process. For a receiver that cannot run the flow (no flow code or pool access).

Either way the run is a run of the deployment, so its concurrency limit (1, CANCEL_NEW) still
holds: an alert that arrives while a tick runs is cancelled, never run alongside it. Several
firing alerts in one webhook call give one run (one tick is enough), and in ``run`` mode an
alert that arrives while this process runs a tick is coalesced into it.

Run the receiver with ``python -m kongstack.cli.fastpath --port 18090 --stack kongstack``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID

from prefect.events import emit_event

from kongstack.cli.warmrun import WarmRunner

ALERT_EVENT = "kongstack.alert.firing"
AUTOMATION_PREFIX = "kongstack-autoscale-fastpath"
STOP_GRACE_S = 12.0  # a tick takes ~1 s; `kongstack down` SIGKILLs after 15 s
MAX_BODY = 1 << 20  # Alertmanager groups are small; refuse anything absurd

log = logging.getLogger("kongstack.fastpath")


def alert_resource(stack: str) -> dict[str, str]:
    return {"prefect.resource.id": f"kongstack.alertmanager.{stack}",
            "prefect.resource.name": f"{stack} alertmanager"}


def firing_payload(body: dict[str, Any]) -> dict[str, Any] | None:
    """The event payload for an Alertmanager webhook body, or None if nothing fires."""
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise ValueError("alerts: expected a list (Alertmanager webhook format)")
    firing = [a for a in alerts if isinstance(a, dict) and a.get("status") == "firing"]
    if not firing:
        return None
    return {
        "alerts": sorted({str((a.get("labels") or {}).get("alertname", "?")) for a in firing}),
        "count": len(firing),
        "group_key": str(body.get("groupKey", "")),
        "starts_at": min(str(a.get("startsAt", "")) for a in firing),
    }


Emit = Callable[[dict[str, Any]], None]


def prefect_emitter(stack: str) -> Emit:
    def emit(payload: dict[str, Any]) -> None:
        emit_event(event=ALERT_EVENT, resource=alert_resource(stack), payload=payload)

    return emit


class _Handler(BaseHTTPRequestHandler):
    server: WebhookServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path == "/health":
            runner = self.server.runner
            self._reply(200, {"status": "ok", "emitted": self.server.emitted,
                              "mode": "event" if runner is None else "run",
                              "running": bool(runner and runner.busy)})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        if self.path != "/alerts":
            self._reply(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self._reply(400, {"error": f"body length {length} not in 1..{MAX_BODY}"})
            return
        try:
            payload = firing_payload(json.loads(self.rfile.read(length)))
        except (ValueError, TypeError) as exc:
            self._reply(400, {"error": str(exc)})
            return
        if payload is None:
            self._reply(200, {"emitted": 0})
            return
        if self.server.runner is not None:
            self._run(payload)
            return
        try:
            self.server.emit(payload)
        except Exception as exc:  # Alertmanager retries a 5xx, so say it failed
            log.error("could not emit %s: %s", ALERT_EVENT, exc)
            self._reply(503, {"error": "event not emitted"})
            return
        self.server.emitted += 1
        log.info("alert firing (%s): emitted %s", ", ".join(payload["alerts"]), ALERT_EVENT)
        self._reply(200, {"emitted": 1})

    def _run(self, payload: dict[str, Any]) -> None:
        runner = self.server.runner
        assert runner is not None
        try:
            started = runner.trigger()
        except Exception as exc:  # Prefect unreachable or the deployment missing: 503, retried
            log.error("could not start a run of %s: %s", runner.deployment, exc)
            self._reply(503, {"error": f"run not started: {exc}"})
            return
        if started.outcome == "started":
            self.server.emitted += 1
        log.info("alert firing (%s): %s %s%s", ", ".join(payload["alerts"]), started.outcome,
                 started.flow_run_id or "", " (deferred until the tick in flight ends)"
                 if started.deferred else "")
        self._reply(200, started.as_json())


class WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, emit: Emit | None = None, *,
                 runner: WarmRunner | None = None) -> None:
        if (emit is None) == (runner is None):
            raise ValueError("WebhookServer: give exactly one of emit (event mode) or runner "
                             "(run mode)")
        super().__init__((host, port), _Handler)
        self.emit: Emit = emit or _no_emit
        self.runner = runner
        self.emitted = 0
        """Events emitted (event mode) or runs started (run mode)."""


def _no_emit(payload: dict[str, Any]) -> None:
    raise RuntimeError("run mode emits no event")


def fastpath_trigger(stack: str = "kongstack") -> dict[str, Any]:
    """The deployment trigger for prefect.yaml (``triggers:`` of the autoscale deployment)."""
    return {
        "type": "event",
        "enabled": True,
        "match": {"prefect.resource.id": alert_resource(stack)["prefect.resource.id"]},
        "expect": [ALERT_EVENT],
        "posture": "Reactive",
        "threshold": 1,
        "within": 0,
        "parameters": {"trigger": "alert"},
    }


def ensure_fastpath_automation(deployment_id: UUID, stack: str = "kongstack") -> UUID:
    """Create (or replace) the automation that runs ``deployment_id`` on an alert event.

    For setups that register deployments without prefect.yaml triggers (e.g. ``serve``)."""
    from prefect.client.orchestration import get_client
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    name = f"{AUTOMATION_PREFIX}-{stack}"
    automation = AutomationCore(
        name=name,
        description="Run the autoscale deployment when Alertmanager reports a firing alert.",
        trigger=EventTrigger(
            expect={ALERT_EVENT},
            match={"prefect.resource.id": alert_resource(stack)["prefect.resource.id"]},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[RunDeployment(source="selected", deployment_id=deployment_id,
                               parameters={"trigger": "alert"}, job_variables=None)],
    )
    with get_client(sync_client=True) as client:
        for existing in client.read_automations_by_name(name):
            client.delete_automation(existing.id)
        return client.create_automation(automation)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kongstack.cli.fastpath", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--stack", default="kongstack")
    parser.add_argument("--mode", choices=["run", "event"], default="run",
                        help="run: execute the deployment's run in this warm process; event: "
                             "emit a Prefect event for the deployment trigger")
    parser.add_argument("--deployment", default="autoscale/autoscale",
                        help="run mode: the deployment to run (flow-name/deployment-name)")
    parser.add_argument("--entrypoint", default="flows/autoscale.py:autoscale",
                        help="run mode: the flow the deployment runs (imported now, once)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.mode == "run":
        server = WebhookServer(args.host, args.port,
                               runner=warm_runner(args.entrypoint, args.deployment))
    else:
        server = WebhookServer(args.host, args.port, prefect_emitter(args.stack))
    log.info("autoscale fast path (%s mode): POST http://%s:%d/alerts", args.mode, args.host,
             args.port)
    # SIGTERM (`kongstack down`): stop taking alerts and let a running tick finish (it has
    # STOP_GRACE_S; `down` waits 15 s before SIGKILL, which a tick also survives).
    signal.signal(signal.SIGTERM,
                  lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if server.runner is not None:
            server.runner.stop()  # deferred alerts: the next process's schedule covers them
        if server.runner is not None and not server.runner.wait_idle(timeout=STOP_GRACE_S):
            log.warning("stopping while a fast-path run is still executing")


def warm_runner(entrypoint: str, deployment: str) -> WarmRunner:
    """The flow imported now (the point of a warm process), plus Prefect's flow engine."""
    import prefect.flow_engine  # noqa: F401 - imported here, not on the first alert

    from kongstack.cli.serve import load_flow

    return WarmRunner(load_flow(entrypoint), deployment, parameters={"trigger": "alert"})


if __name__ == "__main__":
    main()

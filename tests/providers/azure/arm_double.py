"""A local Azure Resource Manager double: a real HTTP server on loopback for the real SDK.

Built from Microsoft's published shapes (shared/reference/azure-arm.md): PUT → 201 with
``provisioningState: Creating|Updating`` and an ``Azure-AsyncOperation`` header whose status
document says InProgress until the operation's delay has passed; DELETE/POST → 202 with
Azure-AsyncOperation + Location; ARM error bodies; 429 with Retry-After; 409 quota/conflict.
Operation URLs are built from the request's Host header so the SDK polls this server.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PROVIDER_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/(?P<ns>[^/]+)/"
    r"(?P<type>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<child_type>[^/]+)(?:/(?P<child>[^/]+))?)?)?$",
    re.IGNORECASE,
)
RG_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)(?P<rest>/resources)?$",
    re.IGNORECASE,
)
OP_PATH = re.compile(r"/operations/(?P<op>[0-9a-f-]+)$")
TRANSIENT = {"PUT": "Creating", "DELETE": "Deleting"}


@dataclass
class Fault:
    method: str
    path_contains: str
    status: int
    code: str
    message: str
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    details: list[dict[str, Any]] = field(default_factory=list)
    asynchronous: bool = False  # fail through the status document instead of the initial call


@dataclass
class Operation:
    id: str
    done_at: float
    started: str
    resource_key: str
    kind: str  # "put" | "delete" | "post"
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


@dataclass
class Call:
    method: str
    path: str
    at: float
    status: int


class ArmState:
    def __init__(
        self,
        *,
        delays: dict[str, float] | None = None,
        retry_after: int | None = None,
        host_keys: dict[str, str] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.groups: dict[str, dict[str, Any]] = {}
        self.resources: dict[str, dict[str, Any]] = {}  # lower-case id -> resource json
        self.ops: dict[str, Operation] = {}
        self.faults: list[Fault] = []
        self.calls: list[Call] = []
        self.delays = delays or {}
        self.retry_after = retry_after
        self.host_keys = host_keys or {}
        self.op_windows: list[tuple[str, str, float, float]] = []  # (id, kind, start, done_at)
        self._ip = 10

    def delay_for(self, rtype: str) -> float:
        return self.delays.get(rtype, self.delays.get("*", 0.0))

    def next_public_ip(self) -> str:
        self._ip += 1
        return f"203.0.113.{self._ip}"  # TEST-NET-3: documentation range, never contacted


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ArmServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def st(self) -> ArmState:
        return self.server.state

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else {}

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        with self.st.lock:
            self.st.calls.append(Call(self.command, self.path, time.monotonic(), status))

    def _error(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        err: dict[str, Any] = {"code": code, "message": message}
        if details:
            err["details"] = details
        self._send(status, {"error": err}, headers)

    def _base(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def _fault(self, path: str, asynchronous: bool) -> Fault | None:
        with self.st.lock:
            for f in self.st.faults:
                if (
                    f.times > 0
                    and f.asynchronous == asynchronous
                    and f.method == self.command
                    and f.path_contains.lower() in path.lower()
                ):
                    f.times -= 1
                    return f
        return None

    def _start_op(
        self, key: str, kind: str, delay: float, *, rid: str, location: bool
    ) -> dict[str, str]:
        op_id = str(uuid.uuid4())
        now = time.monotonic()
        op = Operation(
            op_id, now + delay, time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), key, kind
        )
        fault = self._fault(rid, asynchronous=True)
        if fault:
            op.error = {"code": fault.code, "message": fault.message}
        with self.st.lock:
            self.st.ops[op_id] = op
            self.st.op_windows.append((rid, kind, now, now + delay))
        sub = rid.split("/")[2]
        url = (
            f"{self._base()}/subscriptions/{sub}/providers/Microsoft.Compute"
            f"/locations/westeurope/operations/{op_id}"
        )
        headers = {"Azure-AsyncOperation": f"{url}?api-version=2026-04-01"}
        if location:
            headers["Location"] = f"{url}?monitor=true&api-version=2026-04-01"
        if self.st.retry_after is not None:
            headers["Retry-After"] = str(self.st.retry_after)
        return headers

    # -- verbs -------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path.rstrip("/"), parse_qs(url.query)
        body = self._body() if self.command in ("PUT", "POST", "PATCH") else {}
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self._error(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
            return
        fault = self._fault(path, asynchronous=False)
        if fault:
            self._error(fault.status, fault.code, fault.message, fault.headers, fault.details)
            return
        self.server.settle()
        if m := OP_PATH.search(path):
            self._operation(m["op"], monitor="monitor" in query)
        elif m := RG_PATH.match(path):
            self._group(m["sub"], m["rg"], bool(m["rest"]), body)
        elif m := PROVIDER_PATH.match(path):
            self._provider(m, body)
        else:
            self._error(404, "InvalidResourceType", f"no route for {self.command} {path}")

    def _operation(self, op_id: str, monitor: bool) -> None:
        op = self.st.ops.get(op_id)
        if op is None:
            self._error(404, "OperationNotFound", f"operation {op_id} not found")
            return
        done = time.monotonic() >= op.done_at
        if monitor:  # Location: 202 while running, then the POST result (or empty)
            if not done:
                self._send(202, None, {"Location": self._base() + self.path})
            else:
                self._send(200, op.result)
            return
        doc: dict[str, Any] = {"name": op.id, "startTime": op.started, "status": "InProgress"}
        if done:
            doc["status"] = "Failed" if op.error else "Succeeded"
            doc["endTime"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
            if op.error:
                doc["error"] = op.error
        headers = (
            {} if done or self.st.retry_after is None else {"Retry-After": str(self.st.retry_after)}
        )
        self._send(200, doc, headers)

    def _group(self, sub: str, rg: str, list_resources: bool, body: dict[str, Any]) -> None:
        key = rg.lower()
        group = self.st.groups.get(key)
        if list_resources:
            if group is None:
                self._error(
                    404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found."
                )
                return
            items = [
                {k: r[k] for k in ("id", "name", "type", "location", "tags") if k in r}
                for rid, r in self.st.resources.items()
                if f"/resourcegroups/{key}/" in rid
            ]
            self._send(200, {"value": items})
        elif self.command == "GET":
            if group is None:
                self._error(
                    404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found."
                )
            else:
                self._send(200, group)
        elif self.command == "PUT":
            status = 200 if group else 201
            group = {
                "id": f"/subscriptions/{sub}/resourceGroups/{rg}",
                "name": rg,
                "type": "Microsoft.Resources/resourceGroups",
                "location": body.get("location"),
                "tags": body.get("tags", {}),
                "properties": {"provisioningState": "Succeeded"},
            }
            with self.st.lock:
                self.st.groups[key] = group
            self._send(status, group)
        elif self.command == "DELETE":
            if group is None:
                self._send(204)
                return
            headers = self._start_op(
                f"group:{key}",
                "delete",
                self.st.delay_for("resourceGroups"),
                rid=group["id"],
                location=True,
            )
            self._send(202, None, headers)

    def _provider(self, m: re.Match[str], body: dict[str, Any]) -> None:
        rg = m["rg"].lower()
        if rg not in self.st.groups:
            self._error(
                404, "ResourceGroupNotFound", f"Resource group '{m['rg']}' could not be found."
            )
            return
        rtype = m["type"]
        if m["name"] is None:  # list
            prefix = (
                f"/subscriptions/{m['sub']}/resourcegroups/{rg}/providers/{m['ns']}/{rtype}/"
            ).lower()
            items = [
                r
                for rid, r in self.st.resources.items()
                if rid.startswith(prefix) and rid.count("/") == prefix.count("/")
            ]
            self._send(200, {"value": items})
            return
        if m["child_type"] and m["child"] is None:
            if m["child_type"].lower() == "instanceview":
                self._instance_view(m)
            else:
                self._run_command(m, body)
            return
        rid = m.group(0)
        if m["child"]:
            rtype = m["child_type"]
        self.server.resources_handler(self, rid, rtype, body)

    def _instance_view(self, m: re.Match[str]) -> None:
        rid = m.group(0).rsplit("/", 1)[0]
        res = self.st.resources.get(rid.lower())
        if res is None:
            self._error(404, "ResourceNotFound", f"The Resource '{rid}' was not found.")
            return
        state = res["properties"]["provisioningState"]
        self._send(
            200,
            {
                "computerName": m["name"],
                "statuses": [
                    {"code": f"ProvisioningState/{state.lower()}", "level": "Info"},
                    {
                        "code": "PowerState/running"
                        if state == "Succeeded"
                        else "PowerState/starting",
                        "level": "Info",
                    },
                ],
            },
        )

    def _run_command(self, m: re.Match[str], body: dict[str, Any]) -> None:
        rid = m.group(0).rsplit("/", 1)[0]
        if rid.lower() not in self.st.resources:
            self._error(404, "ResourceNotFound", f"The Resource '{rid}' was not found.")
            return
        key = self.st.host_keys.get(m["name"], "")
        headers = self._start_op(
            f"run:{rid.lower()}", "post", self.st.delay_for("runCommand"), rid=rid, location=True
        )
        op_id = headers["Azure-AsyncOperation"].split("/operations/")[1].split("?")[0]
        self.st.ops[op_id].result = {
            "value": [
                {
                    "code": "ProvisioningState/succeeded",
                    "level": "Info",
                    "displayStatus": "Provisioning succeeded",
                    "message": f"Enable succeeded: \n[stdout]\n{key}\n\n[stderr]\n",
                }
            ]
        }
        self._send(202, None, headers)


class ArmServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ArmState) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = state

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def settle(self) -> None:
        """Apply finished operations: resources become Succeeded, deletions disappear."""
        from tests.providers.azure.arm_resources import settle

        settle(self.state)

    def resources_handler(
        self, handler: Handler, rid: str, rtype: str, body: dict[str, Any]
    ) -> None:
        from tests.providers.azure.arm_resources import handle_resource

        handle_resource(handler, rid, rtype, body)


@contextmanager
def arm_double(**kwargs: Any) -> Iterator[ArmServer]:
    server = ArmServer(ArmState(**kwargs))
    thread = threading.Thread(target=server.serve_forever, name="arm-double", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()

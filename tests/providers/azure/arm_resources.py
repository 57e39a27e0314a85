"""Resource semantics of the ARM double: create/read/delete, references, settle finished ops."""

from __future__ import annotations

import copy
import time
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.providers.azure.arm_double import ArmState, Handler

WRITE_ONLY = ("customData", "adminPassword")


def _public(res: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(res)
    os_profile = out.get("properties", {}).get("osProfile", {})
    for key in WRITE_ONLY:
        os_profile.pop(key, None)
    out.pop("_op", None)
    return out


def _refs(body: dict[str, Any]) -> list[str]:
    """Every ``{"id": ...}`` reference inside a request body."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if set(node) <= {"id", "properties"} and isinstance(node.get("id"), str):
                found.append(node["id"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(body.get("properties", {}))
    return found


def _users(state: ArmState, rid: str) -> list[str]:
    """Resources whose body references ``rid`` (what blocks its deletion)."""
    me = rid.lower()
    return [
        r["id"]
        for r in state.resources.values()
        if not r["id"].lower().startswith(me)
        and any(x.lower() == me or x.lower().startswith(me + "/") for x in _refs(r))
    ]


def handle_resource(h: Handler, rid: str, rtype: str, body: dict[str, Any]) -> None:
    st = h.st
    key = rid.lower()
    with st.lock:
        res = st.resources.get(key)
    short = "/".join(rid.split("/providers/")[1].split("/")[1:])
    if h.command == "GET":
        if res is None:
            rg = rid.split("/")[4]
            h._error(
                404,
                "ResourceNotFound",
                f"The Resource '{short}' under resource group '{rg}' was not found.",
            )
        else:
            h._send(200, _public(res))
        return
    if h.command == "DELETE":
        if res is None:
            h._send(204)
            return
        users = _users(st, rid)
        if users:
            code = {
                "networkInterfaces": "NicInUse",
                "publicIPAddresses": "PublicIPAddressInUse",
            }.get(rtype, "InUseSubnetCannotBeDeleted" if rtype == "subnets" else "ResourceInUse")
            h._error(400, code, f"{short} is in use by {users[0]} and cannot be deleted.")
            return
        headers = h._start_op(key, "delete", st.delay_for(rtype), rid=rid, location=True)
        with st.lock:
            res["properties"]["provisioningState"] = "Deleting"
        h._send(202, None, headers)
        return
    if h.command != "PUT":
        h._error(405, "MethodNotAllowed", f"{h.command} is not supported on {short}")
        return
    transient = ("Creating", "Updating", "Deleting")
    if res is not None and res["properties"]["provisioningState"] in transient:
        code = "AnotherOperationInProgress" if "Network" in rid else "Conflict"
        h._error(409, code, f"Another operation on {short} is in progress.")
        return
    for ref in _refs(body):
        if ref.lower() not in st.resources:
            h._error(
                400,
                "InvalidResourceReference",
                f"Resource {ref} referenced by resource {rid} was not found.",
            )
            return
    if "/subnets/" in key and key.rsplit("/subnets/", 1)[0] not in st.resources:
        h._error(404, "ResourceNotFound", f"The Resource '{short}' parent was not found.")
        return
    created = res is None
    new = _build(st, rid, rtype, body, res)
    headers = h._start_op(key, "put", st.delay_for(rtype), rid=rid, location=False)
    new["_op"] = headers["Azure-AsyncOperation"]
    with st.lock:
        st.resources[key] = new
    h._send(201 if created else 200, _public(new), headers)


def _build(
    st: ArmState, rid: str, rtype: str, body: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    ns = rid.split("/providers/")[1].split("/")[0]
    parent_type = rid.split("/providers/")[1].split("/")[1]
    full_type = f"{ns}/{parent_type}" + (f"/{rtype}" if rtype != parent_type else "")
    props = copy.deepcopy(body.get("properties", {}))
    props["provisioningState"] = (
        "Updating" if old else ("Creating" if "Compute" in ns else "Updating")
    )
    if rtype == "virtualMachines":
        props["vmId"] = (old or {}).get("properties", {}).get("vmId", str(uuid.uuid4()))
    else:
        props["resourceGuid"] = (
            (old or {}).get("properties", {}).get("resourceGuid", str(uuid.uuid4()))
        )
    if rtype == "networkInterfaces":
        n = sum(1 for r in st.resources.values() if r["type"].endswith("networkInterfaces")) + 4
        for ipc in props.get("ipConfigurations", []):
            ipc_props = ipc.setdefault("properties", {})
            static = ipc_props.get("privateIPAllocationMethod") == "Static" and bool(
                ipc_props.get("privateIPAddress"))
            if not static:  # ARM keeps a requested static address as given
                ipc_props["privateIPAllocationMethod"] = "Dynamic"
                ipc_props["privateIPAddress"] = (
                    (old or {})
                    .get("properties", {})
                    .get("ipConfigurations", [{}])[0]
                    .get("properties", {})
                    .get("privateIPAddress", f"10.20.1.{n}")
                )
            ipc["properties"]["primary"] = True
            ipc["id"] = f"{rid}/ipConfigurations/{ipc.get('name', 'ipconfig1')}"
    if rtype == "publicIPAddresses" and old:
        props["ipAddress"] = old["properties"].get("ipAddress")
    if rtype == "networkSecurityGroups":
        for rule in props.get("securityRules", []):
            rule["id"] = f"{rid}/securityRules/{rule['name']}"
            rule["properties"]["provisioningState"] = "Succeeded"
    res: dict[str, Any] = {
        "id": rid,
        "name": rid.rsplit("/", 1)[1],
        "type": full_type,
        "properties": props,
    }
    if "location" in body:
        res["location"] = body["location"]
    for extra in ("tags", "sku", "zones"):
        if extra in body:
            res[extra] = copy.deepcopy(body[extra])
    res["etag"] = f'W/"{uuid.uuid4()}"'
    return res


def settle(st: ArmState) -> None:
    now = time.monotonic()
    with st.lock:
        for op in list(st.ops.values()):
            if now < op.done_at or op.kind == "applied":
                continue
            kind, op.kind = op.kind, "applied"
            if op.resource_key.startswith("group:"):
                rg = op.resource_key.split(":", 1)[1]
                st.groups.pop(rg, None)
                for rid in [r for r in st.resources if f"/resourcegroups/{rg}/" in r]:
                    del st.resources[rid]
                continue
            res = st.resources.get(op.resource_key)
            if res is None:
                continue
            if kind == "delete" and not op.error:
                for rid in [
                    r
                    for r in st.resources
                    if r == op.resource_key or r.startswith(op.resource_key + "/")
                ]:
                    del st.resources[rid]  # children (subnets) go with their parent
            elif kind == "put":
                res["properties"]["provisioningState"] = "Failed" if op.error else "Succeeded"
                if res["type"].endswith("publicIPAddresses") and not op.error:
                    res["properties"].setdefault("ipAddress", st.next_public_ip())
                    res["properties"]["ipAddress"] = (
                        res["properties"]["ipAddress"] or st.next_public_ip()
                    )

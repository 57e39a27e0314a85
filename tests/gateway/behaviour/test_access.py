"""Keys, write access and rate limits: the same answers from every gateway.

Each refused request gets Kong's status and body, is logged with its correlation id (where
the log is readable) and never reaches an instance.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx

from tasks.gateway.desired import ConsumerConfig
from tests.gateway.backends import backends
from tests.gateway.behaviour.conftest import Harness


@dataclass(frozen=True)
class BadRequest:
    name: str
    method: str
    status: int
    message: str
    key: str | None = None  # "reader" | "wrong" | None
    key_in_query: bool = False
    big_header: bool = False


BAD = [
    BadRequest("missing key", "GET", 401, "No API key found in request"),
    BadRequest("wrong key", "GET", 401, "Unauthorized", key="wrong"),
    BadRequest("key in the query string (header only)", "GET", 401,
               "No API key found in request", key="reader", key_in_query=True),
    BadRequest("oversized header", "GET", 400, "Request header or cookie too large",
               key="reader", big_header=True),
    BadRequest("write with a read-only key", "POST", 403, "You cannot consume this service",
               key="reader"),
    BadRequest("delete with a read-only key", "DELETE", 403, "You cannot consume this service",
               key="reader"),
]


def _send(gw: Harness, client: httpx.Client, case: BadRequest) -> tuple[httpx.Response, str]:
    cid = f"cid-{uuid.uuid4().hex}"
    key = {"reader": gw.reader_key, "wrong": f"wrong-{uuid.uuid4().hex}", None: None}[case.key]
    headers = {gw.base.correlation_header: cid}
    params = {}
    if key is not None and case.key_in_query:
        params["apikey"] = key
    elif key is not None:
        headers["apikey"] = key
    if case.big_header:
        headers["X-Padding"] = "p" * 9000  # one header line over Kong's 8 KiB buffer
    return client.request(case.method, gw.path("/stocks/ACME"), headers=headers,
                          params=params), cid


def test_bad_input_gets_kongs_answer_is_logged_and_never_reaches_an_instance(
    gw: Harness,
) -> None:
    with backends(1) as (backend,):
        gw.apply(targets=[backend.address])
        with gw.client() as client:
            gw.eventually(lambda: client.get(gw.path(), headers={
                "apikey": gw.reader_key}).status_code == 200, "the reader key accepted")
            before = backend.api_hits()
            for case in BAD:
                response, cid = _send(gw, client, case)
                assert (response.status_code, response.json()["message"]) == (
                    case.status, case.message), case.name
                request_id = response.json()["request_id"]
                assert request_id, case.name
                if case.status == 401:
                    assert response.headers["WWW-Authenticate"].startswith("Key"), case.name
                if not case.big_header:  # Kong echoes the correlation id once plugins ran
                    assert response.headers[gw.base.correlation_header] == cid, case.name
                if gw.read_log is not None:  # written once the response is out: wait for it
                    gw.eventually(lambda: bool(gw.logged(request_id=request_id,  # noqa: B023
                                                         correlation_id=cid)),  # noqa: B023
                                  f"the log entry of {case.name}", timeout=5)
                    logged = gw.logged(request_id=request_id, correlation_id=cid) or []
                    assert [e["status"] for e in logged] == [case.status], case.name
            assert backend.api_hits() == before, "a refused request reached the instance"


def test_reader_reads_writer_writes_and_the_instance_sees_who(gw: Harness) -> None:
    with backends(1) as (backend,):
        gw.apply(targets=[backend.address])
        with gw.client() as client:
            gw.eventually(lambda: client.get(gw.path(), headers={
                "apikey": gw.writer_key}).status_code == 200, "the writer key accepted")
            read = client.get(gw.path(), headers={"apikey": gw.reader_key})
            assert read.status_code == 200
            seen = backend.hits[-1]["headers"]
            assert seen["X-Consumer-Username"] == gw.reader
            assert "apikey" not in {k.lower() for k in seen}  # hide_credentials
            for method, expected in (("POST", 201), ("PUT", 200), ("PATCH", 200),
                                     ("DELETE", 200)):
                write = client.request(method, gw.path("/stocks/ACME"),
                                       headers={"apikey": gw.writer_key}, json={"p": 1})
                assert write.status_code == expected, method
                assert write.json()["method"] == method
            seen = backend.hits[-1]["headers"]
            assert seen["X-Consumer-Username"] == gw.writer
            assert "writers" in seen["X-Consumer-Groups"]
            spoofed = client.get(gw.path(), headers={"apikey": gw.reader_key,
                                                     "X-Consumer-Username": gw.writer})
            assert spoofed.status_code == 200
            assert backend.hits[-1]["headers"]["X-Consumer-Username"] == gw.reader
            no_route = client.get("/elsewhere", headers={"apikey": gw.reader_key})
            assert (no_route.status_code, no_route.json()["message"]) == (
                404, "no Route matched with those values")


def test_key_of_a_deleted_consumer_is_refused(gw: Harness) -> None:
    temp_key = f"tk-{uuid.uuid4().hex}"
    temp = ConsumerConfig(username=f"{gw.base.stack}-temp", key=temp_key)  # type: ignore[arg-type]
    with backends(1) as (backend,):
        gw.apply(gw.config(extra=(temp,)), targets=[backend.address])
        with gw.client() as client:
            def status() -> int:
                return client.get(gw.path(), headers={"apikey": temp_key}).status_code

            gw.eventually(lambda: status() == 200, "the temporary key accepted")
            before = backend.api_hits()
            gw.apply(gw.config())
            gw.eventually(lambda: status() == 401, "the deleted consumer's key refused")
            refused = client.get(gw.path(), headers={"apikey": temp_key})
            assert refused.json()["message"] == "Unauthorized"
            assert backend.api_hits() == before


def _fresh_window(gw: Harness, client: httpx.Client) -> None:
    """Make sure a short burst fits in one clock-aligned window: if the current window ends
    within 3 s, poll (with the writer's key, whose budget is large) until it has rolled
    over, which shows as RateLimit-Reset going up."""
    def reset() -> int:
        response = client.get(gw.path(), headers={"apikey": gw.writer_key})
        return int(response.headers["RateLimit-Reset"])

    first = reset()
    if first >= 3:
        return
    gw.eventually(lambda: reset() > first, "the next rate-limit window", timeout=5.0)


def test_rate_limit_per_consumer_with_kongs_headers(gw: Harness) -> None:
    with backends(1) as (backend,):
        gw.apply(gw.config(reader_limit=5, writer_limit=50), targets=[backend.address])
        with gw.client() as client:
            gw.eventually(lambda: client.get(gw.path(), headers={
                "apikey": gw.writer_key}).headers.get("X-RateLimit-Limit-Minute") == "50",
                "the writer's own limit")
            _fresh_window(gw, client)
            before = backend.api_hits()
            burst = [client.get(gw.path(), headers={"apikey": gw.reader_key})
                     for _ in range(6)]
            other = client.get(gw.path(), headers={"apikey": gw.writer_key})
        allowed, refused = burst[:5], burst[5]
        assert [r.status_code for r in allowed] == [200] * 5
        assert [r.headers["RateLimit-Remaining"] for r in allowed] == ["4", "3", "2", "1", "0"]
        assert [r.headers["X-RateLimit-Remaining-Minute"] for r in allowed] == [
            "4", "3", "2", "1", "0"]
        assert {r.headers["RateLimit-Limit"] for r in allowed} == {"5"}
        assert {r.headers["X-RateLimit-Limit-Minute"] for r in allowed} == {"5"}
        assert refused.status_code == 429
        assert refused.json()["message"] == "API rate limit exceeded"
        assert refused.headers["RateLimit-Remaining"] == "0"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]
        assert backend.api_hits() == before + 6  # 5 reader requests and the writer's
        # limit_by consumer: the writer has its own budget, untouched by the reader's
        assert other.status_code == 200 and int(other.headers["RateLimit-Remaining"]) >= 30

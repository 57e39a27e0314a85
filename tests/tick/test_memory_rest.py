"""The Prefect-free reader of the tick memory (``kongstack status``) sees exactly what the tick's
own reader (Prefect's ``Block.load``) sees, against a real Prefect server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest

from autoscaler.model import Recommendation, ScalingHistory
from kongstack.core.procs import free_port_block
from tasks.tick.memory import MemoryBlock, read_memory, save_memory
from tasks.tick.memory_state import (
    BLOCK_TYPE_SLUG,
    ServerUnreachable,
    api_headers,
    fetch_memory,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def api() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the harness sets PREFECT_API_URL"
    return str(url)


def name() -> str:
    return f"rest-{uuid.uuid4().hex[:8]}"


def test_the_slug_is_the_blocks_own() -> None:
    assert MemoryBlock.get_block_type_slug() == BLOCK_TYPE_SLUG


def test_a_saved_memory_reads_the_same_over_rest_as_through_prefect() -> None:
    block = name()
    history = ScalingHistory(last_scale_up_at=NOW, last_scale_down_at=NOW,
                             recommendations=(Recommendation(at=NOW, desired=4),))
    save_memory.fn(block, history, generation=6, pool_size=4)
    over_rest, through_prefect = fetch_memory(api(), block), read_memory(block)
    assert not over_rest.is_default
    assert over_rest == through_prefect  # history, generation, pool size, document id
    assert (over_rest.generation, over_rest.last_pool_size) == (7, 4)
    assert over_rest.history == history


def test_a_missing_memory_is_the_default_with_the_same_reason() -> None:
    block = name()
    over_rest = fetch_memory(api(), block)
    assert over_rest.is_default
    assert over_rest.default_reason == read_memory(block).default_reason == (
        f"no memory block {block!r} yet")


def test_content_the_core_refuses_is_the_default_saying_invalid() -> None:
    block = name()
    MemoryBlock(generation=3, recommendations=[{"at": "not a time", "desired": "x"}]).save(block)
    over_rest = fetch_memory(api(), block)
    assert over_rest.is_default and "invalid" in (over_rest.default_reason or "")
    assert over_rest.generation == read_memory(block).generation == 3


def test_a_server_that_does_not_answer_is_reported_not_defaulted() -> None:
    closed = f"http://127.0.0.1:{free_port_block(1)}/api"
    with pytest.raises(ServerUnreachable, match="127.0.0.1.*did not answer"):
        fetch_memory(closed, "autoscale", timeout=2.0)


def test_an_error_answer_is_the_default_naming_the_status() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="database is locked")

    got = fetch_memory("http://prefect.invalid/api", "autoscale",
                       transport=httpx.MockTransport(refuse))
    assert got.is_default and "HTTP 500 database is locked" in (got.default_reason or "")


def test_credentials_come_from_prefects_own_variables() -> None:
    seen: list[str | None] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(404)

    basic = api_headers({"PREFECT_API_AUTH_STRING": "admin:pass"})
    assert basic == {"Authorization": "Basic YWRtaW46cGFzcw=="}
    assert api_headers({"PREFECT_API_KEY": "pnu_x"}) == {"Authorization": "Bearer pnu_x"}
    assert api_headers({}) == {}
    fetch_memory("http://prefect.invalid/api", "autoscale", headers=basic,
                 transport=httpx.MockTransport(record))
    assert seen == ["Basic YWRtaW46cGFzcw=="]

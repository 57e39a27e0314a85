"""The tick memory: what one tick hands the next, kept in a custom Prefect block.

It is the decision core's ``ScalingHistory`` (the last scale-up/down times, the
recommendation window the stabilisation rule looks at, recent rates and latencies, the
learned capacity estimate, the seasonal profile maintenance precomputed) plus the generation
counter and the pool size the last tick left behind (to notice manual changes). Read once at
the start of a tick and written once at the end. (The record of every decision and action is
a different thing: the scaling log, tasks/tick/scaling_log.py.)

A missing or unreadable block never fails the tick: it yields a *safe default* whose window
is seeded with "keep the current size" at load time, so no scale-down can happen until a full
stabilisation window of real recommendations has been collected again (scale-up still can).
The block's fields and the Prefect-free reader (``kongstack status``) are in memory_state.py.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

import httpx
from prefect import task
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentUpdate
from prefect.exceptions import ObjectNotFound
from prefect.settings import get_current_settings
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from autoscaler.model import ScalingHistory
from kongstack.core.retry import retry_on
from tasks.tick.memory_state import (
    BLOCK_TYPE_SLUG,
    DEFAULT_BLOCK_NAME,
    MemoryState,
    TickMemory,
    memory_from_state,
    missing_memory,
    unreadable_memory,
)

__all__ = ["DEFAULT_BLOCK_NAME", "MemoryBlock", "TickMemory", "load_memory", "read_memory",
           "save_memory"]


class MemoryBlock(Block, MemoryState):
    """What the autoscale flow remembers between ticks (one document per stack); the fields
    and their conversions are ``MemoryState``'s (tasks/tick/memory_state.py)."""

    # The block type keeps its first name, so memories saved before the rename still load.
    _block_type_name = "Kongstack Autoscale State"
    _block_type_slug = BLOCK_TYPE_SLUG
    _description = "Cooldown times, recommendation window and generation of the autoscaler."


def read_memory(block_name: str) -> TickMemory:
    """The stored state, or the safe default with the reason (never raises)."""
    try:
        block = cast(MemoryBlock, MemoryBlock.load(block_name, _sync=True))  # type: ignore[call-arg]
    except ValueError as exc:  # Prefect raises ValueError for a missing document
        text = str(exc).lower()
        if "unable to find" in text or "not found" in text:
            return missing_memory(block_name)
        return unreadable_memory(block_name, str(exc))
    except Exception as exc:  # unreadable for any reason must not become a crash loop
        return unreadable_memory(block_name, repr(exc))
    return memory_from_state(block, block._block_document_id)


@task(name="load-memory", cache_policy=NO_CACHE, timeout_seconds=20)
def load_memory(block_name: str = DEFAULT_BLOCK_NAME) -> TickMemory:
    return read_memory(block_name)


def _busy(exc: BaseException) -> bool:
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in (429, 503)


def _update_document(document_id: UUID, data: dict[str, Any]) -> None:
    """One PATCH of the block document.

    A SQLite-backed server answers 503 while another write holds its lock. Prefect's client
    then sleeps ~2 s even with retries off (sized for a remote API), which would double a
    tick; so this request goes through httpx with a backoff sized to a 30-second tick."""
    settings = get_current_settings()
    if not settings.api.url:  # ephemeral in-process API: use the client as is
        with get_client(sync_client=True) as client:
            client.update_block_document(
                document_id, BlockDocumentUpdate(data=data, merge_existing_data=False)
            )
        return
    headers = {}
    if settings.api.auth_string:
        raw = settings.api.auth_string.get_secret_value().encode()
        headers["Authorization"] = f"Basic {base64.b64encode(raw).decode()}"
    elif settings.api.key:
        headers["Authorization"] = f"Bearer {settings.api.key.get_secret_value()}"
    url = f"{settings.api.url.rstrip('/')}/block_documents/{document_id}"
    body = {"data": data, "merge_existing_data": False}
    for attempt in Retrying(
        retry=retry_if_exception(_busy),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        stop=stop_after_attempt(8),
        reraise=True,
    ):
        with attempt:
            response = httpx.patch(url, json=body, headers=headers, timeout=10.0)
            if response.status_code == 404:
                raise ObjectNotFound(http_exc=Exception(response.text))
            response.raise_for_status()


@task(
    name="save-memory",
    retries=2,
    retry_delay_seconds=[0.5, 2],
    retry_condition_fn=retry_on(httpx.TransportError, TimeoutError, ConnectionError),
    cache_policy=NO_CACHE,
    timeout_seconds=20,
)
def save_memory(
    block_name: str,
    history: ScalingHistory,
    *,
    generation: int,
    pool_size: int | None,
    document_id: UUID | None = None,
) -> int:
    """Write the state for the next tick; returns the new generation.

    With the document id from ``load_memory`` the document is updated in place (~25 ms);
    otherwise the block is saved, which also registers its type and schema (~0.5 s)."""
    now = datetime.now(UTC)
    block = MemoryBlock.from_history(
        history, generation=generation + 1, pool_size=pool_size, now=now
    )
    if document_id is not None:
        data = json.loads(block.model_dump_json())
        try:
            _update_document(document_id, data)
            return block.generation
        except ObjectNotFound:
            pass  # deleted since it was read: save it afresh
    block.save(block_name, overwrite=True, _sync=True)  # type: ignore[call-arg]
    return block.generation

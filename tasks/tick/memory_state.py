"""The tick memory's content, and a Prefect-free reader of it (``kongstack status``).

The memory itself is a Prefect block (``tasks.tick.memory.MemoryBlock``, which the tick reads
and writes through Prefect's client). Its fields, the conversion to the decision core's
``ScalingHistory`` and the fail-safe ``TickMemory`` live here so that a reader which only
looks (the CLI's ``status``) can fetch the block document over the server's REST API with
httpx, without importing Prefect (~0.7 s).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self
from urllib.parse import quote
from uuid import UUID

import httpx
from pydantic import BaseModel, Field

from autoscaler.model import Recommendation, ScalingHistory

DEFAULT_BLOCK_NAME = "autoscale"
BLOCK_TYPE_SLUG = "kongstack-autoscale-state"
"""The memory block type's slug (kept from its first name, so old memories still load)."""


class MemoryState(BaseModel):
    """What the autoscale flow remembers between ticks (one block document per stack)."""

    generation: int = Field(default=0, ge=0, description="ticks that wrote this state")
    last_scale_up_at: datetime | None = None
    last_scale_down_at: datetime | None = None
    recommendations: list[dict[str, Any]] = Field(
        default_factory=list, description="[{at, desired}] raw recommendations (the window)"
    )
    events: list[dict[str, Any]] = Field(default_factory=list)
    rates: list[dict[str, Any]] = Field(default_factory=list)
    latencies: list[dict[str, Any]] = Field(default_factory=list)
    capacity: dict[str, Any] = Field(
        default_factory=dict, description="the learned capacity estimate and its evidence"
    )
    profile: dict[str, Any] | None = Field(
        default=None, description="the seasonal load profile maintenance precomputed"
    )
    last_pool_size: int | None = Field(
        default=None, description="active instances the last tick left (manual-change check)"
    )
    updated_at: datetime | None = None

    def to_history(self) -> ScalingHistory:
        return ScalingHistory.model_validate(
            {
                "last_scale_up_at": self.last_scale_up_at,
                "last_scale_down_at": self.last_scale_down_at,
                "recommendations": self.recommendations,
                "events": self.events,
                "rates": self.rates,
                "latencies": self.latencies,
                "capacity": self.capacity,
                "profile": self.profile,
            }
        )

    @classmethod
    def from_history(
        cls, history: ScalingHistory, *, generation: int, pool_size: int | None, now: datetime
    ) -> Self:
        data = history.model_dump(mode="json")
        return cls(
            generation=generation,
            last_scale_up_at=history.last_scale_up_at,
            last_scale_down_at=history.last_scale_down_at,
            recommendations=data["recommendations"],
            events=data["events"],
            rates=data["rates"],
            latencies=data["latencies"],
            capacity=data["capacity"],
            profile=data["profile"],
            last_pool_size=pool_size,
            updated_at=now,
        )


@dataclass(frozen=True)
class TickMemory:
    """The state a tick starts from, and whether it is the safe default (and why)."""

    history: ScalingHistory
    generation: int
    last_pool_size: int | None
    default_reason: str | None = None
    document_id: UUID | None = None
    """The block document to update in place (one cheap API call instead of a full save)."""

    @property
    def is_default(self) -> bool:
        return self.default_reason is not None

    def seeded(self, current: int, now: datetime) -> ScalingHistory:
        """For a default state: a window that says "keep ``current``" as of ``now``.

        The scale-down stabilisation takes the highest recommendation in its window, so this
        seed forbids scaling below ``current`` until one window has passed.
        """
        if not self.is_default:
            return self.history
        return self.history.model_copy(
            update={"recommendations": (Recommendation(at=now, desired=current),)}
        )


def missing_memory(block_name: str) -> TickMemory:
    return TickMemory(ScalingHistory(), 0, None, f"no memory block {block_name!r} yet")


def unreadable_memory(block_name: str, problem: str) -> TickMemory:
    return TickMemory(ScalingHistory(), 0, None,
                      f"memory block {block_name!r} unreadable: {problem:.200}")


def memory_from_state(state: MemoryState, document_id: UUID | None = None) -> TickMemory:
    """The stored state as the tick sees it; content the core refuses gives the default."""
    try:
        history = state.to_history()
    except Exception as exc:
        return TickMemory(ScalingHistory(), state.generation, None,
                          f"memory block content invalid: {exc!r:.200}")
    return TickMemory(history, state.generation, state.last_pool_size, document_id=document_id)


class ServerUnreachable(Exception):
    """The Prefect server did not answer (connection refused, timed out)."""


def api_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Authorization header Prefect's client would send, from the same variables
    (PREFECT_API_AUTH_STRING: basic auth of a self-hosted server; PREFECT_API_KEY: Cloud)."""
    env = os.environ if environ is None else environ
    if env.get("PREFECT_API_AUTH_STRING"):
        raw = env["PREFECT_API_AUTH_STRING"].encode()
        return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}
    if env.get("PREFECT_API_KEY"):
        return {"Authorization": f"Bearer {env['PREFECT_API_KEY']}"}
    return {}


def fetch_memory(api_url: str, block_name: str = DEFAULT_BLOCK_NAME, *,
                 headers: Mapping[str, str] | None = None, timeout: float = 5.0,
                 transport: httpx.BaseTransport | None = None) -> TickMemory:
    """The memory block document over the server's REST API (``GET /block_types/slug/
    {slug}/block_documents/name/{name}``, the route Prefect's own ``Block.load`` uses).

    Like ``tasks.tick.memory.read_memory``: a missing or unreadable document is the safe
    default with its reason. Raises ServerUnreachable when the server does not answer, so
    the caller can say so instead of showing a default as if it were the state."""
    url = (f"{api_url.rstrip('/')}/block_types/slug/{BLOCK_TYPE_SLUG}"
           f"/block_documents/name/{quote(block_name, safe='')}")
    try:
        with httpx.Client(timeout=timeout, headers=dict(headers or {}),
                          transport=transport) as client:
            response = client.get(url)
    except httpx.TransportError as exc:
        raise ServerUnreachable(f"Prefect API at {api_url} did not answer: "
                                f"{type(exc).__name__}") from exc
    if response.status_code == 404:
        return missing_memory(block_name)
    if response.status_code != 200:
        return unreadable_memory(block_name, f"HTTP {response.status_code} "
                                             f"{response.text.strip()}")
    try:
        document = response.json()
        state = MemoryState.model_validate(document.get("data") or {})
        document_id = UUID(str(document["id"]))
    except Exception as exc:  # not a block document: the default, with why
        return unreadable_memory(block_name, repr(exc))
    return memory_from_state(state, document_id)

"""Helpers for tests that drive stock API instances (tests/instances)."""

from __future__ import annotations

import httpx


def in_flight(address: str) -> float:
    """The instance's ``stock_api_in_flight_requests`` gauge (this scrape included)."""
    for line in httpx.get(f"http://{address}/metrics", timeout=5).text.splitlines():
        if line.startswith("stock_api_in_flight_requests "):
            return float(line.split()[1])
    raise AssertionError("no stock_api_in_flight_requests metric")

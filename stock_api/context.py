"""The per-app services the request handlers use (kept in ``app.extensions``)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from stock_api.cache import StockCache
from stock_api.config import StockApiConfig
from stock_api.dependencies import Dependencies
from stock_api.metrics import ApiMetrics
from stock_api.store import StockRepository

EXTENSION = "stock_api"


@dataclass(frozen=True)
class Services:
    config: StockApiConfig
    store: StockRepository
    cache: StockCache
    metrics: ApiMetrics
    dependencies: Dependencies


def services() -> Services:
    found: Services = current_app.extensions[EXTENSION]
    return found

"""The API's data shapes: what a client may send and what the store holds.

Every model forbids unknown fields and uses strict types, so a typo or a string where a
number belongs is rejected with the field named instead of being coerced or dropped.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

EXCHANGES: dict[str, str] = {
    "NYSE": "USD",
    "NASDAQ": "USD",
    "TSX": "CAD",
    "LSE": "GBP",
    "XETRA": "EUR",
    "EURONEXT": "EUR",
    "SIX": "CHF",
    "TSE": "JPY",
    "HKEX": "HKD",
    "ASX": "AUD",
}
SECTORS: tuple[str, ...] = (
    "Communication Services",
    "Consumer Discretionary",
    "Consumer Staples",
    "Energy",
    "Financials",
    "Health Care",
    "Industrials",
    "Information Technology",
    "Materials",
    "Real Estate",
    "Utilities",
)
Exchange = Literal[
    "NYSE", "NASDAQ", "TSX", "LSE", "XETRA", "EURONEXT", "SIX", "TSE", "HKEX", "ASX"
]
Sector = Literal[
    "Communication Services", "Consumer Discretionary", "Consumer Staples", "Energy",
    "Financials", "Health Care", "Industrials", "Information Technology", "Materials",
    "Real Estate", "Utilities",
]
SYMBOL_PATTERN = r"^[A-Z][A-Z0-9]{0,5}(\.[A-Z]{1,2})?$"
SYMBOL_RE = re.compile(SYMBOL_PATTERN)

HISTORY_RANGES: dict[str, int | None] = {"1m": 31, "3m": 92, "6m": 183, "1y": 366, "max": None}
SORT_FIELDS: dict[str, tuple[str, int]] = {
    "symbol": ("symbol", 1), "-symbol": ("symbol", -1),
    "name": ("name", 1), "-name": ("name", -1),
    "price": ("price", 1), "-price": ("price", -1),
    "market_cap": ("market_cap", 1), "-market_cap": ("market_cap", -1),
}
MAX_PER_PAGE = 200
MAX_PAGE = 10_000

Price = Annotated[float, Field(gt=0, le=10_000_000, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=120, pattern=r"^[^\x00-\x1f]+$")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class StockFields(_Strict):
    """The client-writable fields of a stock."""

    name: Name
    exchange: Exchange
    sector: Sector
    currency: Currency
    price: Price
    volume: int = Field(default=0, ge=0, le=10**13)
    market_cap: float = Field(default=0.0, ge=0, le=1e15, allow_inf_nan=False)

    @field_validator("currency")
    @classmethod
    def _currency_of_exchange(cls, currency: str, info: ValidationInfo) -> str:
        """Every exchange lists in one currency (EXCHANGES, the seed's table too)."""
        exchange = info.data.get("exchange")  # absent when the exchange itself was invalid
        expected = EXCHANGES.get(exchange) if isinstance(exchange, str) else None
        if expected is not None and currency != expected:
            raise ValueError(f"currency {currency!r} contradicts exchange {exchange!r}, "
                             f"which lists in {expected}")
        return currency


class StockCreate(StockFields):
    """POST /api/stocks body."""

    symbol: str = Field(pattern=SYMBOL_PATTERN)


class StockReplace(StockFields):
    """PUT /api/stocks/<symbol> body: a full replacement; ``symbol`` may repeat the path."""

    symbol: str | None = Field(default=None, pattern=SYMBOL_PATTERN)


class ListQuery(_Strict):
    """GET /api/stocks query string (values arrive as text, hence lax numbers)."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)

    page: int = Field(default=1, ge=1, le=MAX_PAGE)
    per_page: int = Field(default=50, ge=1, le=MAX_PER_PAGE)
    exchange: Exchange | None = None
    sector: Sector | None = None
    min_price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    q: str | None = Field(default=None, min_length=1, max_length=50)
    sort: Literal[
        "symbol", "-symbol", "name", "-name", "price", "-price", "market_cap", "-market_cap"
    ] = "symbol"

    @model_validator(mode="after")
    def _price_bounds_ordered(self) -> ListQuery:
        if (
            self.min_price is not None
            and self.max_price is not None
            and self.min_price > self.max_price
        ):
            raise ValueError("min_price must not exceed max_price")
        return self

    def cache_key(self) -> str:
        """A canonical text of the query: equal queries share one cache entry."""
        return "&".join(f"{k}={v}" for k, v in sorted(self.model_dump().items()) if v is not None)


class HistoryQuery(_Strict):
    """GET /api/stocks/<symbol>/history query string."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)

    range: Literal["1m", "3m", "6m", "1y", "max"] = "1m"
    limit: int = Field(default=400, ge=1, le=5000)


class DebugSlowQuery(_Strict):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)

    seconds: float = Field(default=1.0, ge=0, le=60, allow_inf_nan=False)

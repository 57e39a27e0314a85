"""Load a realistic, deterministic demo data set: ``python -m stock_api.seed``.

Hundreds of symbols across ten exchanges and the eleven GICS sectors, each with a daily
OHLCV history from a geometric random walk (business days only). The same arguments
always produce the same data. Idempotent: a finished seed with the same parameters is
skipped in milliseconds; an interrupted one fills in what is missing; different
parameters (or ``--force``) rewrite the seed symbols and remove seed symbols the new
parameters no longer include. Symbols created through the API are never touched.
Writes go to the store directly: running instances serve cached entries until their
TTL (STOCK_API_CACHE_TTL) expires.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

from stock_api.config import StockApiConfig
from stock_api.models import EXCHANGES, SECTORS, SYMBOL_RE
from stock_api.store import StockRepository, open_repository

Doc = dict[str, Any]
DEFAULT_END = date(2025, 12, 31)
SUFFIX = {"LSE": ".L", "XETRA": ".DE", "EURONEXT": ".PA", "SIX": ".SW", "TSE": ".T",
          "HKEX": ".HK", "ASX": ".AX", "TSX": ".TO"}
# Rough share of listings per exchange, so the data set looks like a real universe.
EXCHANGE_WEIGHTS = {"NYSE": 24, "NASDAQ": 28, "TSX": 5, "LSE": 9, "XETRA": 6, "EURONEXT": 7,
                    "SIX": 3, "TSE": 8, "HKEX": 5, "ASX": 5}
PREFIXES = ("Apex", "Blue", "Cedar", "Delta", "Echo", "Falcon", "Granite", "Harbor", "Iron",
            "Juniper", "Keystone", "Lumen", "Meridian", "North", "Orion", "Pioneer", "Quantum",
            "Redwood", "Summit", "Titan", "Union", "Vertex", "Westgate", "Zenith", "Atlas",
            "Beacon", "Crescent", "Evergreen", "Frontier", "Horizon")
SECTOR_WORDS = {
    "Communication Services": ("Media", "Telecom", "Networks", "Broadcasting"),
    "Consumer Discretionary": ("Retail", "Motors", "Apparel", "Leisure"),
    "Consumer Staples": ("Foods", "Beverages", "Household", "Grocers"),
    "Energy": ("Petroleum", "Energy", "Drilling", "Pipelines"),
    "Financials": ("Bancorp", "Capital", "Insurance", "Financial"),
    "Health Care": ("Therapeutics", "Medical", "Biosciences", "Health"),
    "Industrials": ("Industries", "Aerospace", "Logistics", "Machinery"),
    "Information Technology": ("Systems", "Software", "Semiconductor", "Data"),
    "Materials": ("Materials", "Chemicals", "Mining", "Steel"),
    "Real Estate": ("Properties", "Realty", "REIT", "Land"),
    "Utilities": ("Utilities", "Power", "Water", "Electric"),
}
LEGAL = ("Inc.", "Corp.", "Group", "Holdings", "plc", "AG", "SA", "Ltd.")


@dataclass(frozen=True)
class SeedParams:
    symbols: int
    days: int
    seed: int
    end: str


@dataclass(frozen=True)
class SeedReport:
    skipped: bool
    written: int
    kept: int
    removed: int
    bars: int
    seconds: float


def _ticker(rng: random.Random, exchange: str, taken: set[str]) -> str:
    while True:
        base = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(2, 4)))
        symbol = base + SUFFIX.get(exchange, "")
        if symbol not in taken and SYMBOL_RE.match(symbol):
            taken.add(symbol)
            return symbol


def _business_days(end: date, days: int) -> list[date]:
    start = end - timedelta(days=days - 1)
    span = (start + timedelta(days=i) for i in range(days))
    return [d for d in span if d.weekday() < 5]


def _walk(rng: random.Random, dates: list[date]) -> list[Doc]:
    """Daily OHLCV bars of a geometric random walk with this symbol's drift and volatility."""
    close = min(max(math.exp(rng.gauss(3.6, 1.0)), 1.5), 2500.0)
    sigma = rng.uniform(0.008, 0.035)
    mu = rng.uniform(-0.0004, 0.0008)
    base_volume = math.exp(rng.gauss(13.5, 1.2))
    bars: list[Doc] = []
    for day in dates:
        opening = close * math.exp(rng.gauss(0, sigma * 0.3))
        shock = rng.gauss(0, 1)
        close = max(opening * math.exp(mu - 0.5 * sigma**2 + sigma * shock), 0.05)
        o, c = round(opening, 2), round(close, 2)
        high = round(max(o, c) * (1 + abs(rng.gauss(0, sigma / 2))), 2)
        low = round(max(min(o, c) * (1 - abs(rng.gauss(0, sigma / 2))), 0.01), 2)
        volume = int(base_volume * (1 + 2.5 * abs(shock)) * rng.uniform(0.7, 1.3))
        bars.append({"date": day.isoformat(), "open": max(o, 0.01), "high": max(high, o, c),
                     "low": min(low, max(o, 0.01), max(c, 0.01)), "close": max(c, 0.01),
                     "volume": volume})
    return bars


def universe(params: SeedParams) -> list[Doc]:
    """The seed's listings (no prices). Depends only on ``seed`` and grows by appending:
    the first N symbols of a bigger universe are the N symbols of a smaller one."""
    rng = random.Random(params.seed)
    exchanges = list(EXCHANGE_WEIGHTS)
    weights = [EXCHANGE_WEIGHTS[e] for e in exchanges]
    taken: set[str] = set()
    listings: list[Doc] = []
    for _ in range(params.symbols):
        exchange = rng.choices(exchanges, weights)[0]
        sector = rng.choice(SECTORS)
        symbol = _ticker(rng, exchange, taken)
        name = f"{rng.choice(PREFIXES)} {rng.choice(SECTOR_WORDS[sector])} {rng.choice(LEGAL)}"
        listings.append({"symbol": symbol, "name": name, "exchange": exchange,
                         "sector": sector, "currency": EXCHANGES[exchange]})
    return listings


def generate(params: SeedParams) -> Iterator[tuple[Doc, list[Doc]]]:
    """(stock, bars) pairs; the same params always give the same pairs."""
    dates = _business_days(date.fromisoformat(params.end), params.days)
    for listing in universe(params):
        # One generator per symbol: its prices do not depend on how many symbols exist.
        rng = random.Random(f"{params.seed}:{listing['symbol']}")
        bars = _walk(rng, dates)
        shares = int(math.exp(rng.gauss(19.5, 1.3)))
        last = bars[-1] if bars else {"close": 10.0, "volume": 0}
        stock = {
            **listing, "price": last["close"], "volume": last["volume"],
            "market_cap": round(last["close"] * shares, 2),
            "updated_at": f"{params.end}T21:00:00Z",
        }
        yield stock, bars


def seed(repo: StockRepository, params: SeedParams, *, force: bool = False) -> SeedReport:
    """Converge the store to the seed data set described by ``params``."""
    started = time.monotonic()
    wanted = asdict(params)
    previous = repo.get_meta("seed")
    if previous == wanted and not force:
        return SeedReport(skipped=True, written=0, kept=params.symbols, removed=0, bars=0,
                          seconds=round(time.monotonic() - started, 3))
    rewrite = force or previous is not None  # different parameters: rewrite seed symbols
    existing = repo.symbols()
    removed = 0
    if previous is not None and previous != wanted:
        try:
            old = {s["symbol"] for s in universe(SeedParams(**previous))}
        except TypeError:  # a marker from an older format: nothing to compare with
            old = set()
        for symbol in sorted(old - {s["symbol"] for s in universe(params)}):
            removed += int(repo.delete(symbol))
    written = kept = bars_written = 0
    for stock, bars in generate(params):
        if stock["symbol"] in existing and not rewrite:
            kept += 1
            continue
        # History first: a stock that exists always has its complete history.
        repo.replace_history(stock["symbol"], bars)
        if stock["symbol"] in existing:
            repo.replace(stock["symbol"], stock)
        else:
            repo.create(stock)
        written += 1
        bars_written += len(bars)
    repo.set_meta("seed", wanted)
    return SeedReport(skipped=False, written=written, kept=kept, removed=removed,
                      bars=bars_written,
                      seconds=round(time.monotonic() - started, 3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stock_api.seed", description=__doc__)
    parser.add_argument("--symbols", type=int, default=500, help="number of symbols (1-5000)")
    parser.add_argument("--days", type=int, default=365, help="calendar days of history")
    parser.add_argument("--seed", type=int, default=42, help="random seed")
    parser.add_argument("--end-date", default=DEFAULT_END.isoformat(), help="last history day")
    parser.add_argument("--force", action="store_true", help="rewrite every seed symbol")
    args = parser.parse_args(argv)
    if not 1 <= args.symbols <= 5000:
        parser.error("--symbols must be between 1 and 5000")
    if not 1 <= args.days <= 3660:
        parser.error("--days must be between 1 and 3660")
    try:
        end = date.fromisoformat(args.end_date)
    except ValueError:
        parser.error(f"--end-date must be YYYY-MM-DD (got {args.end_date!r})")
    config = StockApiConfig()
    repo = open_repository(config)
    try:
        repo.ensure_indexes()
        report = seed(repo, SeedParams(args.symbols, args.days, args.seed, end.isoformat()),
                      force=args.force)
    finally:
        repo.close()
    print(json.dumps({"store": repo.kind, **asdict(report)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

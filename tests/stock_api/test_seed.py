"""The seed data set: deterministic, realistic, idempotent."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path

from kongstack.core.settings import REPO_ROOT
from stock_api.models import EXCHANGES, SECTORS, SYMBOL_RE, StockCreate
from stock_api.seed import SeedParams, generate, seed
from stock_api.store import open_embedded

PARAMS = SeedParams(symbols=300, days=120, seed=42, end="2025-12-31")


def test_same_parameters_same_data_other_seed_other_data() -> None:
    small = SeedParams(symbols=20, days=30, seed=1, end="2025-06-30")
    assert list(generate(small)) == list(generate(small))
    # Symbols and their prices do not depend on how many symbols are generated.
    larger = list(generate(SeedParams(symbols=40, days=30, seed=1, end="2025-06-30")))
    assert larger[:20] == list(generate(small))
    other = SeedParams(symbols=20, days=30, seed=2, end="2025-06-30")
    assert [s for s, _ in generate(small)] != [s for s, _ in generate(other)]


def test_data_set_looks_like_a_market() -> None:
    pairs = list(generate(PARAMS))
    stocks = [s for s, _ in pairs]
    assert len({s["symbol"] for s in stocks}) == PARAMS.symbols
    assert len(Counter(s["exchange"] for s in stocks)) == len(EXCHANGES)
    assert set(Counter(s["sector"] for s in stocks)) == set(SECTORS)
    for stock, bars in pairs:
        StockCreate.model_validate({k: v for k, v in stock.items() if k != "updated_at"})
        assert SYMBOL_RE.match(stock["symbol"])
        assert stock["currency"] == EXCHANGES[stock["exchange"]]
        assert stock["price"] == bars[-1]["close"]
        for bar in bars:
            assert date.fromisoformat(bar["date"]).weekday() < 5
            assert 0 < bar["low"] <= min(bar["open"], bar["close"])
            assert max(bar["open"], bar["close"]) <= bar["high"]
            assert bar["volume"] > 0
    # A random walk, not a constant: prices move, and differently per symbol.
    closes = [b["close"] for b in pairs[0][1]]
    assert len(set(closes)) > len(closes) // 2
    assert len({round(s["price"]) for s in stocks}) > PARAMS.symbols // 4


def test_seeding_is_idempotent_and_resumes(tmp_path: Path) -> None:
    repo = open_embedded(tmp_path / "data", "kongstack")
    params = SeedParams(symbols=12, days=20, seed=3, end="2025-12-31")
    # An interrupted earlier run: three stocks written, no completion marker.
    for stock, bars in list(generate(params))[:3]:
        repo.replace_history(stock["symbol"], bars)
        repo.create(stock)

    first = seed(repo, params)
    assert (first.skipped, first.written, first.kept) == (False, 9, 3)
    assert len(repo.symbols()) == 12
    again = seed(repo, params)
    assert again.skipped and again.written == 0
    assert len(repo.symbols()) == 12

    # Different parameters rewrite the seed symbols; API-created ones are left alone.
    repo.create({"symbol": "MINE", "name": "Mine", "price": 1.0})
    bigger = SeedParams(symbols=12, days=40, seed=3, end="2025-12-31")
    changed = seed(repo, bigger)
    assert (changed.written, changed.removed) == (12, 0)
    assert repo.symbols() == {s["symbol"] for s, _ in generate(bigger)} | {"MINE"}
    some = next(iter(repo.symbols() - {"MINE"}))
    assert len(repo.history(some)) > 20
    fewer = seed(repo, SeedParams(symbols=5, days=40, seed=3, end="2025-12-31"))
    assert (fewer.written, fewer.removed) == (5, 7)
    assert len(repo.symbols()) == 6


def test_seed_command(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "STOCK_API_DATA_DIR": str(tmp_path / "data")}
    argv = [sys.executable, "-m", "stock_api.seed", "--symbols", "8", "--days", "15"]
    first = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=120, check=True)
    report = json.loads(first.stdout)
    assert (report["store"], report["written"], report["skipped"]) == ("embedded", 8, False)
    second = json.loads(subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True,
                                       text=True, timeout=120, check=True).stdout)
    assert second["skipped"] is True
    bad = subprocess.run([*argv[:3], "--symbols", "0"], env=env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--symbols" in bad.stderr

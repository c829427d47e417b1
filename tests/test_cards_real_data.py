"""The Python export on real S&P 500 bars (2005-2015, adjusted): the engine's total return to 1e-6
for every family and level, through a CSV as a user would run it."""

from __future__ import annotations

import numpy as np
import pytest

from alphatwin_pipelines.adjustment import adjust
from alphatwin_pipelines.backtest import CostModel, run_specs
from alphatwin_pipelines.cards import export
from alphatwin_pipelines.reports.portfolio import equal_weight_book
from alphatwin_pipelines.cards.export import EXPORTABLE_FAMILIES as FAMILIES
from alphatwin_pipelines.strategies import MAX_LEVEL, MarketArrays, StrategySpec
from cards_support import load_generated

SYMBOLS = ["AAPL", "MSFT", "JNJ", "XOM", "GE", "KO"]
START, END = "2005-01-01", "2015-12-31"


@pytest.fixture(scope="module")
def adjusted(sp500_bars):
    raw = sp500_bars[sp500_bars["symbol"].isin(SYMBOLS) & sp500_bars["date"].between(START, END)]
    return adjust(raw.reset_index(drop=True))


@pytest.mark.parametrize("family", FAMILIES)
def test_python_export_matches_the_engine_on_real_bars(family, adjusted, tmp_path):
    market = MarketArrays.from_bars(adjusted, price="adj")
    specs = [StrategySpec(family, {}, level) for level in range(MAX_LEVEL + 1)]
    engine = run_specs(specs, market, CostModel())
    book = equal_weight_book(engine).returns
    csv = tmp_path / "bars.csv"
    adjusted[["date", "symbol", "adj_open", "adj_high", "adj_low", "adj_close", "adj_volume"]].rename(
        columns=lambda c: c.removeprefix("adj_")).to_csv(csv, index=False)
    wide = None
    for k, spec in enumerate(specs):
        module = load_generated(export("r" * 64, spec.to_json(), "python").text)
        wide = wide or module.load_bars(csv)
        got = module.backtest(wide)
        assert (engine.orders["param_set"] == k).sum() > 0, spec.to_json()
        expected = float(np.prod(1 + book[k].to_numpy()) - 1)
        assert abs(got["total_return"] - expected) <= 1e-6, (spec.to_json(), got["total_return"], expected)

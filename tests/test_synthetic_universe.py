"""A new user's own universe on the synthetic market: 1000 made-up tickers in a CSV.

The synthetic market lists its own 1000 companies, but any valid ticker is generated from its
name, so ``ALPHATWIN_UNIVERSE=my_universe.csv`` works offline like any other source.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from alphatwin_pipelines import load
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.sources.synthetic import SyntheticSource
from alphatwin_pipelines.storage import TableStore
from assets.ingestion import raw_ohlcv, universe
from assets.resources import MarketDataResource, StorageResource

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")


def made_up_tickers(count: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [f"X{a}{b}{c}" for a in letters for b in letters for c in "QRSTUVWXYZ"][:count]


def test_a_csv_universe_of_1000_made_up_tickers_is_generated(tmp_path):
    tickers = made_up_tickers(1000)
    known = set(SyntheticSource().universe()["symbol"])
    assert len(set(tickers)) == 1000 and len(set(tickers) - known) > 990
    path = tmp_path / "my_universe.csv"
    pd.DataFrame({"Symbol": tickers, "Sector": "Watchlist"}).to_csv(path, index=False)
    data = tmp_path / "data"
    resources = {"storage": StorageResource(data_dir=str(data)),
                 "market_data": MarketDataResource(source="synthetic", universe=str(path), synthetic_defects="0")}
    window = sessions_between("2024-03-04", "2024-03-08")
    tags = {"dagster/asset_partition_range_start": f"{window[0]:%Y-%m-%d}",
            "dagster/asset_partition_range_end": f"{window[-1]:%Y-%m-%d}"}
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize([universe], resources=resources, instance=instance).success
        result = dg.materialize([raw_ohlcv], tags=tags, resources=resources, instance=instance)
    assert result.success
    raw = load("raw_ohlcv", data_dir=data)
    per_symbol = raw.groupby("symbol").size()
    # Like any market, some made-up companies list later or were delisted; the rest trade every session.
    assert set(per_symbol.index) <= set(tickers) and len(per_symbol) > 800
    assert (per_symbol == len(window)).mean() > 0.99
    assert TableStore(data).read_rejections().empty, "nothing was rejected as unknown"
    # Each is a company of its own, and the same one whoever asks.
    assert raw.groupby("symbol")["close"].first().nunique() > 700
    again = SyntheticSource(defects=0).fetch(tickers[:50], window).bars
    ours = raw[raw["symbol"].isin(tickers[:50])].sort_values(["symbol", "date"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(ours[list(again.columns)], again, check_dtype=False)

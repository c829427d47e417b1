"""CsvFolderSource on real S&P 500 bars: what we write in each provider's format reads back bit for bit."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from alphatwin_pipelines.schema import bars_to_arrow, to_canonical
from alphatwin_pipelines.sources.csv_source import CsvFolderSource

# Splits and dividends (AAPL 4 splits, NVDA 4, MSFT/JNJ/XOM 1 each), plus a dotted ticker.
SYMBOLS = ["AAPL", "MSFT", "JNJ", "XOM", "NVDA", "BRK.B"]
PRICES = ["open", "high", "low", "close"]


def _num(values) -> list[str]:
    """Shortest text that parses back to the same float (repr), as a careful exporter writes it."""
    return [repr(float(v)) for v in values]


def _write(path, header: str, columns: list[list[str]]) -> None:
    path.write_text(header + "\n" + "".join(",".join(row) + "\n" for row in zip(*columns)))


def _pick(sp500_bars) -> pd.DataFrame:
    frame = sp500_bars[sp500_bars["symbol"].isin(SYMBOLS)]
    return to_canonical(frame).reset_index(drop=True)


def _check_same(got: pd.DataFrame, want: pd.DataFrame, actions: bool) -> None:
    assert got["symbol"].tolist() == want["symbol"].tolist()
    assert np.array_equal(got["date"].to_numpy(), want["date"].to_numpy())
    for column in [*PRICES, "volume"] + (["dividend", "split_ratio"] if actions else []):
        assert np.array_equal(got[column].to_numpy(), want[column].to_numpy()), column


def _sessions(frame: pd.DataFrame) -> pd.DatetimeIndex:
    # The data's own dates: they need not match the NYSE calendar exactly.
    return pd.DatetimeIndex(np.unique(frame["date"].to_numpy()))


def test_yahoo_export_round_trips_exactly(sp500_bars, tmp_path):
    want = _pick(sp500_bars)
    for symbol, rows in want.groupby("symbol"):
        _write(tmp_path / f"{symbol.lower()}.csv", "Date,Open,High,Low,Close,Adj Close,Volume", [
            rows["date"].dt.strftime("%Y-%m-%d").tolist(), *(_num(rows[c]) for c in PRICES),
            _num(rows["close"]), rows["volume"].astype(str).tolist()])
    result = CsvFolderSource(tmp_path).fetch(SYMBOLS, _sessions(want))
    assert result.rejections == []
    _check_same(result.bars, want, actions=False)
    assert (result.bars["dividend"] == 0).all() and (result.bars["split_ratio"] == 1).all()


def test_alphavantage_newest_first_round_trips_exactly(sp500_bars, tmp_path):
    want = _pick(sp500_bars)
    assert (want["split_ratio"] != 1).sum() >= 10 and (want["dividend"] > 0).sum() >= 100
    for symbol, rows in want.groupby("symbol"):
        rows = rows.iloc[::-1]  # AlphaVantage sends newest first
        _write(tmp_path / f"{symbol}.csv",
               "timestamp,open,high,low,close,adjusted_close,volume,dividend_amount,split_coefficient", [
                   rows["date"].dt.strftime("%Y-%m-%d").tolist(), *(_num(rows[c]) for c in PRICES),
                   _num(rows["close"]), rows["volume"].astype(str).tolist(), _num(rows["dividend"]),
                   _num(rows["split_ratio"])])
    result = CsvFolderSource(tmp_path).fetch(SYMBOLS, _sessions(want))
    assert result.rejections == []
    _check_same(result.bars, want, actions=True)


def test_whole_set_as_one_canonical_parquet(sp500_bars, tmp_path):
    want = to_canonical(sp500_bars)
    pq.write_table(bars_to_arrow(want), tmp_path / "sp500.parquet")
    symbols = sorted(want["symbol"].unique())
    started = time.perf_counter()
    result = CsvFolderSource(tmp_path).fetch(symbols, _sessions(want))
    print(f"read {len(result.bars):,} rows of {len(symbols)} symbols in {time.perf_counter() - started:.2f}s")
    assert result.rejections == []
    _check_same(result.bars, want, actions=True)

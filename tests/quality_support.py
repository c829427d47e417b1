"""Shared by the quality-asset tests: a CSV market written here with defects planted at known rows,
one Dagster run of a set of assets (a single partition, or a partition range as one run), and
readers of what a run did and wrote.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from alphatwin_pipelines import load
from alphatwin_pipelines.calendar import sessions_between
from assets.cleaning import adjustment_factors, cleaned_ohlcv
from assets.ingestion import raw_ohlcv, universe
from assets.quality import validated_and_quarantined_ohlcv
from assets.resources import MarketDataResource, StorageResource

PIPELINE = [raw_ohlcv, validated_and_quarantined_ohlcv, adjustment_factors, cleaned_ohlcv]
TABLES = ("raw_ohlcv", "validated_ohlcv", "quarantined_ohlcv", "adjustment_factors", "cleaned_ohlcv")
VALIDATED_KEY, QUARANTINED_KEY = dg.AssetKey("validated_ohlcv"), dg.AssetKey("quarantined_ohlcv")

# 61 sessions: the return rules need ~40 sessions of history before their robust baseline
# (60-session median and MAD, each with 20 observations) exists, so the planted jump sits late.
RANGE = ("2024-01-02", "2024-03-28")
SESSIONS = sessions_between(*RANGE)
KEYS = list(SESSIONS.strftime("%Y-%m-%d"))
# 100 symbols: one bad row in a session is ordinary noise for the session gate (it allows 5).
SYMBOLS = [f"S{i:02d}" for i in range(100)]
PRICES = ["open", "high", "low", "close"]
CSV_COLUMNS = ["symbol", "date", *PRICES, "volume", "dividend", "split_ratio"]


# -- the CSV market --------------------------------------------------------------------------
def make_market(symbols, sessions, seed=0, first_price=20.0, price_step=1.0) -> pd.DataFrame:
    """Clean random-walk bars: 2-decimal prices, low <= open, close <= high, ~1.5% daily moves; the
    i-th symbol starts near ``first_price + i * price_step``."""
    rng = np.random.default_rng(seed)
    n, frames = len(sessions), []
    for i, symbol in enumerate(symbols):
        close = (first_price + price_step * i) * np.exp(np.cumsum(rng.normal(0.0003, 0.015, n)))
        open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0.0, 0.004, n))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, 0.006, n)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, 0.006, n)))
        frames.append(pd.DataFrame({
            "symbol": symbol, "date": sessions, "open": open_.round(2), "high": high.round(2),
            "low": low.round(2), "close": close.round(2), "volume": rng.integers(800_000, 1_200_000, n),
            "dividend": 0.0, "split_ratio": 1.0,
        }))
    return pd.concat(frames, ignore_index=True)


def add_split(bars: pd.DataFrame, symbol: str, day, ratio: float) -> None:
    """A real split: prices from ``day`` on divided by ``ratio``, volumes multiplied."""
    after = (bars["symbol"] == symbol) & (bars["date"] >= pd.Timestamp(day))
    bars.loc[after, PRICES] = (bars.loc[after, PRICES] / ratio).round(2)
    bars.loc[after, "volume"] = (bars.loc[after, "volume"] * ratio).round().astype("int64")
    bars.loc[row(bars, symbol, day), "split_ratio"] = ratio


def row(bars: pd.DataFrame, symbol: str, day) -> pd.Series:
    mask = (bars["symbol"] == symbol) & (bars["date"] == pd.Timestamp(day))
    assert mask.sum() == 1, (symbol, day)
    return mask


def base_market() -> pd.DataFrame:
    bars = make_market(SYMBOLS, SESSIONS)
    add_split(bars, "S90", SESSIONS[20], 2.0)
    for i in (10, 45):
        bars.loc[row(bars, "S91", SESSIONS[i]), "dividend"] = 0.4
    return bars


def write_folder(folder: Path, bars: pd.DataFrame) -> Path:
    """One canonical multi-symbol CSV (a `symbol` column); NaN becomes an empty cell."""
    folder.mkdir(parents=True)
    out = bars[CSV_COLUMNS].assign(date=pd.to_datetime(bars["date"]).dt.strftime("%Y-%m-%d"))
    out.to_csv(folder / "bars.csv", index=False)
    return folder


def write_universe(path: Path, symbols) -> Path:
    # A CSV file, not a comma-separated list: a 100-symbol list is longer than a file name and
    # universe.parse_universe stats it as a path (see the report of this test module).
    pd.DataFrame({"Symbol": symbols, "Sector": "Test"}).to_csv(path, index=False)
    return path


def csv_resources(data_dir: Path, folder: Path, universe_spec: str | Path, **extra) -> dict:
    return {
        "storage": StorageResource(data_dir=str(data_dir)),
        "market_data": MarketDataResource(source="csv", source_path=str(folder), universe=str(universe_spec), **extra),
    }


# -- running and reading runs ----------------------------------------------------------------
def range_tags(start: str, end: str) -> dict:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


def run(instance, resources, assets, start: str, end: str | None = None) -> dg.ExecuteInProcessResult:
    """One run of ``assets``: a single partition (``end`` omitted) or a range as one run."""
    if end is None:
        return dg.materialize(assets, partition_key=start, resources=resources, instance=instance, raise_on_error=False)
    return dg.materialize(assets, tags=range_tags(start, end), resources=resources, instance=instance,
                          raise_on_error=False)


def with_universe(instance, resources) -> dict:
    assert dg.materialize([universe], resources=resources, instance=instance).success
    return resources


def checks_of(result) -> dict[str, dg.AssetCheckEvaluation]:
    evaluations = result.get_asset_check_evaluations()
    by_name = {e.check_name: e for e in evaluations}
    assert len(by_name) == len(evaluations), "one evaluation per check per run"
    return by_name


def materialized(result) -> dict[str, set[str]]:
    """Asset name -> partitions materialised by the run."""
    out: dict[str, set[str]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        out.setdefault(mat.asset_key.to_user_string(), set()).add(mat.partition)
    return out


def md_rows(text: str) -> list[dict[str, str]]:
    """A markdown table (as written by reporting.markdown_table) back into dicts."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) >= 2 and set(lines[1]) <= {"|", "-"}, f"not a markdown table: {text!r}"
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def digests(data_dir: Path, tables=TABLES) -> dict[str, str]:
    return {f"{t}/{p.name}": sha(p) for t in tables for p in sorted((Path(data_dir) / t).glob("*.parquet"))}


def day(table: str, key: str, data_dir: Path) -> pd.DataFrame:
    return load(table, start=key, end=key, data_dir=data_dir)


def keyset(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["symbol"].astype(str), pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d")))


def copy_data(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("gx_docs"))
    return dst


def explain(expected_dir: Path, got_dir: Path, names) -> str:
    """Which rows/columns of each differing file differ (for a readable failure)."""
    lines = []
    for name in names:
        a = pq.read_table(Path(expected_dir) / name).to_pandas()
        b = pq.read_table(Path(got_dir) / name).to_pandas()
        if len(a) != len(b):
            extra = pd.concat([a.assign(run="range"), b.assign(run="split")]).drop_duplicates(
                [c for c in a.columns if c != "raw_row"], keep=False)
            lines.append(f"{name}: {len(a)} vs {len(b)} rows; only in one: "
                         f"{extra[['run', 'symbol', 'date', 'flags']].to_dict('records')}")
            continue
        cols = [c for c in a.columns if not a[c].equals(b[c])]
        lines.append(f"{name}: columns {cols} differ, e.g. "
                     + "; ".join(f"{c}: {a[c][a[c].ne(b[c])].head(2).tolist()} vs {b[c][a[c].ne(b[c])].head(2).tolist()}"
                                 for c in cols))
    return "\n".join(lines)

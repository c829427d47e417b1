"""The catalogue itself, history handling, output shape and determinism of ``validate``."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.quality import (
    ValidationResult, missing_sessions, raw_bar_schema, rule_catalogue, rule_table_markdown, validate,
)
from alphatwin_pipelines.schema import BAR_COLUMNS

AS_OF = "2024-12-31"
OHLC = ["open", "high", "low", "close"]


def bars(symbols=("AAPL", "MSFT", "XOM"), sessions=90, start="2024-03-01", seed=3) -> pd.DataFrame:
    """Cent-rounded random walks, one row per symbol and session."""
    rng = np.random.default_rng(seed)
    dates = sessions_between(start, "2025-12-31")[:sessions]
    frames = []
    for i, symbol in enumerate(symbols):
        close = 30.0 * (i + 1) * np.exp(np.cumsum(rng.normal(0, 0.012, sessions)))
        open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.003, sessions))
        o, c = np.round(open_, 2), np.round(close, 2)
        frames.append(pd.DataFrame({
            "symbol": symbol, "date": dates, "open": o, "high": np.round(np.maximum(o, c) * 1.004, 2),
            "low": np.round(np.minimum(o, c) * 0.996, 2), "close": c,
            "volume": np.round(1e6 * np.exp(rng.normal(0, 0.25, sessions))).astype("int64"),
            "dividend": 0.0, "split_ratio": 1.0, "source": "synthetic",
        }))
    return pd.concat(frames, ignore_index=True).astype({"symbol": "string", "source": "string"})


def rule_ids(result: ValidationResult, row: int) -> set[str]:
    return set(result.failures.loc[result.failures["raw_row"] == row, "rule_id"])


def test_catalogue_has_30_unique_readable_rules():
    rules = rule_catalogue()
    ids = [r.id for r in rules]
    assert len(ids) >= 30 and len(set(ids)) == len(ids)
    for rule in rules:
        assert re.fullmatch(r"[a-z]+\.[a-z0-9_]+", rule.id), rule.id
        assert rule.severity in {"ERROR", "WARNING"}
        assert rule.description.strip().endswith(".") and len(rule.description) > 40
        assert rule.lookback >= 0


def test_markdown_table_lists_every_rule():
    table = rule_table_markdown()
    assert table.startswith("| id | severity | action | lookback | description |")
    for rule in rule_catalogue():
        assert f"| `{rule.id}` | {rule.severity} | {rule.action} | {rule.lookback} |" in table


def test_clean_frame_passes_every_rule():
    raw = bars()
    raw_bar_schema().validate(raw)  # pandera accepts it as well
    result = validate(raw, as_of=AS_OF)
    assert result.pass_rate == 1.0 and result.quarantined.empty and result.failures.empty
    assert (result.summary["pass_rate"] == 1.0).all()
    assert list(result.summary["rule_id"]) == [r.id for r in rule_catalogue()]
    assert list(result.validated.columns) == [*BAR_COLUMNS, "flags", "raw_row"]
    pd.testing.assert_frame_equal(result.validated[list(BAR_COLUMNS)], raw, check_dtype=False)


def spiked(raw: pd.DataFrame, symbol="MSFT", session=80, factor=10.0, split=None) -> tuple[pd.DataFrame, int]:
    raw = raw.copy()
    row = int(np.flatnonzero(raw["symbol"].to_numpy() == symbol)[session])
    raw.loc[row, OHLC] = raw.loc[row, OHLC].to_numpy(dtype=float) * factor
    if split is not None:
        raw.loc[row, "split_ratio"] = split
    return raw, row


def split_partition(raw: pd.DataFrame, first_session: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    later = raw["date"] >= pd.Timestamp(first_session)
    return raw[~later].reset_index(drop=True), raw[later].reset_index(drop=True)


def test_outlier_needs_history_and_history_is_never_returned():
    raw, row = spiked(bars())
    spike_day = raw.loc[row, "date"]
    history, partition = split_partition(raw, spike_day)
    spike_row = int(np.flatnonzero((partition["symbol"] == "MSFT") & (partition["date"] == spike_day))[0])

    alone = validate(partition, as_of=AS_OF)
    assert "return.extreme_outlier" not in rule_ids(alone, spike_row)  # a handful of sessions is no baseline

    informed = validate(partition, history=history, as_of=AS_OF)
    assert "return.extreme_outlier" in rule_ids(informed, spike_row)
    assert informed.accounted_rows == len(partition)
    assert set(informed.validated["raw_row"]) | set(informed.quarantined["raw_row"]) == set(range(len(partition)))
    assert informed.validated["date"].min() >= spike_day


def test_short_history_fires_only_the_extreme_rule_against_a_neutral_baseline():
    raw, row = spiked(bars(sessions=15), session=12)
    assert rule_ids(validate(raw, as_of=AS_OF), row) == {"return.extreme_outlier"}
    raw, row = spiked(bars(sessions=15), session=12, factor=3.0)  # +200 %: unusual, but no baseline to call it so
    assert rule_ids(validate(raw, as_of=AS_OF), row) == set()


@pytest.mark.parametrize("factor, split", [(0.5, 2.0), (10.0, 0.1), (1 / 7, 7.0)])
def test_split_explained_jump_is_not_an_outlier(factor, split):
    raw, row = spiked(bars(), factor=factor, split=split)
    # Every later bar trades at the new share count too.
    later = (raw["symbol"] == "MSFT") & (raw.index > row)
    raw.loc[later, OHLC] = raw.loc[later, OHLC].to_numpy(dtype=float) * factor
    result = validate(raw, as_of=AS_OF)
    assert result.pass_rate == 1.0
    assert not any(r.startswith(("return.", "gap.")) for r in result.failures["rule_id"])


def test_dividend_explained_drop_is_not_an_outlier():
    raw = bars()
    row = int(np.flatnonzero(raw["symbol"].to_numpy() == "XOM")[70])
    dividend = round(float(raw.loc[row - 1, "close"]) * 0.3, 2)
    raw.loc[raw.index >= row, OHLC] -= np.where((raw["symbol"] == "XOM")[raw.index >= row], dividend, 0.0)[:, None]
    raw.loc[row, "dividend"] = dividend
    result = validate(raw, as_of=AS_OF)
    assert rule_ids(result, row) == {"dividend.large"}


def test_spike_reversal_does_not_reject_the_next_day():
    raw, row = spiked(bars())
    result = validate(raw, as_of=AS_OF)
    assert result.quarantined["raw_row"].tolist() == [row]
    assert rule_ids(result, row + 1) == set()


def test_history_overlapping_the_partition_is_not_a_duplicate():
    raw = bars()
    history, partition = split_partition(raw, raw["date"].iloc[60])
    result = validate(partition, history=raw, as_of=AS_OF)  # history re-sent including the partition's own days
    assert result.pass_rate == 1.0 and result.failures.empty


def test_missing_sessions_span_history_and_partition():
    raw = bars()
    msft = np.flatnonzero(raw["symbol"].to_numpy() == "MSFT")
    dropped = raw.loc[msft[[58, 59, 61]], "date"].tolist()
    raw = raw.drop(index=msft[[58, 59, 61]]).reset_index(drop=True)
    history, partition = split_partition(raw, raw["date"].iloc[60])
    gaps = missing_sessions(partition, history, as_of=AS_OF)
    assert gaps.to_dict("list") == {"symbol": ["MSFT"] * 3, "session": dropped}
    assert missing_sessions(partition, history, universe=["AAPL"], as_of=AS_OF).empty
    result = validate(partition, history=history, as_of=AS_OF)
    flagged = result.validated[result.validated["flags"].str.contains("session.gap_before")]
    assert flagged["symbol"].tolist() == ["MSFT", "MSFT"]


def test_missing_column_rejects_every_row():
    raw = bars(sessions=30).drop(columns=["dividend"])
    result = validate(raw, as_of=AS_OF)
    assert result.validated.empty and len(result.quarantined) == len(raw)
    assert result.quarantined["rule_id"].str.contains("schema.missing_column").all()


def test_entirely_mistyped_column_fails_every_row():
    raw = bars(sessions=30)
    raw["close"] = raw["date"]  # dates where prices belong
    result = validate(raw, as_of=AS_OF)
    assert result.validated.empty
    assert result.quarantined["rule_id"].str.split(",").map(lambda ids: "schema.non_numeric_value" in ids).all()


def test_offending_values_are_short_and_specific():
    raw = bars(sessions=30)
    raw.loc[3, "high"] = raw.loc[3, "low"] - 0.5
    raw["volume"] = raw["volume"].astype(object)
    raw.loc[4, "volume"] = "12k"
    result = validate(raw, as_of=AS_OF, partition="2024-04-11")
    offending = dict(zip(result.failures["rule_id"], result.failures["offending_value"]))
    low, high = raw.loc[3, "low"], raw.loc[3, "high"]
    assert offending["ohlc.low_above_high"] == f"low={low:.10g} > high={high:.10g}"
    assert offending["schema.non_numeric_value"] == "volume=12k"
    assert set(result.quarantined["partition"]) == {"2024-04-11"}
    assert (result.quarantined.drop(columns="raw_row").dtypes == "string").all()


def test_universe_flags_unknown_symbols():
    raw = bars(sessions=30)
    result = validate(raw, as_of=AS_OF, universe=["AAPL", "MSFT"])
    flagged = result.validated.loc[result.validated["flags"] != "", "symbol"]
    assert set(flagged) == {"XOM"} and result.pass_rate == 1.0


def test_validate_is_deterministic_and_order_independent():
    raw = bars()
    raw.loc[5, "close"] = -1.0
    raw.loc[9, "volume"] = 0
    first, second = validate(raw, as_of=AS_OF), validate(raw, as_of=AS_OF)
    for name in ("validated", "quarantined", "failures", "summary"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
    shuffled = raw.sample(frac=1.0, random_state=1)
    third = validate(shuffled, as_of=AS_OF)
    pd.testing.assert_frame_equal(first.validated.drop(columns="raw_row"), third.validated.drop(columns="raw_row"))
    assert first.validated["date"].is_monotonic_increasing is False  # sorted by symbol first
    assert first.validated[["symbol", "date"]].equals(
        first.validated[["symbol", "date"]].sort_values(["symbol", "date"]).reset_index(drop=True))


def test_validate_never_mutates_its_input():
    raw = bars(sessions=30)
    raw["open"] = raw["open"].astype(object)
    raw.loc[2, "open"] = "n/a"
    raw.index = raw.index * 3 + 7
    before = raw.copy(deep=True)
    validate(raw, history=bars(sessions=10), as_of=AS_OF)
    pd.testing.assert_frame_equal(raw, before)


def test_speed_smoke_larger_frame():
    raw = bars(symbols=tuple(f"S{i:03d}" for i in range(150)), sessions=250, start="2023-01-03")
    result = validate(raw, as_of=AS_OF)
    assert result.accounted_rows == len(raw) == 37_500


def test_real_sp500_sample_mostly_passes(sp500_bars):
    symbols = sorted(sp500_bars["symbol"].unique())[:40]
    sample = sp500_bars[sp500_bars["symbol"].isin(symbols)]
    result = validate(sample, as_of="2021-12-31")
    assert result.accounted_rows == len(sample)
    assert result.pass_rate > 0.999

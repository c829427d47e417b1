"""Corporate actions in validation: distributions judged against the previous close, a bad event
quarantined without costing its bar, and the re-check judging every bar as the first pass did."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.quality import validate
from alphatwin_pipelines.quality.catalogue_series import LARGE_DISTRIBUTION
from alphatwin_pipelines.schema import canonical_to_arrow, to_canonical
from alphatwin_pipelines.stages.quality import residual_errors, validate_sessions
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import RAW
from test_quality_rules import AS_OF, OHLC, bars


def _row(raw: pd.DataFrame, symbol: str, nth: int) -> int:
    return int(np.flatnonzero(raw["symbol"].to_numpy() == symbol)[nth])


def _spin_off(raw: pd.DataFrame, symbol="XOM", nth=70, share=0.6) -> tuple[pd.DataFrame, int, float]:
    """From row ``nth`` on, ``symbol`` trades ``share`` lower: the parent without its spun-off unit,
    which is paid on the ex-date as a distribution of ``share`` x the previous close."""
    row = _row(raw, symbol, nth)
    prev_close = float(raw.loc[row - 1, "close"])
    later = ((raw["symbol"] == symbol) & (raw.index >= row)).to_numpy()
    raw.loc[later, OHLC] = np.round(raw.loc[later, OHLC].to_numpy(dtype=float) * (1 - share), 2)
    raw.loc[row, "dividend"] = round(prev_close * share, 2)
    return raw, row, prev_close


def _failures(result, row) -> dict[str, str]:
    found = result.failures[result.failures["raw_row"] == row]
    return dict(zip(found["rule_id"], found["action"]))


def test_spin_off_larger_than_the_ex_date_close_is_kept_and_named():
    raw, row, prev_close = _spin_off(bars())
    assert raw.loc[row, "dividend"] > raw.loc[row, "close"]  # what the old rule rejected
    result = validate(raw, as_of=AS_OF)
    assert result.pass_rate == 1.0 and result.quarantined.empty
    assert _failures(result, row) == {"dividend.large": "flagged"}
    kept = result.validated.set_index("raw_row").loc[row]
    assert kept["dividend"] == raw.loc[row, "dividend"] and kept["flags"] == "dividend.large"
    text = result.failures.loc[result.failures["raw_row"] == row, "offending_value"].iloc[0]
    assert f"previous close={prev_close:.10g}" in text and "(60%)" in text


def test_regular_dividend_is_not_named_a_spin_off():
    raw, row, _ = _spin_off(bars(), share=LARGE_DISTRIBUTION / 2)
    assert _failures(validate(raw, as_of=AS_OF), row) == {}


def test_distribution_at_or_above_the_previous_close_quarantines_only_the_event():
    raw = bars()
    row = _row(raw, "MSFT", 70)
    raw.loc[row, "dividend"] = float(raw.loc[row - 1, "close"])  # factor 1 - D/close[t-1] = 0
    result = validate(raw, as_of=AS_OF)
    assert result.pass_rate == 1.0 and result.accounted_rows == len(raw)
    assert _failures(result, row) == {"dividend.not_below_prev_close": "event_quarantined"}
    event = result.quarantined.set_index("raw_row").loc[row]
    assert event["action"] == "event_quarantined" and event["rule_id"] == "dividend.not_below_prev_close"
    assert float(event["dividend"]) == raw.loc[row, "dividend"] and event["rule_description"]
    kept = result.validated.set_index("raw_row").loc[row]
    assert kept["flags"] == "dividend.not_below_prev_close" and kept["close"] == raw.loc[row, "close"]


def _split(raw: pd.DataFrame, ratio: float, prices_follow: bool, symbol="AAPL", nth=60) -> tuple[pd.DataFrame, int]:
    """A split of ``ratio`` recorded on row ``nth``; the prices from then on divided by it, or not."""
    row = _row(raw, symbol, nth)
    raw.loc[row, "split_ratio"] = ratio
    if prices_follow:
        later = ((raw["symbol"] == symbol) & (raw.index >= row)).to_numpy()
        raw.loc[later, OHLC] = np.round(raw.loc[later, OHLC].to_numpy(dtype=float) / ratio, 2)
    return raw, row


@pytest.mark.parametrize("ratio", [2.0, 3.0, 0.1])
def test_a_split_the_prices_show_is_not_an_event_outside_the_prices(ratio):
    raw, row = _split(bars(), ratio, prices_follow=True)
    assert _failures(validate(raw, as_of=AS_OF), row) == {}


@pytest.mark.parametrize("ratio", [2.0, 0.5])
def test_a_split_the_prices_do_not_show_is_flagged_with_the_move_it_implies(ratio):
    raw, row = _split(bars(), ratio, prices_follow=False)
    result = validate(raw, as_of=AS_OF)
    assert _failures(result, row) == {"event.not_in_prices": "flagged"}
    kept = result.validated.set_index("raw_row").loc[row]  # a WARNING: bar and event stay
    assert kept["split_ratio"] == ratio and kept["flags"] == "event.not_in_prices" and result.quarantined.empty
    prev, close = raw.loc[row - 1, "close"], raw.loc[row, "close"]
    text = result.failures.loc[result.failures["raw_row"] == row, "offending_value"].iloc[0]
    assert f"adjusted move of {close * ratio / prev - 1:+.0%}" in text and f"close moved {close / prev - 1:+.0%}" in text


def test_a_distribution_the_prices_do_not_show_is_flagged_and_a_spin_off_they_show_is_not():
    raw, spun, _ = _spin_off(bars(), symbol="XOM", share=0.5)
    row = _row(raw, "MSFT", 70)
    raw.loc[row, "dividend"] = round(float(raw.loc[row - 1, "close"]) * 0.5, 2)  # prices continue as before
    result = validate(raw, as_of=AS_OF)
    assert _failures(result, row) == {"event.not_in_prices": "flagged", "dividend.large": "flagged"}
    assert _failures(result, spun) == {"dividend.large": "flagged"}
    assert residual_errors(result.validated, raw.iloc[:0], as_of=AS_OF).empty


@pytest.mark.parametrize("value, rule_id, kept", [
    (np.nan, "split.missing", 1.0), (0.0, "split.non_positive", 1.0), (-2.0, "split.non_positive", 1.0),
    (np.inf, "split.out_of_bounds", 1.0), (1000.0, "split.out_of_bounds", 1.0), (1.0689, "split.non_standard", 1.0689),
])
def test_bad_split_ratio_costs_the_event_not_the_bar(value, rule_id, kept):
    raw = bars()
    row = _row(raw, "AAPL", 40)
    raw.loc[row, "split_ratio"] = value
    result = validate(raw, as_of=AS_OF)
    assert result.pass_rate == 1.0
    if rule_id == "split.non_standard":  # unusual but usable: flagged, adjusts history
        assert _failures(result, row) == {rule_id: "flagged"} and result.quarantined.empty
    else:
        assert _failures(result, row).get(rule_id) == "event_quarantined"
        assert result.quarantined.set_index("raw_row").loc[row, "action"] == "event_quarantined"
        assert result.quarantined.set_index("raw_row").loc[row, "offending_value"] == f"split_ratio={value:.10g}"
    # A ratio that cannot adjust history is removed from the validated row (it stays in quarantine).
    assert result.validated.set_index("raw_row").loc[row, "split_ratio"] == kept


def test_bad_prices_and_bad_event_quarantine_the_bar_once_with_both_reasons():
    raw = bars()
    row = _row(raw, "AAPL", 40)
    raw.loc[row, ["close", "split_ratio"]] = [-1.0, 0.0]
    result = validate(raw, as_of=AS_OF)
    record = result.quarantined.set_index("raw_row").loc[row]
    assert record["action"] == "rejected"
    assert {"price.non_positive", "split.non_positive"} <= set(record["rule_id"].split(","))
    assert row not in set(result.validated["raw_row"])


def _store_with(tmp_path, raw: pd.DataFrame) -> tuple[TableStore, pd.DatetimeIndex]:
    store = TableStore(tmp_path / "data")
    frame = to_canonical(raw)
    sessions = pd.DatetimeIndex(sorted(frame["date"].unique()))
    store.write_sessions(RAW, frame, sessions, to_arrow=canonical_to_arrow)
    return store, sessions


def test_recheck_judges_the_bar_after_a_rejected_one_against_the_same_bar(tmp_path):
    """An unrecorded 1-for-10 reverse split: its first bar is rejected as a 10x print, the next
    ones are judged against it (ordinary moves). The re-check must not judge them against the
    close before the split instead, which is what failed on KSU 2000-07-17."""
    raw = bars()
    row = _row(raw, "MSFT", 75)
    later = ((raw["symbol"] == "MSFT") & (raw.index >= row)).to_numpy()
    raw.loc[later, OHLC] = raw.loc[later, OHLC].to_numpy(dtype=float) * 10
    store, sessions = _store_with(tmp_path, raw)
    report = validate_sessions(store, sessions[30:], as_of=AS_OF)  # 30 sessions of raw history before
    quarantined = pd.concat([store.read_partitions("quarantined_ohlcv")], ignore_index=True)
    assert quarantined[["symbol", "rule_id"]].values.tolist() == [["MSFT", "return.extreme_outlier"]]
    assert residual_errors(report.validated, report.recheck_context, as_of=AS_OF).empty
    # Judged against the validated rows alone, the day after would now look like a 10x print.
    alone = residual_errors(report.validated, report.history, as_of=AS_OF)
    assert alone[["symbol", "rule_id"]].values.tolist() == [["MSFT", "return.extreme_outlier"]]

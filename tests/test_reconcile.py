"""Cross-source reconciliation lists exactly the planted disagreements."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from alphatwin_pipelines.reconcile import reconcile
from alphatwin_pipelines.schema import empty_bars

PRIMARY_CSV = """symbol,date,open,high,low,close,volume,dividend,split_ratio,source
AAPL,2020-08-27,508.57,509.94,495.33,500.04,38888100,0.0,1.0,a
AAPL,2020-08-28,504.05,505.77,498.31,499.23,46907479,0.0,1.0,a
AAPL,2020-08-31,127.58,131.00,126.00,129.04,223505733,0.0,4.0,a
AAPL,2020-11-06,118.32,119.20,116.13,118.69,114457922,0.205,1.0,a
MSFT,2020-11-17,216.10,217.18,214.08,214.46,24953300,0.0,1.0,a
MSFT,2020-11-18,213.65,215.17,210.93,211.08,28372789,0.56,1.0,a
MSFT,2020-11-19,211.38,213.03,209.93,212.42,24792700,0.0,1.0,a
TSLA,2020-08-31,444.61,500.14,440.11,498.32,118374400,0.0,5.0,a
XOM,2020-08-12,44.00,44.50,43.50,44.20,20000000,0.87,1.0,a
"""

# The same rows from a second source: rounding noise within tolerance everywhere, plus
# planted disagreements on four rows; it also has a row the primary lacks (ignored).
SECONDARY_CSV = """symbol,date,open,high,low,close,volume,dividend,split_ratio,source
AAPL,2020-08-27,508.57,509.94,495.33,500.0401,38888000,0.0,1.0,b
AAPL,2020-08-28,504.05,505.77,498.31,509.2146,46907479,0.0,1.0,b
AAPL,2020-08-31,127.58,131.00,126.00,129.04,223505733,0.0,4.000001,b
AAPL,2020-11-06,118.32,119.20,116.13,118.69,114457922,0.205,1.0,b
MSFT,2020-11-17,216.10,217.18,214.08,214.46,37429950,0.0,1.0,b
MSFT,2020-11-18,213.65,215.17,210.93,211.08,28372789,0.0,1.0,b
MSFT,2020-11-19,211.38,213.03,209.93,212.42,24792700,0.0,1.0,b
TSLA,2020-08-31,444.61,500.14,440.11,498.32,118374400,0.0,4.0,b
XOM,2020-08-12,44.00,44.50,43.50,44.20,20100000,0.87,1.0,b
ZZZ,2020-08-12,1.00,1.00,1.00,1.00,1,0.0,1.0,b
"""


def read(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), parse_dates=["date"])


def test_exactly_the_planted_rows_are_listed():
    primary, secondary = read(PRIMARY_CSV), read(SECONDARY_CSV)
    snapshot = (primary.copy(deep=True), secondary.copy(deep=True))
    out = reconcile(primary, secondary)
    pd.testing.assert_frame_equal(primary, snapshot[0])
    pd.testing.assert_frame_equal(secondary, snapshot[1])
    assert list(out.columns) == ["symbol", "date", "field", "primary", "secondary", "rel_diff", "reason"]
    got = [(r.symbol, f"{r.date:%Y-%m-%d}", r.field, r.reason) for r in out.itertuples()]
    assert got == [
        ("AAPL", "2020-08-28", "close", "close differs"),  # off by 2%
        ("MSFT", "2020-11-17", "volume", "volume differs"),  # off by 50%
        ("MSFT", "2020-11-18", "dividend", "dividend only in primary"),  # missing dividend
        ("TSLA", "2020-08-31", "split_ratio", "split differs"),  # 5:1 vs 4:1
    ]
    close = out.iloc[0]
    assert (close.primary, close.secondary) == (499.23, 509.2146)
    assert close.rel_diff == pytest.approx(abs(499.23 - 509.2146) / 509.2146)
    volume = out.iloc[1]
    assert volume.rel_diff == pytest.approx(0.5 * 24953300 / 37429950)
    assert out.iloc[2][["primary", "secondary", "rel_diff"]].tolist() == [0.56, 0.0, 1.0]
    assert out.iloc[3][["primary", "secondary"]].tolist() == [5.0, 4.0]


def test_swapping_sources_swaps_columns_and_reasons():
    a = reconcile(read(PRIMARY_CSV), read(SECONDARY_CSV))
    b = reconcile(read(SECONDARY_CSV), read(PRIMARY_CSV))
    assert b["primary"].tolist() == a["secondary"].tolist()
    assert b["rel_diff"].tolist() == pytest.approx(a["rel_diff"].tolist())
    assert b.loc[2, "reason"] == "dividend only in secondary"


def test_tolerances_are_respected_and_agreeing_frames_are_clean():
    primary = read(PRIMARY_CSV)
    assert reconcile(primary, primary.copy()).empty
    loose = reconcile(primary, read(SECONDARY_CSV), close_tol=0.05, volume_tol=0.6)
    assert set(loose["field"]) == {"dividend", "split_ratio"}


def test_a_split_or_missing_value_on_one_side_only():
    primary = read(PRIMARY_CSV)
    secondary = primary.copy()
    secondary.loc[2, "split_ratio"] = 1.0  # AAPL 2020-08-31 split missing in secondary
    secondary.loc[6, "close"] = float("nan")  # MSFT 2020-11-19 close missing
    out = reconcile(primary, secondary)
    assert [(r.symbol, r.field, r.reason) for r in out.itertuples()] == [
        ("AAPL", "split_ratio", "split only in primary"),
        ("MSFT", "close", "close missing in secondary"),
    ]


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="split_ratio"):
        reconcile(read(PRIMARY_CSV).drop(columns="split_ratio"), read(SECONDARY_CSV))


def test_empty_and_non_overlapping_inputs():
    assert reconcile(empty_bars(), empty_bars()).empty
    primary = read(PRIMARY_CSV)
    assert reconcile(primary[primary["symbol"] == "AAPL"], primary[primary["symbol"] == "MSFT"]).empty

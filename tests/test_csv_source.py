"""CsvFolderSource: every accepted format, and every bad input rejected precisely without losing good data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from alphatwin_pipelines.schema import BAR_COLUMNS, bars_to_arrow, to_canonical
from alphatwin_pipelines.sources import make_source
from alphatwin_pipelines.sources.base import (
    RULE_DUPLICATE_DATE, RULE_EMPTY_FILE, RULE_MISSING_COLUMNS, RULE_NO_DATA, RULE_PROVIDER_ERROR,
    RULE_UNKNOWN_FORMAT, RULE_UNPARSABLE_DATE, RULE_UNPARSABLE_NUMBER, SourceConfigError,
)
from alphatwin_pipelines.sources.base import RULE_MALFORMED_ROW, RULE_UNREADABLE_FILE
from alphatwin_pipelines.sources.csv_source import CsvFolderSource

SESSIONS = pd.DatetimeIndex(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"])
YAHOO = "Date,Open,High,Low,Close,Adj Close,Volume\n"
AV = "timestamp,open,high,low,close,adjusted_close,volume,dividend_amount,split_coefficient\n"


def yahoo_rows(dates=("2024-01-02", "2024-01-03", "2024-01-04"), base=10.0):
    return "".join(f"{d},{base + i},{base + i + 1},{base + i - 1},{base + i + 0.5},1.0,{1000 + i}\n"
                   for i, d in enumerate(dates))


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "bars"
    path.mkdir()
    return path


def write(folder, name, text):
    path = folder / name
    path.write_text(text)
    return path


def fetch(folder, symbols, sessions=SESSIONS):
    """Fetch, and prove the inputs (files and arguments) are left exactly as they were."""
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    symbols_before, sessions_before = list(symbols), sessions.copy()
    result = CsvFolderSource(folder).fetch(symbols, sessions)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert list(symbols) == symbols_before and sessions.equals(sessions_before)
    assert list(result.bars.columns) == list(BAR_COLUMNS)
    assert result.bars["date"].dtype == "datetime64[ns]" and result.bars["volume"].dtype == "int64"
    assert (result.bars["source"] == "csv").all()
    return result


def rules(result, rule):
    return [r for r in result.rejections if r.rule == rule]


def rows(result, symbol):
    return result.bars[result.bars["symbol"] == symbol].reset_index(drop=True)


# --- formats -------------------------------------------------------------------------------------


def test_yahoo_file_per_symbol(folder):
    write(folder, "aapl.csv", YAHOO + yahoo_rows())
    result = fetch(folder, ["AAPL"])
    assert result.rejections == []
    bars = rows(result, "AAPL")
    assert bars["date"].tolist() == list(pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"]))
    assert bars["open"].tolist() == [10.0, 11.0, 12.0]
    assert bars["close"].tolist() == [10.5, 11.5, 12.5]  # not Adj Close
    assert bars["volume"].tolist() == [1000, 1001, 1002]
    assert (bars["dividend"] == 0).all() and (bars["split_ratio"] == 1).all()


def test_alphavantage_newest_first_carries_corporate_actions(folder):
    write(folder, "IBM.csv", AV + "2024-01-04,30,31,29,30.5,30.5,300,0.0,2.0\n"
          "2024-01-03,20,21,19,20.5,20.5,200,1.25,1.0\n2024-01-02,10,11,9,10.5,10.5,100,0.0,1.0\n")
    bars = rows(fetch(folder, ["IBM"]), "IBM")
    assert bars["date"].is_monotonic_increasing
    assert bars["open"].tolist() == [10.0, 20.0, 30.0]
    assert bars["dividend"].tolist() == [0.0, 1.25, 0.0]
    assert bars["split_ratio"].tolist() == [1.0, 1.0, 2.0]


def test_many_symbols_in_one_file_and_unrequested_ignored(folder):
    write(folder, "universe.csv", "symbol," + YAHOO + "".join(
        f"{s},{line}" for s in ("aapl", "MSFT", "XOM") for line in yahoo_rows().splitlines(keepends=True)))
    result = fetch(folder, ["AAPL", "MSFT"])
    assert result.rejections == [] and result.warnings == []
    assert sorted(result.bars["symbol"].unique()) == ["AAPL", "MSFT"]
    assert len(result.bars) == 6


def test_canonical_parquet_round_trips(folder):
    frame = to_canonical(pd.DataFrame({
        "symbol": ["AAPL", "AAPL", "MSFT"], "date": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-02"]),
        "open": [1.1, 2.2, 3.3], "high": [1.5, 2.5, 3.5], "low": [1.0, 2.0, 3.0], "close": [1.2, 2.3, 3.4],
        "volume": [10, 20, 30], "dividend": [0.0, 0.24, 0.0], "split_ratio": [1.0, 1.0, 4.0],
        "source": ["x", "x", "x"]}))
    pq.write_table(bars_to_arrow(frame), folder / "bars.parquet")
    result = fetch(folder, ["AAPL", "MSFT"])
    assert result.rejections == []
    pd.testing.assert_frame_equal(result.bars.drop(columns="source"), frame.drop(columns="source"))


def test_canonical_parquet_one_symbol_named_by_file(folder):
    frame = pd.DataFrame({"date": pd.to_datetime(["2024-01-03"]), "open": [1.0], "high": [2.0], "low": [0.5],
                          "close": [1.5], "volume": [7], "dividend": [0.1], "split_ratio": [1.0]})
    frame.to_parquet(folder / "jnj.parquet")
    bars = rows(fetch(folder, ["JNJ"]), "JNJ")
    assert bars["close"].tolist() == [1.5] and bars["dividend"].tolist() == [0.1]


def test_canonical_csv_without_source_and_with_timestamps(folder):
    write(folder, "all.csv", "symbol,date,open,high,low,close,volume,dividend,split_ratio\n"
          "XOM,2024-01-02 00:00:00,1,2,0.5,1.5,100,0.0,1.0\nXOM,2024-01-03T00:00:00Z,1,2,0.5,1.5,100,0.9,1.0\n")
    result = fetch(folder, ["XOM"])
    assert result.rejections == []
    assert rows(result, "XOM")["dividend"].tolist() == [0.0, 0.9]


def test_symbol_from_file_name(folder):
    write(folder, "BRK.B.csv", YAHOO + yahoo_rows())
    write(folder, "msft.CSV", YAHOO + yahoo_rows())
    write(folder, "notes.txt", "not bars")
    result = fetch(folder, ["brk.b", "MSFT"])
    assert result.rejections == []
    assert sorted(result.bars["symbol"].unique()) == ["BRK.B", "MSFT"]


def test_header_case_and_whitespace_tolerated(folder):
    write(folder, "aapl.csv", " DATE , open ,HIGH, Low,Close ,Adj  Close, VOLUME\n2024-01-02, 1.5 ,2,1,1.5,1,10\n")
    result = fetch(folder, ["AAPL"])
    assert result.rejections == []
    assert rows(result, "AAPL")["open"].tolist() == [1.5]


def test_only_requested_sessions_returned(folder):
    dates = ("2023-12-29", "2024-01-02", "2024-01-06", "2024-01-08", "2024-02-01")
    write(folder, "aapl.csv", YAHOO + yahoo_rows(dates))
    sessions = pd.DatetimeIndex(["2024-01-02 09:30", "2024-01-08 16:00"]).tz_localize("America/New_York")
    result = CsvFolderSource(folder).fetch(["AAPL"], sessions)
    assert result.rejections == []
    assert result.bars["date"].tolist() == list(pd.to_datetime(["2024-01-02", "2024-01-08"]))


def test_make_source_builds_csv_source(folder):
    write(folder, "aapl.csv", YAHOO + yahoo_rows())
    source = make_source("csv", path=folder)
    assert source.name == "csv" and len(source.fetch(["AAPL"], SESSIONS).bars) == 3


def test_nothing_cached_between_calls(folder):
    write(folder, "aapl.csv", YAHOO + yahoo_rows())
    source = CsvFolderSource(folder)
    assert len(source.fetch(["AAPL"], SESSIONS).bars) == 3
    write(folder, "aapl.csv", YAHOO + yahoo_rows(("2024-01-02",)))
    assert len(source.fetch(["AAPL"], SESSIONS).bars) == 1


# --- configuration -------------------------------------------------------------------------------


def test_missing_folder_is_a_config_error(tmp_path):
    with pytest.raises(SourceConfigError, match="ALPHATWIN_SOURCE_PATH") as err:
        CsvFolderSource(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)
    (tmp_path / "file.csv").write_text(YAHOO)
    with pytest.raises(SourceConfigError, match="not a folder"):
        CsvFolderSource(tmp_path / "file.csv")
    for unset in ("", None):  # what the resource passes when ALPHATWIN_SOURCE_PATH is unset
        with pytest.raises(SourceConfigError, match="ALPHATWIN_SOURCE_PATH"):
            make_source("csv", path=unset)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body, quoted", [
    ('{\n  "Error Message": "Invalid API call. Please retry or visit the documentation"\n}\n', "Invalid API call"),
    ('{"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute"}',
     "call frequency"),
    ('{"Information": "The **demo** API key is for demo purposes only."}', "demo purposes"),
])
def test_provider_error_body_rejects_whole_file(folder, body, quoted):
    path = write(folder, "AAPL.csv", body)
    write(folder, "msft.csv", YAHOO + yahoo_rows())
    result = fetch(folder, ["AAPL", "MSFT"])
    [rejection] = result.rejections
    assert (rejection.rule, rejection.symbol, rejection.file) == (RULE_PROVIDER_ERROR, "AAPL", str(path))
    assert quoted in rejection.reason and "AAPL.csv" in rejection.reason
    assert len(rows(result, "MSFT")) == 3 and len(rows(result, "AAPL")) == 0


def test_html_page_and_corrupt_parquet(folder):
    write(folder, "aapl.csv", "<html><head><title>429 Too Many Requests</title></head></html>")
    (folder / "msft.parquet").write_bytes(b"PAR1 not really parquet")
    by_symbol = {r.symbol: r for r in fetch(folder, ["AAPL", "MSFT"]).rejections}
    assert by_symbol["AAPL"].rule == RULE_PROVIDER_ERROR and "429 Too Many Requests" in by_symbol["AAPL"].reason
    assert by_symbol["MSFT"].rule == RULE_UNREADABLE_FILE and by_symbol["MSFT"].file == str(folder / "msft.parquet")


def test_missing_columns_named_with_accepted_formats(folder):
    path = write(folder, "aapl.csv", "Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n")
    write(folder, "ibm.csv", "timestamp,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,10\n")
    result = fetch(folder, ["AAPL", "IBM"])
    by_symbol = {r.symbol: r for r in rules(result, RULE_MISSING_COLUMNS)}
    assert by_symbol["AAPL"].file == str(path) and by_symbol["AAPL"].column == "volume"
    assert "['volume']" in by_symbol["AAPL"].reason and "Adj Close" in by_symbol["AAPL"].reason
    assert "TIME_SERIES_DAILY_ADJUSTED" in by_symbol["IBM"].reason
    assert "split_coefficient" in by_symbol["IBM"].reason
    assert len(result.rejections) == 2  # no extra no_data noise for symbols already rejected


def test_unknown_header(folder):
    write(folder, "aapl.csv", "foo,bar\n1,2\n")
    [rejection] = fetch(folder, ["AAPL"]).rejections
    assert rejection.rule == RULE_UNKNOWN_FORMAT and "foo,bar" in rejection.reason
    assert "timestamp,open" in rejection.reason


def test_unparsable_numbers_reject_only_their_rows(folder):
    path = write(folder, "aapl.csv", YAHOO + "2024-01-02,1,2,0.5,1.5,1,10\n2024-01-03,1,2,0.5,abc,1,10\n"
                 "2024-01-04,null,null,null,null,null,null\n2024-01-05,1,2,0.5,1.5,1,10\n")
    result = fetch(folder, ["AAPL"])
    bad = rules(result, RULE_UNPARSABLE_NUMBER)
    assert [(r.line, r.column, r.value, r.symbol, r.file) for r in bad] == [
        (3, "Close", "abc", "AAPL", str(path)), (4, "Open", "null", "AAPL", str(path))]
    assert "'abc' is not a number" in bad[0].reason
    assert rows(result, "AAPL")["date"].dt.day.tolist() == [2, 5]
    assert len(result.rejections) == 2


def test_unparsable_dates_reject_only_their_rows(folder):
    path = write(folder, "aapl.csv", AV + "2024-01-03,1,2,0.5,1.5,1.5,10,0,1\n2024-13-01,1,2,0.5,1.5,1.5,10,0,1\n"
                 "01/04/2024,1,2,0.5,1.5,1.5,10,0,1\n,1,2,0.5,1.5,1.5,10,0,1\n2024-01-02,1,2,0.5,1.5,1.5,10,0,1\n")
    result = fetch(folder, ["AAPL"])
    bad = rules(result, RULE_UNPARSABLE_DATE)
    assert [(r.line, r.column, r.value, r.file) for r in bad] == [
        (3, "timestamp", "2024-13-01", str(path)), (4, "timestamp", "01/04/2024", str(path)),
        (5, "timestamp", "", str(path))]
    assert len(rows(result, "AAPL")) == 2 and len(result.rejections) == 3


def test_volume_must_be_whole_but_value_rules_wait_for_validation(folder):
    write(folder, "aapl.csv", YAHOO + "2024-01-02,-1,2,0.5,1.5,1,1000.0\n2024-01-03,1,2,0.5,1.5,1,100.5\n"
          "2024-01-04,1,2,0.5,1.5,1,\n2024-01-05,,2,0.5,1.5,1,-5\n2024-01-08,1,2,0.5,1.5,1,NaN\n")
    result = fetch(folder, ["AAPL"])
    bad = rules(result, RULE_UNPARSABLE_NUMBER)
    assert [(r.line, r.column, r.value) for r in bad] == [
        (3, "Volume", "100.5"), (4, "Volume", ""), (6, "Volume", "NaN")]
    assert "whole number" in bad[0].reason and "is empty" in bad[1].reason
    bars = rows(result, "AAPL")
    assert bars["volume"].tolist() == [1000, -5]
    assert bars["open"].iloc[0] == -1 and np.isnan(bars["open"].iloc[1])  # negative/missing price: later stage


@pytest.mark.parametrize("text", ["", YAHOO, "\n\n"])
def test_empty_file(folder, text):
    path = write(folder, "aapl.csv", text)
    [rejection] = fetch(folder, ["AAPL"]).rejections
    assert (rejection.rule, rejection.symbol, rejection.file) == (RULE_EMPTY_FILE, "AAPL", str(path))


def test_duplicate_dates_reject_every_copy(folder):
    path = write(folder, "aapl.csv", YAHOO + "2024-01-02,1,2,0.5,1.5,1,10\n2024-01-03,1,2,0.5,1.5,1,10\n"
                 "2024-01-03,1,2,0.5,1.6,1,10\n2024-01-04,1,2,0.5,1.5,1,10\n2024-01-03,x,2,0.5,1.6,1,10\n")
    result = fetch(folder, ["AAPL"])
    dup = rules(result, RULE_DUPLICATE_DATE)
    assert [(r.line, r.symbol, r.file, r.value) for r in dup] == [
        (n, "AAPL", str(path), "2024-01-03") for n in (3, 4, 6)]
    assert "lines" not in dup[0].reason and "aapl.csv line 3, aapl.csv line 4, aapl.csv line 6" in dup[0].reason
    assert rows(result, "AAPL")["date"].dt.day.tolist() == [2, 4]
    assert len(result.rejections) == 3  # the unparsable copy is reported once, as a duplicate


def test_duplicate_dates_across_files(folder):
    one = write(folder, "aapl.csv", YAHOO + yahoo_rows(("2024-01-02", "2024-01-03")))
    many = write(folder, "more.csv", "symbol," + YAHOO + "AAPL,2024-01-03,1,2,0.5,1.5,1,10\n")
    result = fetch(folder, ["AAPL"])
    assert {(r.file, r.line) for r in rules(result, RULE_DUPLICATE_DATE)} == {(str(one), 3), (str(many), 2)}
    assert rows(result, "AAPL")["date"].dt.day.tolist() == [2]


def test_no_data_names_folder_and_files_looked_for(folder):
    write(folder, "aapl.csv", YAHOO + yahoo_rows(("2023-06-01",)))
    write(folder, "universe.csv", "symbol," + YAHOO + "IBM,2024-01-02,1,2,0.5,1.5,1,10\n")
    write(folder, "broken.csv", "")
    result = fetch(folder, ["AAPL", "XOM"])
    by_symbol = {r.symbol: r for r in rules(result, RULE_NO_DATA)}
    assert set(by_symbol) == {"AAPL", "XOM"} and len(result.rejections) == 2
    assert str(folder) in by_symbol["XOM"].reason and "XOM.csv" in by_symbol["XOM"].reason
    assert "universe.csv" in by_symbol["XOM"].reason and "broken.csv" in by_symbol["XOM"].reason
    assert "aapl.csv" in by_symbol["AAPL"].reason and "none of the 5 requested sessions" in by_symbol["AAPL"].reason


def test_broken_files_of_unrequested_symbols_are_ignored(folder):
    write(folder, "msft.csv", '{"Note": "call frequency"}')
    write(folder, "ibm.csv", "foo\n1\n")
    write(folder, "aapl.csv", YAHOO + yahoo_rows())
    write(folder, "multi.csv", "symbol," + YAHOO + "IBM,bad,1,2,0.5,1.5,1,10\nXOM,2024-01-02,,,,,,x\n")
    result = fetch(folder, ["AAPL"])
    assert result.rejections == [] and len(result.bars) == 3


def test_blank_lines_keep_line_numbers(folder):
    write(folder, "aapl.csv", YAHOO + "2024-01-02,1,2,0.5,1.5,1,10\n\n\n2024-01-03,1,2,0.5,oops,1,10\n\n")
    result = fetch(folder, ["AAPL"])
    assert [(r.rule, r.line) for r in result.rejections] == [(RULE_UNPARSABLE_NUMBER, 5)]
    assert len(result.bars) == 1


def test_row_with_too_many_fields(folder):
    write(folder, "aapl.csv", YAHOO + "2024-01-02,1,2,0.5,1.5,1,10\n2024-01-03,1,234.5,2,0.5,1.5,1,10\n"
          "2024-01-04,1,2,0.5,1.5,1,10\n")
    result = fetch(folder, ["AAPL"])
    [rejection] = result.rejections
    assert (rejection.rule, rejection.line, rejection.symbol) == (RULE_MALFORMED_ROW, 3, "AAPL")
    assert rows(result, "AAPL")["date"].dt.day.tolist() == [2, 4]


def test_empty_symbol_cells_are_reported_as_warnings(folder):
    write(folder, "multi.csv", "symbol," + YAHOO + "AAPL,2024-01-02,1,2,0.5,1.5,1,10\n,2024-01-03,1,2,0.5,1.5,1,10\n")
    result = fetch(folder, ["AAPL"])
    assert len(result.bars) == 1 and result.rejections == []
    assert len(result.warnings) == 1 and "multi.csv" in result.warnings[0] and "[3]" in result.warnings[0]

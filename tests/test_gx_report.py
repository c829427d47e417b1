"""Great Expectations report: verdicts, Data Docs location, offline behaviour, lazy import.

Importing GX costs seconds, so each distinct frame is validated once per module and the
tests below only read the shared outcomes.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.quality.gx_report import VALIDATED_COLUMNS, GxOutcome, run_gx_suite
from alphatwin_pipelines.schema import empty_bars, to_canonical

PAIR = "expect_column_pair_values_a_to_be_greater_than_b"
BETWEEN = "expect_column_values_to_be_between"


def _validated(frame: pd.DataFrame) -> pd.DataFrame:
    frame = to_canonical(frame)
    return frame.assign(
        flags=pd.array([""] * len(frame), dtype="string"), raw_row=np.arange(len(frame), dtype=np.int64)
    )


def _clean_frame() -> pd.DataFrame:
    dates = pd.bdate_range("2021-03-01", periods=30)
    keys = pd.MultiIndex.from_product([["AAPL", "BRK.B", "MSFT"], dates]).to_frame(index=False)
    close = 100 + np.sin(np.arange(len(keys)))
    return _validated(pd.DataFrame({
        "symbol": keys[0], "date": keys[1], "open": close - 0.5, "high": close + 1,
        "low": close - 1, "close": close, "volume": np.arange(len(keys)) * 100,
        "dividend": 0.0, "split_ratio": 1.0, "source": "test",
    }))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every GX run of the module, with any socket connect attempted during them recorded."""
    root = tmp_path_factory.mktemp("gx")
    docs = root / "docs"
    clean = _clean_frame()
    dirty = clean.copy()
    dirty.loc[3, "high"] = dirty.loc[3, "low"] - 1.0
    dirty.loc[7, "volume"] = -5
    empty = _validated(empty_bars())
    inputs = {"clean": clean, "dirty": dirty, "empty": empty, "no_raw_row": clean.drop(columns="raw_row")}
    copies = {name: frame.copy(deep=True) for name, frame in inputs.items()}

    attempts: list[object] = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"test forbids network access to {address!r}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        outcomes = {
            name: run_gx_suite(frame, docs if name in ("clean", "dirty") else root / name, run_name=name)
            for name, frame in inputs.items()
        }
    return {"root": root, "docs": docs, "inputs": inputs, "copies": copies,
            "outcomes": outcomes, "attempts": attempts}


def _failed(outcome: GxOutcome, expectation: str, columns: list[str]) -> dict:
    matches = [f for f in outcome.failed if f["expectation"] == expectation and f["columns"] == columns]
    assert len(matches) == 1, outcome.failed
    return matches[0]


def test_clean_frame_passes_and_publishes_data_docs(runs):
    outcome = runs["outcomes"]["clean"]
    assert outcome.success, outcome.failed
    assert outcome.failed == []
    assert outcome.evaluated == outcome.successful >= 20
    assert outcome.docs_index.is_file()
    assert outcome.docs_index.is_relative_to(runs["docs"])
    assert "validated_ohlcv" in outcome.docs_index.read_text(encoding="utf-8")
    assert outcome.docs_page is not None and outcome.docs_page.is_file()
    assert outcome.docs_page.is_relative_to(runs["docs"])
    assert outcome.duration_s > 0


def test_planted_errors_fail_with_counts_and_values(runs):
    outcome = runs["outcomes"]["dirty"]
    assert not outcome.success
    assert outcome.successful < outcome.evaluated
    high_low = _failed(outcome, PAIR, ["high", "low"])
    assert high_low["unexpected_count"] == 1
    assert high_low["unexpected_index"] == [3]
    volume = _failed(outcome, BETWEEN, ["volume"])
    assert volume["unexpected_count"] == 1
    assert volume["unexpected_values"] == [-5]
    # The bad high also sits below open and close; nothing else should fail.
    assert {(f["expectation"], tuple(f["columns"])) for f in outcome.failed} == {
        (PAIR, ("high", "low")), (PAIR, ("high", "open")), (PAIR, ("high", "close")),
        (BETWEEN, ("volume",)),
    }


def test_second_run_in_same_docs_dir_keeps_both_runs_listed(runs):
    index = runs["outcomes"]["dirty"].docs_index
    assert index == runs["outcomes"]["clean"].docs_index
    html = index.read_text(encoding="utf-8")
    assert "clean" in html and "dirty" in html
    assert runs["outcomes"]["dirty"].docs_page != runs["outcomes"]["clean"].docs_page


def test_empty_frame_fails_clearly_without_crashing(runs):
    outcome = runs["outcomes"]["empty"]
    assert not outcome.success
    assert [f["expectation"] for f in outcome.failed] == ["expect_table_row_count_to_be_between"]
    assert outcome.failed[0]["observed_value"] == 0
    assert outcome.docs_index.is_file()


def test_missing_column_is_reported_not_raised(runs):
    outcome = runs["outcomes"]["no_raw_row"]
    assert not outcome.success
    columns = _failed(outcome, "expect_table_columns_to_match_set", [])
    assert columns["mismatched"] == {"missing": ["raw_row"]}
    not_null = _failed(outcome, "expect_column_values_to_not_be_null", ["raw_row"])
    assert "raw_row" in not_null["exception"]


def test_inputs_not_mutated(runs):
    for name, frame in runs["inputs"].items():
        pd.testing.assert_frame_equal(frame, runs["copies"][name], check_exact=True)
    assert list(runs["inputs"]["clean"].columns) == list(VALIDATED_COLUMNS)


def test_nothing_written_outside_docs_dirs_and_no_network(runs):
    assert sorted(p.name for p in runs["root"].iterdir()) == ["docs", "empty", "no_raw_row"]
    assert runs["attempts"] == []


def test_module_imports_without_great_expectations():
    code = (
        "import sys\n"
        "import alphatwin_pipelines.quality.gx_report\n"
        "assert 'great_expectations' not in sys.modules, 'gx imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

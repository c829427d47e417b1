"""The corporate-action corrections file: parsing with clear errors, versions, and application."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.adjustment import corporate_actions
from alphatwin_pipelines.corrections import (
    CORRECTIONS_PATH, VERSIONS_DIR, CorrectionsError, apply_corrections, load_corrections,
)

HEADER = "symbol,ex_date,kind,value,reason,source\n"


def write(data_dir, text: str):
    path = data_dir / CORRECTIONS_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def bars() -> pd.DataFrame:
    dates = pd.bdate_range("2024-01-02", periods=4)
    return pd.DataFrame({
        "symbol": ["ABC"] * 4, "date": dates, "close": [100.0, 60.0, 61.0, 62.0],
        "dividend": [0.0, 150.0, 0.0, 0.0], "split_ratio": [1.0, 1.0, 1.0, 1.0],
    })


def test_no_file_means_no_corrections(tmp_path):
    corrections = load_corrections(tmp_path)
    assert corrections.empty and corrections.version is None
    out, applied = apply_corrections(bars(), corrections)
    assert applied.empty and out["correction"].isna().all()
    assert not (tmp_path / "corrections").exists()


def test_version_is_the_content_hash_and_every_version_is_kept(tmp_path):
    first = HEADER + "ABC,2024-01-03,distribution,40,spin-off valued at the ex-date open,10-K\n"
    write(tmp_path, first)
    v1 = load_corrections(tmp_path)
    assert v1.version == hashlib.sha256(first.encode()).hexdigest()[:16]
    write(tmp_path, first + "ABC,2024-01-04,split,2,2-for-1,press release\n")
    v2 = load_corrections(tmp_path)
    assert v2.version != v1.version and len(v2.table) == 2
    kept = sorted(p.stem for p in (tmp_path / VERSIONS_DIR).glob("*.csv"))
    assert kept == sorted([v1.version, v2.version])
    assert (tmp_path / VERSIONS_DIR / f"{v1.version}.csv").read_text() == first


def test_correction_releases_an_event_too_large_for_the_previous_close(tmp_path):
    write(tmp_path, HEADER + "abc, 2024-01-03 ,Distribution,40,spin-off valued at the ex-date open,10-K\n")
    corrections = load_corrections(tmp_path)
    raw = bars()
    before = corporate_actions(raw)
    assert before["flag"].tolist() == ["dividend_ge_prev_close"] and before["dividend_factor"].tolist() == [1.0]

    corrected, applied = apply_corrections(raw, corrections)
    after = corporate_actions(corrected)
    assert after["dividend_factor"].tolist() == [pytest.approx(1 - 40 / 100)]
    assert after["flag"].isna().all() and after["correction"].tolist() == [corrections.version]
    assert applied[["symbol", "kind", "value", "provider_value", "applied"]].values.tolist() == [
        ["ABC", "distribution", 40.0, 150.0, True]]
    assert raw["dividend"].tolist() == [0.0, 150.0, 0.0, 0.0]  # the caller's bars are untouched


def test_correction_without_a_bar_is_reported_not_applied(tmp_path):
    write(tmp_path, HEADER + "ABC,2024-01-03,split,0.5,reverse split,filing\nXYZ,2024-01-03,split,2,x,y\n")
    corrected, applied = apply_corrections(bars(), load_corrections(tmp_path))
    assert applied["applied"].tolist() == [True, False]
    assert corrected["split_ratio"].tolist() == [1.0, 0.5, 1.0, 1.0]
    assert np.isnan(applied["provider_value"].iloc[1])


@pytest.mark.parametrize("line, where", [
    ("ABC,2024-13-03,split,2,r,s", "line 2, column ex_date"),
    ("ABC,2024-01-03,merger,2,r,s", "line 2, column kind"),
    ("ABC,2024-01-03,split,-2,r,s", "line 2, column value"),
    ("ABC,2024-01-03,dividend,abc,r,s", "line 2, column value"),
    ("ABC,2024-01-03,dividend,1,,s", "line 2, column reason"),
    ("ABC,2024-01-03,dividend,1,r,s\nABC,2024-01-03,distribution,2,r,s", "line 3, column ex_date"),
])
def test_bad_file_names_file_line_and_column(tmp_path, line, where):
    path = write(tmp_path, HEADER + line + "\n")
    with pytest.raises(CorrectionsError) as error:
        load_corrections(tmp_path)
    assert str(path) in str(error.value) and where in str(error.value)


def test_missing_column_is_named(tmp_path):
    write(tmp_path, "symbol,ex_date,kind,value,reason\nABC,2024-01-03,split,2,r\n")
    with pytest.raises(CorrectionsError, match=r"missing \['source'\]"):
        load_corrections(tmp_path)


def test_adjustment_factors_asset_applies_corrections_and_names_their_version(tmp_path):
    """Through Dagster: the corrected event carries the version, the metadata lists the corrections."""
    import dagster as dg

    from alphatwin_pipelines.tables import FACTORS, VALIDATED
    from alphatwin_pipelines.storage import TableStore
    from assets.cleaning import adjustment_factors
    from assets.resources import StorageResource

    data = tmp_path / "data"
    store = TableStore(data)
    sessions = pd.DatetimeIndex(["2024-01-02", "2024-01-03", "2024-01-04"])
    validated = pd.DataFrame({
        "symbol": pd.array(["ABC"] * 3, dtype="string"), "date": sessions,
        "open": [100.0, 59.0, 61.0], "high": [101.0, 61.0, 62.0], "low": [99.0, 58.0, 60.0],
        "close": [100.0, 60.0, 61.0], "volume": [1000, 2000, 1500], "dividend": [0.0, 150.0, 0.0],
        "split_ratio": 1.0, "source": pd.array(["test"] * 3, dtype="string"),
        "flags": pd.array(["", "dividend.not_below_prev_close", ""], dtype="string"), "raw_row": 0,
    })
    store.write_sessions(VALIDATED, validated, sessions)
    write(data, HEADER + "ABC,2024-01-03,distribution,41,spin-off: previous close 100 minus ex-date open 59,bars\n"
          "ABC,2024-01-04,split,2,never happened,test\n")
    version = load_corrections(data).version

    result = dg.materialize([adjustment_factors], partition_key="2024-01-03",
                            resources={"storage": StorageResource(data_dir=str(data))})
    assert result.success
    events = store.read_partitions(FACTORS)
    assert events[["symbol", "dividend", "correction"]].values.tolist() == [["ABC", 41.0, version]]
    assert events["dividend_factor"].tolist() == [pytest.approx(0.59)]
    meta = result.asset_materializations_for_node(FACTORS)[-1].metadata
    assert meta["corrections_version"].value == version
    assert "spin-off: previous close 100 minus ex-date open 59" in meta["corrections"].md_str
    assert meta["corrections_not_applied"].value == 0  # the 01-04 correction is outside this run

"""The ``sources_agree`` reconciliation check of ``raw_ohlcv``, through one real Dagster run on two
CSV folders (tests/quality_support.py) that differ at planted rows.
"""

from __future__ import annotations

import dagster as dg
import pytest

from assets.ingestion import CHECK_SOURCES_AGREE, raw_ohlcv, sources_agree

from quality_support import (
    KEYS,
    SESSIONS,
    checks_of,
    csv_resources,
    make_market,
    md_rows,
    row,
    run,
    with_universe,
    write_folder,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::dagster.BetaWarning"),
    # With the other quality-asset modules on one xdist worker.
    pytest.mark.xdist_group("quality_assets"),
]


# -- 7. reconciliation ---------------------------------------------------------------------------
def test_sources_agree_fails_as_a_warning_listing_exactly_the_planted_disagreements(tmp_path, module_instance):
    symbols = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]
    sessions = SESSIONS[:10]
    primary = make_market(symbols, sessions, seed=3)
    secondary = primary.copy()
    secondary.loc[row(secondary, "BBB", sessions[3]), "close"] *= 1.02  # close off 2%
    secondary.loc[row(secondary, "CCC", sessions[5]), "volume"] = (
        secondary.loc[row(secondary, "CCC", sessions[5]), "volume"] * 3 // 2)  # volume off 50%
    secondary.loc[row(secondary, "DDD", sessions[7]), "dividend"] = 0.25  # a dividend only B has
    a = write_folder(tmp_path / "a", primary)
    b = write_folder(tmp_path / "b", secondary)
    resources = with_universe(module_instance, csv_resources(tmp_path / "data", a, ",".join(symbols),
                                                      secondary_source="csv", secondary_source_path=str(b)))

    result = run(module_instance, resources, [raw_ohlcv, sources_agree], KEYS[0], KEYS[9])

    assert result.success, "a WARN check does not fail the run"
    check = checks_of(result)[CHECK_SOURCES_AGREE]
    assert check.asset_key == dg.AssetKey("raw_ohlcv")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["overlapping_rows"].value == len(symbols) * len(sessions)
    assert check.metadata["disagreements"].value == 3
    details = md_rows(check.metadata["details"].md_str)
    assert {(r["symbol"], r["date"][:10], r["field"], r["reason"]) for r in details} == {
        ("BBB", KEYS[3], "close", "close differs"),
        ("CCC", KEYS[5], "volume", "volume differs"),
        ("DDD", KEYS[7], "dividend", "dividend only in secondary"),
    }
    by_field = {r["field"]: r for r in details}
    assert float(by_field["close"]["rel_diff"]) == pytest.approx(0.02 / 1.02, rel=1e-2)
    assert float(by_field["volume"]["rel_diff"]) == pytest.approx(1 / 3, rel=1e-3)
    assert float(by_field["dividend"]["secondary"]) == 0.25 and float(by_field["dividend"]["primary"]) == 0.0

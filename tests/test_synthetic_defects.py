"""The synthetic market's injected defects against the quality rules: precision and recall.

Every defect kind names the rule that should catch it (``DEFECT_KINDS``). ERROR kinds must be
quarantined with that rule, every one of them (recall 100 %), and no row the source did not
damage may be quarantined (precision 100 %). The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.quality import missing_sessions, validate
from alphatwin_pipelines.quality.catalogue_series import MIN_HISTORY
from alphatwin_pipelines.sources.base import SourceConfigError
from alphatwin_pipelines.sources.synthetic import SyntheticSource
from alphatwin_pipelines.sources.synthetic_defects import (DEFAULT_DEFECT_RATE, DEFECT_KINDS, MAX_RATE, UNRECORDED_REVERSE_SPLIT,
                                                          UNRECORDED_SPLIT)

SESSIONS = sessions_between("2023-01-03", "2024-12-31")
RATE = 0.01  # 20x the default, so that every kind shows up often in a small market
ALL_KINDS = (*DEFECT_KINDS, UNRECORDED_SPLIT, UNRECORDED_REVERSE_SPLIT)


@pytest.fixture(scope="module")
def market():
    source = SyntheticSource(n_symbols=150, defects=RATE)
    symbols = source.universe()["symbol"].tolist()
    bars = source.fetch(symbols, SESSIONS).bars
    truth = source.injected_defects(symbols, SESSIONS)
    result = validate(bars, as_of="2025-01-02")
    return source, symbols, bars, truth, result


def _keys(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([frame["symbol"].astype(str), pd.to_datetime(frame["date"])])


def _judgeable(bars: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Defects the rules can see: after enough history for the lookback rules, before the last session.

    A robust baseline needs MIN_HISTORY returns for its median, then MIN_HISTORY deviations
    from that median for its MAD: about twice MIN_HISTORY sessions.
    """
    unique = bars.drop_duplicates(["symbol", "date"])
    position = unique.groupby("symbol").cumcount()
    first_judged = unique.loc[position == 2 * MIN_HISTORY + 1].set_index("symbol")["date"]
    after = truth["date"].to_numpy() > first_judged.reindex(truth["symbol"]).to_numpy()
    return truth[after & (truth["date"] < SESSIONS[-1]).to_numpy() & (truth["expected_rule"] != "").to_numpy()]


def _rows_after(bars: pd.DataFrame, gaps: pd.DataFrame) -> pd.DataFrame:
    """Each symbol's first bar after each of ``gaps`` (where the gap's WARNING lands)."""
    ordered = bars[["symbol", "date"]].drop_duplicates().sort_values("date")
    probe = gaps[["symbol", "date"]].assign(symbol=gaps["symbol"].astype(str)).sort_values("date")
    found = pd.merge_asof(probe, ordered.rename(columns={"date": "next"}).assign(symbol=lambda f: f["symbol"].astype(str)),
                          left_on="date", right_on="next", by="symbol", direction="forward", allow_exact_matches=False)
    return found.dropna(subset=["next"]).drop(columns="date").rename(columns={"next": "date"})


def test_every_kind_is_injected_with_its_ground_truth(market):
    _, symbols, bars, truth, _ = market
    kinds = {k.name for k in ALL_KINDS}
    assert set(truth["kind"]) == kinds
    assert len(truth) > 500 and set(truth["symbol"]) <= set(symbols)
    damaged_rows = truth[truth["kind"] != "missing_session"]
    assert _keys(damaged_rows).isin(_keys(bars)).all()
    assert not _keys(truth[truth["kind"] == "missing_session"]).isin(_keys(bars)).any()
    duplicated = _keys(bars)[_keys(bars).duplicated()]
    assert set(duplicated) == set(_keys(truth[truth["kind"] == "duplicate_row"]))
    clean = SyntheticSource(n_symbols=150, defects=0)
    assert clean.injected_defects(symbols, SESSIONS).empty
    pristine = clean.fetch(symbols, SESSIONS).bars
    assert not pristine.duplicated(["symbol", "date"]).any()
    # Only the damaged cells differ from the clean market.
    untouched = bars[~_keys(bars).isin(_keys(truth))].reset_index(drop=True)
    pdt.assert_frame_equal(untouched, pristine[~_keys(pristine).isin(_keys(truth))].reset_index(drop=True))


def test_defects_are_the_same_however_a_partition_is_fetched(market):
    source, symbols, bars, truth, _ = market
    for kind in ("bad_print", "stale_bars", "duplicate_row", "missing_session"):
        day = truth.loc[truth["kind"] == kind, "date"].iloc[len(truth) % 7]
        alone = source.fetch(symbols, pd.DatetimeIndex([day])).bars
        pdt.assert_frame_equal(alone, bars[bars["date"] == day].reset_index(drop=True))
        pdt.assert_frame_equal(source.injected_defects(symbols, pd.DatetimeIndex([day])),
                               truth[truth["date"] == day].reset_index(drop=True))
    wider = SyntheticSource(n_symbols=400, defects=RATE).fetch(symbols[::5], SESSIONS[100:160]).bars
    ours = bars[bars["symbol"].isin(symbols[::5]) & bars["date"].isin(SESSIONS[100:160])].reset_index(drop=True)
    pdt.assert_frame_equal(wider, ours)


def test_error_defects_are_all_quarantined_and_no_clean_row_is(market):
    _, _, bars, truth, result = market
    quarantined = result.quarantined.assign(date=pd.to_datetime(result.quarantined["date"]))
    by_key = quarantined.set_index(_keys(quarantined))["rule_id"].groupby(level=[0, 1]).agg(",".join)
    judged = _judgeable(bars, truth)
    lines = ["kind                     outcome      expected rule (first)    injected  caught  recall"]
    recall = {}
    for kind in ALL_KINDS:
        cases = judged[judged["kind"] == kind.name]
        if kind.outcome == "quarantined":  # row-local rules need no history, nor an extreme move (neutral baseline)
            cases = truth[(truth["kind"] == kind.name) & (truth["expected_rule"] != "")]
        if kind.outcome == "quarantined":
            rules = by_key.reindex(_keys(cases)).fillna("")
        elif kind.outcome == "flagged":
            flagged = result.validated.assign(date=pd.to_datetime(result.validated["date"]))
            rules = flagged.set_index(_keys(flagged))["flags"].reindex(_keys(cases)).fillna("")
        else:  # missing: the next row of the symbol carries the WARNING; the check lists the session
            gaps = _keys(missing_sessions(bars).rename(columns={"session": "date"}))
            rules = pd.Series(np.where(_keys(cases).isin(gaps), kind.expected_rule, ""))
        caught = int(sum(rule in found.split(",") for rule, found in zip(cases["expected_rule"], rules)))
        recall[kind.name] = caught / len(cases) if len(cases) else float("nan")
        lines.append(f"{kind.name:<24} {kind.outcome:<12} {kind.expected_rule:<24} {len(cases):>8} {caught:>7} "
                     f"{recall[kind.name]:>7.1%}")
    error_keys = _keys(truth[truth["kind"].isin([k.name for k in ALL_KINDS if k.outcome == "quarantined"])])
    wrongly = quarantined[~_keys(quarantined).isin(error_keys)]
    precision = 1 - len(wrongly) / max(len(quarantined), 1)
    lines.append(f"quarantined rows: {len(quarantined)}, of which not an injected ERROR defect: {len(wrongly)} "
                 f"(precision {precision:.1%})")
    flagged = result.validated[result.validated["flags"] != ""]
    explained = _keys(truth).append(_keys(_rows_after(bars, truth[truth["kind"] == "missing_session"])))
    warned_clean = flagged[~_keys(flagged.assign(date=pd.to_datetime(flagged["date"]))).isin(explained)]
    lines.append(f"flagged rows: {len(flagged)}, on undamaged rows: {len(warned_clean)} "
                 f"({warned_clean['flags'].str.split(',').explode().value_counts().to_dict()})")
    print("\n" + "\n".join(lines))

    for kind in ALL_KINDS:
        if kind.outcome == "quarantined":
            assert recall[kind.name] == 1.0, "\n".join(lines)
    assert wrongly.empty, wrongly[["symbol", "date", "rule_id", "offending_value"]].head(20).to_string()
    # The WARNING kinds and the missing-session check catch what they are built for, too.
    for kind in ("stale_bars", "zero_volume", "missing_session"):
        assert recall[kind] == 1.0, "\n".join(lines)
    assert recall[UNRECORDED_SPLIT.name] >= 0.8, "\n".join(lines)


def test_an_unrecorded_reverse_split_reaches_the_fixpoint_however_the_range_is_cut(market, tmp_path):
    """Its first bar is rejected as a 10x print; the bars after it are judged against that bar in
    the re-check too (``recheck_context``), so no ERROR remains among the validated rows, whether
    the split is validated inside a long range or as one daily partition after another."""
    from alphatwin_pipelines.schema import canonical_to_arrow, to_canonical
    from alphatwin_pipelines.stages.quality import residual_errors, validate_sessions
    from alphatwin_pipelines.storage import TableStore
    from alphatwin_pipelines.tables import QUARANTINED, RAW

    _, _, bars, truth, _ = market
    split = truth[truth["kind"] == UNRECORDED_REVERSE_SPLIT.name].iloc[0]
    raw = to_canonical(bars[bars["symbol"] == split["symbol"]])
    store = TableStore(tmp_path / "data")
    sessions = pd.DatetimeIndex(sorted(raw["date"].unique()))
    store.write_sessions(RAW, raw, sessions, to_arrow=canonical_to_arrow)
    at = sessions.get_loc(split["date"])
    for cut in ([sessions[2 * MIN_HISTORY + 1:]], [sessions[i: i + 1] for i in range(at - 2, at + 4)]):
        for part in cut:
            report = validate_sessions(store, part, as_of="2025-01-02")
            assert residual_errors(report.validated, report.recheck_context, as_of="2025-01-02").empty, part
        quarantined = store.read_partitions(QUARANTINED)
        by_rule = quarantined[quarantined["rule_id"].str.contains(UNRECORDED_REVERSE_SPLIT.expected_rule, regex=False)]
        assert by_rule[["date", "action"]].values.tolist() == [[f"{split['date']:%Y-%m-%d}", "rejected"]]
        ours = truth[(truth["symbol"] == split["symbol"]) & (truth["outcome"] == "quarantined")]
        assert set(pd.to_datetime(quarantined["date"])) == set(ours["date"])  # nothing else, least of all the bars after it


def test_default_rate_is_small_and_the_rate_is_checked():
    assert 0 < DEFAULT_DEFECT_RATE <= 0.001
    assert SyntheticSource().defects == DEFAULT_DEFECT_RATE
    for bad in (-0.1, MAX_RATE * 2):
        with pytest.raises(SourceConfigError, match="ALPHATWIN_SYNTHETIC_DEFECTS"):
            SyntheticSource(defects=bad)


def test_the_default_demo_run_quarantines_flags_and_names_gaps_yet_runs_through(tmp_path, monkeypatch, capsys):
    """The default market (1000 symbols, default rate) through raw and quality in one Dagster run."""
    import dagster as dg

    from alphatwin_pipelines import load
    from assets.ingestion import raw_ohlcv, universe
    from assets.quality import (CHECK_NO_ERROR_ROWS, CHECK_NO_MISSING_SESSIONS, CHECK_PASS_RATE, CHECK_SCHEMA,
                                validated_and_quarantined_ohlcv)
    from assets.resources import MarketDataResource, StorageResource

    data = tmp_path / "data"
    resources = {"storage": StorageResource(data_dir=str(data)), "market_data": MarketDataResource(source="synthetic")}
    window = ("2024-01-02", "2024-03-28")
    tags = {"dagster/asset_partition_range_start": window[0], "dagster/asset_partition_range_end": window[1]}
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize([universe], resources=resources, instance=instance).success
        result = dg.materialize([raw_ohlcv, validated_and_quarantined_ohlcv], tags=tags, resources=resources,
                                instance=instance, raise_on_error=False)
    assert result.success, "the blocking checks let the default demo run through"
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    for name in (CHECK_SCHEMA, CHECK_PASS_RATE, CHECK_NO_ERROR_ROWS):
        assert checks[name].passed, (name, checks[name].description)

    source = SyntheticSource()
    symbols = source.universe()["symbol"].tolist()
    truth = source.injected_defects(symbols, sessions_between(*window))
    quarantined = load("quarantined_ohlcv", data_dir=data)
    errors = truth[truth["outcome"] == "quarantined"]
    assert len(quarantined) >= len(errors) > 5
    rules = quarantined.assign(date=pd.to_datetime(quarantined["date"])).set_index(["symbol", "date"])["rule_id"]
    for defect in errors.itertuples():
        assert defect.expected_rule in ",".join(rules.loc[[(defect.symbol, defect.date)]]), defect
    assert set(_keys(quarantined.assign(date=pd.to_datetime(quarantined["date"])))) == set(_keys(errors))

    gaps = checks[CHECK_NO_MISSING_SESSIONS]
    assert not gaps.passed and gaps.severity == dg.AssetCheckSeverity.WARN
    table = gaps.metadata["failures"].md_str
    missing = truth[(truth["kind"] == "missing_session") & truth["date"].between(*window, inclusive="neither")]
    assert len(missing) > 0
    for defect in missing.itertuples():
        assert f"| {defect.symbol} | {defect.date:%Y-%m-%d}" in table, defect
    # Each gap says why: never delivered (the injected missing sessions: backfill) or rejected into the
    # quarantine (fix at the source); the counts add up to the symbol-sessions missing.
    meta = gaps.metadata
    assert meta["not_delivered"].value == len(missing)
    assert meta["quarantined"].value > 0
    assert meta["not_delivered"].value + meta["quarantined"].value == meta["missing_symbol_sessions"].value
    assert f"{len(missing)} symbol-session(s) never delivered (backfill them)" in gaps.description
    flagged = load("validated_ohlcv", data_dir=data)
    assert flagged["flags"].str.contains("volume.zero").any() or flagged["flags"].str.contains("price.stale").any()

    # `make run` ends with the inventory, which prints these counts by rule.
    from alphatwin_pipelines import inventory
    from alphatwin_pipelines.storage import TableStore

    rows, by_rule = inventory.rows_by_rule(TableStore(data), "quarantined_ohlcv", "rule_id")
    assert rows == len(quarantined)
    assert by_rule.to_dict() == quarantined["rule_id"].str.split(",").explode().value_counts().to_dict()
    flagged_rows, flags = inventory.rows_by_rule(TableStore(data), "validated_ohlcv", "flags")
    assert flagged_rows == int((flagged["flags"] != "").sum()) and flags.get("session.gap_before", 0) > 0
    monkeypatch.setenv("ALPHATWIN_DATA_DIR", str(data))
    inventory.main([])
    printed = capsys.readouterr().out
    assert f"Quarantined in quarantined_ohlcv (ERROR rules): {rows:,} row(s), by rule:" in printed
    assert all(rule in printed for rule in by_rule.index)


def test_raw_ohlcv_lists_the_injected_defects_in_its_run_metadata(tmp_path):
    import dagster as dg

    from assets.ingestion import raw_ohlcv, universe
    from assets.resources import MarketDataResource, StorageResource

    resources = {"storage": StorageResource(data_dir=str(tmp_path / "data")),
                 "market_data": MarketDataResource(source="synthetic", synthetic_symbols=100, synthetic_defects="0.02")}
    day = "2024-05-15"
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize([universe], resources=resources, instance=instance).success
        result = dg.materialize([raw_ohlcv], partition_key=day, resources=resources, instance=instance)
    metadata = result.asset_materializations_for_node("raw_ohlcv")[0].metadata
    source = SyntheticSource(n_symbols=100, defects=0.02)
    truth = source.injected_defects(source.universe()["symbol"].tolist(), pd.DatetimeIndex([day]))
    assert metadata["injected_defects"].value == len(truth) > 0
    listed = metadata["injected_defects_list"].md_str
    assert all(f"| {d.symbol} |" in listed and d.kind in listed for d in truth.itertuples())

"""The ``alpha_factor_report`` asset on synthetic predictions and labels written through TableStore."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import ALPHA_FACTOR_REPORT, ALPHA_LABELS, ALPHA_PREDICTIONS, UNIVERSE, resolve_stored_path
from assets.alpha_report import alpha_factor_report
from assets.resources import StorageResource
from tests.test_alpha_factor_report import make_frames

DAYS = pd.bdate_range("2021-01-04", periods=30)


def _write_inputs(store: TableStore) -> None:
    predictions, labels = make_frames(days=len(DAYS), names=24, horizons=(1, 5), signal=0.4, seed=5)
    store.write_sessions(ALPHA_PREDICTIONS, predictions.assign(model_version="m1"), DAYS)
    store.write_sessions(ALPHA_LABELS, labels, DAYS)
    sectors = pd.DataFrame({"symbol": [f"S{i:02d}" for i in range(24)], "sector": ["Tech", "Energy", "Banks"] * 8,
                            "name": ""})
    store.write_table(UNIVERSE, frame_to_arrow(sectors))


def _materialize(data_dir, **config):
    return dg.materialize([alpha_factor_report], resources={"storage": StorageResource(data_dir=str(data_dir))},
                          run_config={"ops": {ALPHA_FACTOR_REPORT: {"config": config}}} if config else None,
                          raise_on_error=False)


def test_materialises_twice_with_the_same_content(data_dir):
    store = TableStore(data_dir)
    _write_inputs(store)
    first = _materialize(data_dir, as_of="2021-02-05", min_names=5)
    assert first.success
    stored = store.read_table(ALPHA_FACTOR_REPORT)
    page = resolve_stored_path(store, stored["report_path"].iloc[0])
    files = {p.name: p.read_bytes() for p in page.parent.iterdir()}
    assert {"report.html", "ic.png", "quantiles.png", "decay.png", "groups.png"} <= set(files)
    assert "Alpha factor report as of 2021-02-05" in files["report.html"].decode()
    as_of = pd.Timestamp("2021-02-05")
    daily = stored[stored["section"] == "daily"]
    # the 5-session label of a day is only known 5 sessions later
    assert pd.to_datetime(daily.loc[daily["horizon"] == 5, "group"]).max() == as_of - pd.offsets.BDay(5)
    assert set(stored.loc[stored["section"] == "sector", "group"]) == {"Tech", "Energy", "Banks"}
    summary = stored[(stored["section"] == "summary") & (stored["metric"] == "mean_rank_ic")]
    assert (summary["value"] > 0.2).all()  # the planted signal shows
    metadata = first.asset_materializations_for_node(ALPHA_FACTOR_REPORT)[0].metadata
    assert metadata["as_of"].value == "2021-02-05"
    assert "data:image/png;base64," in metadata["plot_ic"].value
    assert metadata["report_html"].value == str(page)
    table_bytes = store.whole_path(ALPHA_FACTOR_REPORT).read_bytes()

    again = _materialize(data_dir, as_of="2021-02-05", min_names=5)
    assert again.success
    assert store.whole_path(ALPHA_FACTOR_REPORT).read_bytes() == table_bytes
    assert {p.name: p.read_bytes() for p in page.parent.iterdir()} == files


def test_labels_stored_later_do_not_change_a_past_report(data_dir):
    store = TableStore(data_dir)
    _write_inputs(store)
    assert _materialize(data_dir, as_of="2021-02-01", min_names=5).success
    before = store.read_table(ALPHA_FACTOR_REPORT)
    # Rewrite every label that became available after the as-of session with noise.
    labels = store.read_partitions(ALPHA_LABELS)
    late = pd.to_datetime(labels["available"]) > pd.Timestamp("2021-02-01")
    labels.loc[late, "fwd_return"] = np.random.default_rng(1).normal(size=int(late.sum()))
    store.write_sessions(ALPHA_LABELS, labels, DAYS)
    assert _materialize(data_dir, as_of="2021-02-01", min_names=5).success
    pd.testing.assert_frame_equal(before, store.read_table(ALPHA_FACTOR_REPORT))


def test_missing_upstream_fails_with_a_clear_message(data_dir):
    result = _materialize(data_dir)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "alpha_predictions has no partitions" in failure.event_specific_data.error.message

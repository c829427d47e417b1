"""The quality assets' checks on a clean synthetic market, through one real Dagster run:
every check passes with exactly one evaluation, downstream assets materialise, and the Great
Expectations check links to its data docs under the data directory.

The run is ``dagster.materialize`` of a partition range as one run, on a throwaway instance
with the resources built explicitly (tests/quality_support.py); it is module-scoped and shared
by the tests that only read it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import dagster as dg
import pytest

from alphatwin_pipelines import load
from alphatwin_pipelines.calendar import sessions_between
from assets.quality import (
    CHECK_GX_SUITE,
    CHECK_NO_ERROR_ROWS,
    CHECK_NO_MISSING_SESSIONS,
    CHECK_PASS_RATE,
    CHECK_SCHEMA,
)
from assets.resources import MarketDataResource, StorageResource

from quality_support import PIPELINE, VALIDATED_KEY, checks_of, materialized, run, with_universe

pytestmark = [
    pytest.mark.filterwarnings("ignore::dagster.BetaWarning"),
    # The module-scoped run is built once: keep this module's tests on one xdist worker.
    pytest.mark.xdist_group("quality_assets"),
]

ALL_CHECKS = (CHECK_SCHEMA, CHECK_PASS_RATE, CHECK_NO_ERROR_ROWS, CHECK_NO_MISSING_SESSIONS, CHECK_GX_SUITE)
DOWNSTREAM = ("adjustment_factors", "cleaned_ohlcv")


# -- 3. the checks on clean synthetic data ------------------------------------------------------
SYN_RANGE = ("2024-01-02", "2024-02-29")
SYN_KEYS = list(sessions_between(*SYN_RANGE).strftime("%Y-%m-%d"))


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory, module_instance):
    data = tmp_path_factory.mktemp("synthetic") / "data"
    resources = with_universe(module_instance, {
        "storage": StorageResource(data_dir=str(data)),
        "market_data": MarketDataResource(source="synthetic", synthetic_symbols=40, synthetic_defects="0"),
    })
    return data, run(module_instance, resources, PIPELINE, *SYN_RANGE)


def test_clean_synthetic_run_passes_every_check_and_materialises_downstream(synthetic_run):
    data, result = synthetic_run
    checks = checks_of(result)
    assert set(checks) == set(ALL_CHECKS), "each check produced exactly one evaluation"
    for name, evaluation in checks.items():
        assert evaluation.passed, (name, evaluation.description, evaluation.metadata)
        assert evaluation.asset_key == VALIDATED_KEY
        assert evaluation.metadata["failures"].md_str == "_none_"
    assert checks[CHECK_PASS_RATE].severity == dg.AssetCheckSeverity.ERROR
    assert checks[CHECK_GX_SUITE].severity == dg.AssetCheckSeverity.WARN
    assert result.success
    done = materialized(result)
    for name in ("raw_ohlcv", "validated_ohlcv", "quarantined_ohlcv", *DOWNSTREAM):
        assert done[name] == set(SYN_KEYS), name
    assert len(load("quarantined_ohlcv", data_dir=data)) == 0
    cleaned = load("cleaned_ohlcv", data_dir=data)
    assert len(cleaned) == len(load("validated_ohlcv", data_dir=data)) > 0
    assert len(load("adjustment_factors", data_dir=data)) > 0, "the synthetic market pays dividends"


def test_great_expectations_check_links_to_data_docs_under_the_data_dir(synthetic_run):
    data, result = synthetic_run
    gx = checks_of(result)[CHECK_GX_SUITE]
    meta = gx.metadata
    assert gx.description.endswith("expectations met") and gx.description.startswith("passed")
    path = Path(meta["data_docs_path"].value)
    assert path.name == "index.html" and path.is_file()
    assert path.resolve().is_relative_to(data.resolve())
    url = urlparse(meta["data_docs"].value)
    assert url.scheme == "file" and Path(unquote(url.path)) == path.resolve()
    assert "<html" in path.read_text(errors="replace").lower()


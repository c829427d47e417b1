"""Optuna studies on the real PostgreSQL (127.0.0.1:5432): stored, resumed from a second load, persisted.

Each test run creates its own database and drops it; the test skips when no server answers.
"""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.optimise import PortfolioObjective, run_study
from alphatwin_pipelines.strategies import MarketArrays

SERVER = os.environ.get("ALPHATWIN_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")


@pytest.fixture
def pg_url():
    sqlalchemy = pytest.importorskip("sqlalchemy")
    admin = sqlalchemy.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    name = f"alphatwin_optuna_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server here"
        admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable at {SERVER}: {exc.__class__.__name__}")
    try:
        yield f"{SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _market() -> MarketArrays:
    """Six seeded random walks: enough for moving-average crosses to trade."""
    rng = np.random.default_rng(11)
    close = 50 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, (400, 6)), axis=0))
    open_ = close * (1 + rng.normal(0, 0.002, close.shape))
    high, low = np.maximum(open_, close) * 1.005, np.minimum(open_, close) * 0.995
    dates = pd.bdate_range("2022-01-03", periods=400)
    return MarketArrays(open_, high, low, close, np.full(close.shape, 2e6), dates, tuple("ABCDEF"))


def test_a_study_on_postgres_resumes_from_a_second_load_and_keeps_its_trials(pg_url):
    import optuna

    market = _market()
    objective = PortfolioObjective(market, "ma_cross", 0, market.dates[250])
    first = run_study(objective, "alphatwin/ma_cross/L0/pgtest", pg_url, 4, 42)

    loaded = optuna.load_study(study_name="alphatwin/ma_cross/L0/pgtest", storage=pg_url)
    assert [t.params for t in loaded.trials] == [json.loads(p) for p in first.trials["params_json"]]
    assert [t.value for t in loaded.trials] == first.trials["sharpe"].tolist()

    resumed = run_study(objective, "alphatwin/ma_cross/L0/pgtest", pg_url, 7, 42)
    assert (resumed.ran, resumed.n_trials) == (3, 7)
    pd.testing.assert_frame_equal(resumed.trials.head(4), first.trials)

    again = optuna.load_study(study_name="alphatwin/ma_cross/L0/pgtest", storage=pg_url)
    assert [t.number for t in again.trials] == list(range(7))
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in again.trials)
    assert again.best_value == pytest.approx(resumed.best_value)
    assert optuna.study.get_all_study_names(pg_url) == ["alphatwin/ma_cross/L0/pgtest"]

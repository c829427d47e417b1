"""Batched studies: the fused evaluation equals the vectorbt one, and batches are seeded and resumable."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphatwin_pipelines.backtest import CostModel
from alphatwin_pipelines.optimise import LoopEvaluator, PortfolioObjective, ProgressLogger, search
from alphatwin_pipelines.strategies import FAMILIES, MAX_LEVEL, Indicators, MarketArrays, sample_params, suggest_params
from tests.fixtures.markets import gappy_market


@pytest.fixture(scope="module")
def market() -> MarketArrays:
    return gappy_market()


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_values_equal_the_vectorbt_backtest_for_every_level(market, family):
    indicators = Indicators(market)
    for level in range(MAX_LEVEL + 1):
        objective = PortfolioObjective(market, family, level, market.dates[120], indicators=indicators)
        params = sample_params(family, level, 3, seed=level)
        batched = objective.evaluate(params)
        one_at_a_time = [objective.value(p) for p in params]  # generate + vectorbt simulate + compute_metrics
        assert batched == one_at_a_time, (family, level)
        assert [objective.evaluate([p])[0] for p in params] == batched  # batch composition does not matter
        assert any(v != 0.0 for v in batched) or level > 0  # real trades, not all "cash"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(family=st.sampled_from(FAMILIES), level=st.integers(0, MAX_LEVEL), seed=st.integers(0, 2**16),
       fees=st.sampled_from([0.0, 5.0, 30.0]), impact=st.sampled_from([0.0, 100.0, 400.0]),
       start=st.integers(0, 300))
def test_batched_equals_one_at_a_time_for_any_costs_and_window(market, family, level, seed, fees, impact, start):
    costs = CostModel(fees_bps=fees, slippage_bps=fees / 2, impact_k_bps=impact)
    objective = PortfolioObjective(market, family, level, market.dates[start], costs)
    params = sample_params(family, level, 2, seed)
    assert objective.evaluate(params) == [objective.value(p) for p in params]


def _sqlite(tmp_path, name="optuna.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def test_same_seed_and_batch_size_give_the_same_trials(market):
    runs = [search(market, "ma_cross", 2, market.dates[120], 12, seed, batch_size=batch)
            for seed, batch in ((5, 4), (5, 4), (6, 4), (5, 6))]
    pd.testing.assert_frame_equal(runs[0].trials, runs[1].trials)
    assert runs[0].trials["params_json"].tolist() != runs[2].trials["params_json"].tolist()
    assert runs[0].trials["params_json"].tolist() != runs[3].trials["params_json"].tolist()
    assert runs[0].n_trials == 12 and runs[0].ran == 12 and np.isfinite(runs[0].trials["sharpe"]).all()
    assert runs[0].best_value == runs[0].trials["sharpe"].max()


def test_a_killed_run_resumes_to_the_trials_of_an_uninterrupted_one(market, tmp_path):
    start = market.dates[120]
    straight = search(market, "rsi_reversion", 3, start, 14, 11, batch_size=4)

    class Dies:  # the objective of a run killed while its third batch evaluates
        def __init__(self):
            self.inner, self.calls = PortfolioObjective(market, "rsi_reversion", 3, start), 0

        def suggest(self, trial):
            return self.inner.suggest(trial)

        def evaluate(self, params):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return self.inner.evaluate(params)

    url = _sqlite(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        search(market, "rsi_reversion", 3, start, 14, 11, batch_size=4, storage_url=url, name="r", evaluator=Dies())
    half = search(market, "rsi_reversion", 3, start, 6, 11, batch_size=4, storage_url=url, name="r")  # mid-batch
    resumed = search(market, "rsi_reversion", 3, start, 14, 11, batch_size=4, storage_url=url, name="r")
    assert (half.ran, resumed.ran) == (0, 6)  # 8 stored before the kill; never redone
    pd.testing.assert_frame_equal(resumed.trials, straight.trials)
    assert search(market, "rsi_reversion", 3, start, 14, 11, batch_size=4, storage_url=url, name="r").ran == 0
    with pytest.raises(RuntimeError, match="another seed or batch size"):
        search(market, "rsi_reversion", 3, start, 16, 11, batch_size=5, storage_url=url, name="r")


def test_the_per_trial_fallback_runs_the_same_study(market):
    objective = PortfolioObjective(market, "bollinger_reversion", 4, market.dates[120])
    batched = search(market, "bollinger_reversion", 4, market.dates[120], 10, 3, batch_size=5)
    looped = search(market, "bollinger_reversion", 4, market.dates[120], 10, 3, batch_size=5,
                    evaluator=objective.value)  # a plain params -> float callable
    explicit = LoopEvaluator(objective.value, lambda trial: suggest_params(trial, "bollinger_reversion", 4))
    assert explicit.evaluate([{"period": 20}]) == [objective.value({"period": 20})]
    pd.testing.assert_frame_equal(batched.trials, looped.trials)


def test_a_family_the_kernel_does_not_know_loops_the_single_trial_objective(market, monkeypatch):
    from alphatwin_pipelines.optimise import fast, objective as objective_module

    objective = PortfolioObjective(market, "ts_momentum", 5, market.dates[120])
    params = sample_params("ts_momentum", 5, 3, seed=9)
    batched = objective.evaluate(params)
    monkeypatch.setattr(objective_module, "KERNEL_FAMILIES", frozenset())  # as for a family from another branch
    monkeypatch.setattr(fast, "evaluate_batch", lambda *a: pytest.fail("the kernel ran for an unknown family"))
    assert objective.evaluate(params) == batched


def test_progress_lines_count_batches_and_estimate_the_time_left(market, caplog):
    caplog.set_level(logging.INFO, logger="progress")
    ticks = iter(range(100))
    progress = ProgressLogger(logging.getLogger("progress"), "donchian L0", 8, lines=2, clock=lambda: float(next(ticks)))
    result = search(market, "donchian_breakout", 0, market.dates[120], 8, 1, batch_size=4, progress=progress)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("donchian L0: 4/8 trials") and "~1.0 s left" in lines[0]
    assert lines[-1].startswith("donchian L0: 8/8 trials") and f"(trial {result.best_trial})" in lines[-1]


def test_the_compiled_tpe_functions_give_optunas_trials_and_a_failing_stream_fails_its_batch(market, monkeypatch):
    from optuna.samplers._tpe import _truncnorm

    from alphatwin_pipelines.optimise import tpe_speed

    assert tpe_speed.install() and _truncnorm._log_ndtr is tpe_speed.log_ndtr
    values = np.concatenate([tpe_speed.probe_values(), np.random.default_rng(3).normal(0, 15, 5000)])
    reference = np.array([_truncnorm._log_ndtr_single(float(v)) for v in values])  # Optuna's own scalar code
    assert np.array_equal(tpe_speed.log_ndtr(values), reference)
    small = values[:1500].reshape(30, 50)
    assert np.array_equal(_truncnorm.erf(small), np.vectorize(math.erf)(small))  # Optuna's own small-array rule

    compiled = search(market, "ma_cross", 3, market.dates[120], 16, 4, batch_size=8)
    for name, function in tpe_speed.ORIGINALS.items():
        monkeypatch.setattr(_truncnorm, name, function)
    pd.testing.assert_frame_equal(search(market, "ma_cross", 3, market.dates[120], 16, 4, batch_size=8).trials,
                                  compiled.trials)  # the same draws with Optuna's own functions

    class FailsSecond:  # a streaming evaluator whose second hand-over raises
        stream_chunk, calls = 2, 0

        def suggest(self, trial):
            return suggest_params(trial, "ma_cross", 0)

        def evaluate(self, params):
            self.calls += 1
            if self.calls == 2:
                raise ValueError("boom")
            return [0.5] * len(params)

    with pytest.raises(ValueError, match="boom"):
        search(market, "ma_cross", 0, market.dates[120], 8, 1, batch_size=8, evaluator=FailsSecond())


def test_a_batch_is_stored_as_add_trial_stores_it(tmp_path):
    import optuna

    from alphatwin_pipelines.optimise.study import open_storage, store_trials

    memory = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    frozen = []
    for i in range(7):
        trial = memory.ask()
        suggest_params(trial, "ma_cross", 9)
        trial.set_user_attr("i", i)
        frozen.append(memory.tell(trial, [0.5, -1.25, float("inf")][i % 3]))
    studies = [optuna.create_study(study_name="s", storage=open_storage(_sqlite(tmp_path, f"{n}.db")),
                                   direction="maximize") for n in ("one", "bulk")]
    for study in studies:
        study.add_trial(frozen[0])  # numbering continues after trials already stored
    for trial in frozen[1:]:
        studies[0].add_trial(trial)
    store_trials(studies[1], frozen[1:4])
    store_trials(studies[1], frozen[4:])

    def rows(n):
        trials = optuna.load_study(study_name="s", storage=_sqlite(tmp_path, f"{n}.db")).get_trials()
        return [(t.number, t.state, t.value, t.params, t.distributions, t.user_attrs, t.system_attrs,
                 t.datetime_start, t.datetime_complete, t._trial_id) for t in trials]

    assert rows("bulk") == rows("one") and len(rows("one")) == 7

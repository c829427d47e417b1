"""Run config is derived from the engine's settings: same fields, same defaults, same validation."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from alphatwin_pipelines.execution.safeguards import Limits
from alphatwin_pipelines.stages.optimisation import OptimisationConfig
from assets.config import dataclass_from_config
from assets.strategies import OptimisationRunConfig
from jobs.execution import PaperExecutionConfig


def _defaults(cls, exclude=()):
    return {f.name: f.default for f in dataclasses.fields(cls) if f.name not in exclude}


def test_optimisation_run_config_has_every_engine_setting_with_its_default():
    engine = _defaults(OptimisationConfig, exclude=("warmup_sessions", "costs"))
    run = OptimisationRunConfig()
    assert set(OptimisationRunConfig.model_fields) == set(engine)
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in run.model_dump().items()} == engine
    assert dataclass_from_config(OptimisationConfig, run) == OptimisationConfig()


def test_optimisation_run_config_reaches_the_engine_unchanged():
    run = OptimisationRunConfig(families=["ma_cross"], levels=[0, 3], n_trials=2, segment_sector="Tech",
                                segment_symbols=["AAA", "BBB"], train_years=1.5, batch_size=4)
    settings = dataclass_from_config(OptimisationConfig, run)
    assert settings == OptimisationConfig(families=("ma_cross",), levels=(0, 3), n_trials=2, segment_sector="Tech",
                                          segment_symbols=("AAA", "BBB"), train_years=1.5, batch_size=4)
    with pytest.raises(ValueError, match="unknown strategy families"):
        dataclass_from_config(OptimisationConfig, OptimisationRunConfig(families=["ma_crossover"]))


def test_paper_execution_limits_are_the_limits_dataclass():
    config = PaperExecutionConfig(allocation_version="v1")
    assert set(_defaults(Limits)) <= set(PaperExecutionConfig.model_fields)
    assert config.limits() == Limits()
    assert PaperExecutionConfig(allocation_version="v1", max_daily_loss=0.02).limits() == Limits(max_daily_loss=0.02)
    with pytest.raises(ValidationError, match="hard-coded bound"):
        PaperExecutionConfig(allocation_version="v1", max_daily_loss=5.0)


def test_defaults_are_the_research_scale_and_make_run_passes_a_valid_demo_budget():
    from pathlib import Path

    import yaml

    from alphatwin_pipelines.reports import ValidationSettings
    from assets.validation import StrategyValidationConfig

    research = OptimisationConfig()
    assert (research.shortlist_size, research.train_years, research.n_trials) == (100, 10.0, 500)
    assert StrategyValidationConfig().trials_per_window == ValidationSettings().trials_per_window == 50
    root = Path(__file__).resolve().parents[1]
    assert "-c $(DEMO_RESEARCH_CONFIG)" in (root / "Makefile").read_text()
    ops = yaml.safe_load((root / "config" / "demo_research.yaml").read_text())["ops"]
    demo = dataclass_from_config(OptimisationConfig, OptimisationRunConfig(**ops["optimised_strategies"]["config"]))
    assert demo.n_trials < research.n_trials and demo.shortlist_size < research.shortlist_size
    assert StrategyValidationConfig(**ops["validation_reports"]["config"]).trials_per_window < 50
    assert set(ops) == {"optimised_strategies", "validation_reports", "portfolio_allocations"}  # op names

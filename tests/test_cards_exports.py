"""Card exports: the Python script reproduces the engine for every family and level, the Pine
Script templates match their golden files and pass the structural check, bad specs are named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alphatwin_pipelines.backtest import CostModel, run_specs
from alphatwin_pipelines.cards import ExportError, export
from alphatwin_pipelines.cards.card import REASON_PREFIX
from alphatwin_pipelines.cards.pine_check import check_pine
from alphatwin_pipelines.reports.gates import GATES, GateThresholds, gate_failures
from alphatwin_pipelines.reports.portfolio import equal_weight_book
from alphatwin_pipelines.cards.export import EXPORTABLE_FAMILIES as FAMILIES
from alphatwin_pipelines.strategies import MAX_LEVEL, StrategySpec, sample_params
from cards_support import gappy_bars, load_generated, market_of

GOLDEN = Path(__file__).parent / "golden" / "pine"
PINE_LEVELS = range(6)  # levels 6+ add the cross-sectional breadth and index regimes
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def bars():
    return gappy_bars()


@pytest.fixture(scope="module")
def market(bars):
    return market_of(bars)


#: A second parameter set per family (EMA for ma_cross) with tight stops, so every stop fires somewhere.
VARIANTS = {"ma_cross": {"fast": 10, "slow": 60, "ma_type": "ema"},
            "rsi_reversion": {"period": 10, "lower": 35.0, "upper": 60.0},
            "bollinger_reversion": {"period": 15, "n_std": 1.5},
            "ts_momentum": {"lookback": 40, "threshold": 0.02},
            "donchian_breakout": {"entry_window": 30, "exit_window": 10}}
TIGHT = {"stop_loss": 0.03, "take_profit": 0.06, "trail_stop": 0.05, "max_hold": 15, "vol_pct": 0.9,
         "breadth_min": 0.4, "trend_window": 100, "index_window": 100, "breadth_window": 100}


def family_specs(family: str) -> list[StrategySpec]:
    """Every level with its defaults, and every level with the family's variant and tight stops."""
    out = []
    for level in range(MAX_LEVEL + 1):
        out.append(StrategySpec(family, {}, level))
        known = StrategySpec(family, {}, level).params
        out.append(StrategySpec(family, {**VARIANTS[family], **{k: v for k, v in TIGHT.items() if k in known}}, level))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_python_export_reproduces_the_engine_for_every_level(family, bars, market):
    specs = family_specs(family)
    engine = run_specs(specs, market, CostModel())
    book = equal_weight_book(engine).returns
    wide = None
    for k, spec in enumerate(specs):
        module = load_generated(export("s" * 64, spec.to_json(), "python").text)
        wide = wide or module.wide_bars(bars)
        got = module.backtest(wide)
        trades = engine.trades[engine.trades["param_set"] == k]
        assert len(trades) > 0, f"{spec.to_json()} made no trade: the comparison would prove nothing"
        expected = float(np.prod(1 + book[k].to_numpy()) - 1)
        assert abs(got["total_return"] - expected) <= TOLERANCE, (spec.to_json(), got["total_return"], expected)
        for symbol in market.symbols:
            mine = got["symbol_total_return"][symbol]
            assert abs(mine - engine.total_return[(k, symbol)]) <= TOLERANCE, (spec.to_json(), symbol)
        n_orders = sum(len(t) for t in got["trades"].values())
        assert n_orders == int((engine.orders["param_set"] == k).sum()), spec.to_json()


def test_python_export_runs_standalone_on_a_csv(tmp_path, bars, market):
    spec = StrategySpec("bollinger_reversion", {"period": 25, "n_std": 1.5}, 4)
    path = tmp_path / "strategy.py"
    path.write_text(export("a" * 64, spec.to_json(), "python").text)
    bars.to_csv(tmp_path / "bars.csv", index=False)
    out = subprocess.run([sys.executable, str(path), str(tmp_path / "bars.csv"), "--json"], capture_output=True,
                         text=True, check=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    summary = json.loads(out.stdout)
    expected = equal_weight_book(run_specs([spec], market, CostModel())).returns[0]
    assert abs(summary["total_return"] - float(np.prod(1 + expected.to_numpy()) - 1)) <= TOLERANCE
    imports = {line.split()[1] for line in path.read_text().splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"argparse", "json", "math", "sys", "numpy", "pandas"}


@pytest.mark.parametrize("family", FAMILIES)
def test_pine_matches_its_golden_file(family):
    """Level 5 carries every feature Pine can express; regenerate with UPDATE_GOLDEN=1 after a
    deliberate template change and review the diff."""
    text = export("g" * 64, StrategySpec(family, {}, 5).to_json(), "pine").text
    golden = GOLDEN / f"{family}.pine"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("family", FAMILIES)
def test_pine_passes_the_structural_check_at_every_expressible_level(family):
    for level in PINE_LEVELS:
        for params in ({}, sample_params(family, level, 1, seed=11)[0]):
            text = export("p" * 64, StrategySpec(family, params, level).to_json(), "pine").text
            assert check_pine(text) == [], (family, level)
            assert text.count("strategy.entry(") == 1 and "process_orders_on_close=false" in text
            spec = StrategySpec(family, params, level)
            for name, value in spec.params.items():
                assert f'{name} = input.' in text and (f'({value},' in text or f'("{value}",' in text
                                                       or f"({value!r}," in text), (name, value)


def test_pine_costs_come_from_the_spec_record():
    text = export("c" * 64, StrategySpec("ma_cross").to_json(), "pine",
                  costs={"fees_bps": 2.0, "slippage_bps": 3.0}).text
    assert "commission_type=strategy.commission.percent, commission_value=0.05," in text


BAD_PINE = {
    "header": ('strategy("x")\nplot(close)\n', "//@version=5"),
    "undefined": ('//@version=5\nstrategy("x")\nplot(fastMa)\n', "'fastMa' is used but never defined"),
    "unused input": ('//@version=5\nstrategy("x")\nn = input.int(3, "n")\nplot(close)\n', "input 'n'"),
    "unbalanced": ('//@version=5\nstrategy("x")\nplot((close)\n', "unclosed"),
    "empty block": ('//@version=5\nstrategy("x")\nif close > open\nplot(close)\n', "has no body"),
    "stray indent": ('//@version=5\nstrategy("x")\n    plot(close)\n', "deeper than any open block"),
    "two strategies": ('//@version=5\nstrategy("x")\nstrategy("y")\n', "exactly one strategy"),
    "local out of scope": ('//@version=5\nstrategy("x")\nif close > open\n    y = 1\nplot(y)\n', "'y' is used"),
}


@pytest.mark.parametrize("case", list(BAD_PINE))
def test_pine_structural_check_finds_each_defect(case):
    text, expected = BAD_PINE[case]
    problems = check_pine(text)
    assert any(expected in p for p in problems), problems


def test_bad_specs_name_the_strategy_and_the_target():
    sid = "f" * 64
    alien = json.dumps({"family": "calendar_spread", "level": 0, "params": {}, "version": 1})
    for target in ("python", "pine", "alpaca"):
        with pytest.raises(ExportError, match=f"strategy {sid}, target {target}: not exportable to {target} for the "
                                              "family 'calendar_spread'") as bad:
            export(sid, alien, target)
        assert not bad.value.unsupported  # not a family of this project: a bad spec
    for spec in (StrategySpec("adx_trend"), StrategySpec("xs_momentum"), StrategySpec("pairs", pairs=(("A", "B"),))):
        with pytest.raises(ExportError, match=f"not exportable to pine for the family '{spec.family}'") as limit:
            export(sid, spec.to_json(), "pine")
        assert limit.value.unsupported  # a family of this project that has no template yet
    crossed = json.dumps({"family": "ma_cross", "level": 0, "params": {"fast": 60, "slow": 50}, "version": 1})
    with pytest.raises(ExportError, match=rf"strategy {sid}, target python: invalid spec \(fast \(60\) must be below"):
        export(sid, crossed, "python")
    with pytest.raises(ExportError, match=f"target pine: level 6 uses \\['breadth_regime'\\]") as limit:
        export(sid, StrategySpec("rsi_reversion", {}, 6).to_json(), "pine")
    assert limit.value.unsupported  # a valid spec Pine cannot express
    wide = StrategySpec("ma_cross", {"fast": 3, "slow": 300}).to_json()  # a valid spec outside the inputs' ranges
    with pytest.raises(ExportError, match="target pine: parameter fast=3 is outside the input range"):
        export(sid, wide, "pine")
    assert export(sid, wide, "python").filename == "strategy.py"
    with pytest.raises(ExportError, match="target excel: unknown target"):
        export(sid, wide, "excel")


def test_gate_reasons_start_as_the_cards_expect():
    failures = gate_failures(0.1, 0.9, 0.1, 10, GateThresholds())
    assert set(failures) == set(GATES)
    for gate, reason in failures.items():
        assert reason.startswith(REASON_PREFIX[gate]), (gate, reason)
    unmeasured = gate_failures(float("nan"), float("nan"), float("nan"), 10, GateThresholds())
    for gate, reason in unmeasured.items():
        assert reason.startswith(REASON_PREFIX[gate]), (gate, reason)

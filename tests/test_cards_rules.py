"""Plain-language rules: every family and level, every feature stated with its parameters."""

from __future__ import annotations

import pytest

from alphatwin_pipelines.cards import SECTIONS, rule_lines, rule_sections
from alphatwin_pipelines.strategies import FAMILIES, MAX_LEVEL, StrategySpec

COSTS = {"fees_bps": 5.0, "slippage_bps": 5.0, "impact_k_bps": 100.0, "adv_window": 20}
SYMBOLS = ["AAA", "BBB", "CCC"]

#: feature -> (section, words that must appear, for the level's default parameters)
FEATURE_TEXT = {
    "trend_filter": ("filters", "above its 200-day moving average"),
    "vol_filter": ("filters", "20-day realised volatility ranks within the lowest 80 %"),
    "stop_loss": ("stops", "minus 8 %"),
    "take_profit": ("stops", "plus 20 %"),
    "vol_sizing": ("sizing", "min(1, 15 % / 20-day realised volatility)"),
    "breadth_regime": ("filters", "at least 50 % of the symbols close above their 200-day"),
    "index_regime": ("filters", "equal-weight index of the symbols closes above its 200-day"),
    "trailing_stop": ("stops", "12 % or more below the highest close"),
    "time_stop": ("stops", "after 60 closes in the position"),
    "trend_exit": ("exit", "falls below its 200-day moving average"),
    "regime_exit": ("exit", "market regime turns off"),
}
FAMILY_TEXT = {
    "ma_cross": ("20-day simple moving average of the close crosses above the 50-day", "is below the 50-day"),
    "rsi_reversion": ("14-day RSI (Wilder) crosses below 30", "rises above 70"),
    "bollinger_reversion": ("20-day moving average minus 2 standard deviations", "at or above the 20-day"),
    "ts_momentum": ("126-day return crosses above 0 %", "falls below -0 %"),
    "donchian_breakout": ("highest high of the previous 55 bars", "lowest low of the previous 20 bars"),
    "adx_trend": ("14-day +DI is above the -DI and the ADX is above 25", "+DI falls below the -DI"),
    "volume_momentum": ("5-day average volume is more than 1.5 times its 50-day", "20-day return turns negative"),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_level_states_its_rules(family):
    previous = None
    for level in range(MAX_LEVEL + 1):
        spec = StrategySpec(family, {}, level)
        sections = rule_sections(spec, COSTS, SYMBOLS)
        assert list(sections) == list(SECTIONS) and all(sections.values()), (family, level)
        assert sections == rule_sections(StrategySpec.from_json(spec.to_json()), COSTS, SYMBOLS)  # deterministic
        entry, exit_ = FAMILY_TEXT[family]
        assert entry in sections["entry"][0] and exit_ in sections["exit"][0]
        for feature in spec.features:
            section, words = FEATURE_TEXT[feature]
            assert any(words in line for line in sections[section]), (family, level, feature, sections[section])
        absent = set(FEATURE_TEXT) - set(spec.features)
        for feature in absent:
            section, words = FEATURE_TEXT[feature]
            assert not any(words in line for line in sections[section]), (family, level, feature)
        lines = rule_lines(spec, COSTS, SYMBOLS)
        assert lines != previous  # every level adds a rule the card states
        previous = lines


def test_parameters_costs_and_universe_are_read_from_the_inputs():
    spec = StrategySpec("ma_cross", {"fast": 12, "slow": 90, "ma_type": "ema", "stop_loss": 0.05}, 3)
    text = "\n".join(rule_lines(spec, {**COSTS, "fees_bps": 1.5, "impact_k_bps": 0.0}, [f"S{i}" for i in range(15)]))
    assert "12-day exponential moving average" in text and "90-day exponential" in text
    assert "minus 5 %" in text and "Fees 1.5 bp" in text and "market impact 0 bp" in text
    assert "15 symbol(s)" in text and "S11 and 3 more" in text
    assert "No stops" not in text and "No filters" not in text
    bare = "\n".join(rule_lines(StrategySpec("ma_cross"), COSTS, []))
    assert "No filters" in bare and "No stops" in bare and "Every symbol in the bars given" in bare

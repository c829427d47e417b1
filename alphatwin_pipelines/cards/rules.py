"""The rules of a strategy in plain language, generated from its spec (deterministic).

One sentence per rule, grouped as the card shows them: entry, exit, filters, stops, sizing,
costs, universe and rebalance. The wording follows the definitions in
:mod:`alphatwin_pipelines.strategies.families` (family rules), :mod:`...strategies.filters`
(filters, stops, state machine) and :mod:`alphatwin_pipelines.backtest` (fills and costs).
"""

from __future__ import annotations

from typing import Any

from alphatwin_pipelines.strategies.spec import BOOK_FAMILIES, VOL_RANK_WINDOW, StrategySpec

SECTIONS = ("entry", "exit", "filters", "stops", "sizing", "costs", "universe", "rebalance")


def _num(x: float) -> str:
    """A parameter as a person would write it: 2 not 2.0, 0.125 not 0.12500000001."""
    return f"{x:g}" if isinstance(x, float) else str(x)


def _pct(x: float) -> str:
    return f"{100 * x:.4g} %"


def family_rules(spec: StrategySpec) -> tuple[str, str]:
    """(entry, exit) of the bare family, decided at a session's close."""
    p = spec.params
    if spec.family == "ma_cross":
        ma = "exponential" if p["ma_type"] == "ema" else "simple"
        return (f"Buy when the {p['fast']}-day {ma} moving average of the close crosses above the "
                f"{p['slow']}-day {ma} moving average (it was at or below it on the previous bar).",
                f"Sell when the {p['fast']}-day {ma} moving average is below the {p['slow']}-day one.")
    if spec.family == "rsi_reversion":
        return (f"Buy when the {p['period']}-day RSI (Wilder) crosses below {_num(p['lower'])} "
                "(the stock looks oversold).",
                f"Sell when the {p['period']}-day RSI rises above {_num(p['upper'])}.")
    if spec.family == "bollinger_reversion":
        return (f"Buy when the close crosses below the lower Bollinger band: the {p['period']}-day "
                f"moving average minus {_num(p['n_std'])} standard deviations of the close.",
                f"Sell when the close is back at or above the {p['period']}-day moving average (the middle band).")
    if spec.family == "ts_momentum":
        return (f"Buy when the {p['lookback']}-day return crosses above {_pct(p['threshold'])}.",
                f"Sell when the {p['lookback']}-day return falls below {_pct(-p['threshold'])}.")
    if spec.family == "donchian_breakout":
        return (f"Buy when the close is above the highest high of the previous {p['entry_window']} bars.",
                f"Sell when the close is below the lowest low of the previous {p['exit_window']} bars.")
    if spec.family == "adx_trend":
        return (f"Buy when the {p['period']}-day +DI is above the -DI and the ADX is above {_num(p['adx_min'])}, "
                "both for the first time since the previous bar (an up-trend that is strong).",
                f"Sell when the {p['period']}-day +DI falls below the -DI.")
    if spec.family == "volume_momentum":
        return (f"Buy when the {p['lookback']}-day return is positive and the 5-day average volume is more than "
                f"{_num(p['volume_ratio'])} times its {p['volume_window']}-day average, both for the first time "
                "since the previous bar.",
                f"Sell when the {p['lookback']}-day return turns negative.")
    if spec.family in ("xs_momentum", "xs_reversal", "ml_rank"):
        what = (f"the return from {p['lookback']} to {p['skip']} sessions ago" if spec.family == "xs_momentum"
                else f"minus the {p['lookback']}-day return (last period's losers first)" if spec.family == "xs_reversal"
                else f"the alpha model's score of their {p['horizon']}-session forward return (alpha_predictions of "
                     "that session, made by the model version current then)")
        legs = (f"buy the top {p['top_k']} in equal weight" if p["mode"] == "long_only" else
                f"buy the top {p['top_k']} with half the equity and short the bottom {p['top_k']} with the other "
                "half (dollar-neutral)")
        return (f"Every {p['rebalance']} sessions, rank the symbols on {what}; {legs}.",
                "At each rebalance, close every position that is no longer selected.")
    if spec.family == "pairs":
        return (f"For each pair, regress the log price of the first symbol on the second over {p['z_window']} "
                f"sessions; short the spread when its z-score is above {_num(p['entry_z'])}, buy it when below "
                f"-{_num(p['entry_z'])} (legs weighted 1 : -hedge ratio, fixed at the entry).",
                f"Close the pair when |z| is below {_num(p['exit_z'])}, after {p['hold_limit']} sessions, or when it "
                f"has lost {_pct(p['pair_stop'])} of its gross value since the fill.")
    raise ValueError(f"unknown family {spec.family!r}")


def rule_sections(spec: StrategySpec, costs: dict[str, Any], symbols: list[str]) -> dict[str, list[str]]:
    """Every rule of ``spec`` as sentences, by section (:data:`SECTIONS`); ``costs`` as recorded
    by the validation (fees_bps, slippage_bps, impact_k_bps, adv_window)."""
    p, feats = spec.params, set(spec.features)
    entry, exit_ = family_rules(spec)
    out: dict[str, list[str]] = {name: [] for name in SECTIONS}
    out["entry"].append(entry)
    out["exit"].append(exit_)
    if "trend_exit" in feats:
        out["exit"].append(f"Also sell when the close falls below its {p['trend_window']}-day moving average.")
    if "regime_exit" in feats:
        out["exit"].append(f"Also sell when the market regime turns off (the equal-weight index of the symbols "
                           f"closes at or below its {p['index_window']}-day moving average).")
    out["exit"].append("A buy and a sell signal on the same close cancel each other.")
    if "trend_filter" in feats:
        out["filters"].append(f"Only buy while the close is above its {p['trend_window']}-day moving average.")
    if "vol_filter" in feats:
        out["filters"].append(f"Only buy while the {p['vol_window']}-day realised volatility ranks within the lowest "
                              f"{_pct(p['vol_pct'])} of its last {VOL_RANK_WINDOW} values (today included).")
    if "breadth_regime" in feats:
        out["filters"].append(f"Only buy while at least {_pct(p['breadth_min'])} of the symbols close above their "
                              f"{p['breadth_window']}-day moving average.")
    if "index_regime" in feats:
        out["filters"].append(f"Only buy while the equal-weight index of the symbols closes above its "
                              f"{p['index_window']}-day moving average.")
    if not out["filters"]:
        out["filters"].append("No filters: every entry signal is taken.")
    base = "the entry fill price (the open after the entry signal)"
    if "stop_loss" in feats:
        out["stops"].append(f"Stop loss: sell after a close at or below {base} minus {_pct(p['stop_loss'])}.")
    if "take_profit" in feats:
        out["stops"].append(f"Take profit: sell after a close at or above {base} plus {_pct(p['take_profit'])}.")
    if "trailing_stop" in feats:
        out["stops"].append(f"Trailing stop: sell after a close {_pct(p['trail_stop'])} or more below the highest "
                            "close (or the fill price) since the entry fill.")
    if "time_stop" in feats:
        out["stops"].append(f"Time stop: sell after {p['max_hold']} closes in the position (the fill day counts).")
    if out["stops"]:
        out["stops"].append("Stops are checked on closes, not intraday; the sale fills at the next open.")
    else:
        out["stops"].append("No stops: a position is closed only by the exit rule.")
    if "vol_sizing" in feats:
        out["sizing"].append(f"Volatility targeting: each entry commits min(1, {_pct(p['target_vol'])} / "
                             f"{p['sizing_window']}-day realised volatility) of the symbol's account; no entry "
                             "while that volatility is unknown.")
    else:
        out["sizing"].append("Each entry commits the whole of the symbol's account (long only, no leverage).")
    out["costs"].append(f"Fees {_num(float(costs['fees_bps']))} bp of traded value on every buy and sell.")
    out["costs"].append(f"Slippage {_num(float(costs['slippage_bps']))} bp plus market impact "
                        f"{_num(float(costs['impact_k_bps']))} bp x sqrt(order value / average daily dollar volume "
                        f"of the last {int(costs['adv_window'])} bars), against the order.")
    shown = ", ".join(symbols[:12]) + (f" and {len(symbols) - 12} more" if len(symbols) > 12 else "")
    out["universe"].append(f"{len(symbols)} symbol(s), each traded as its own account: {shown}." if symbols
                           else "Every symbol in the bars given, each traded as its own account.")
    out["rebalance"].append("Signals are decided at each daily close and fill at the next session's open.")
    if spec.family in BOOK_FAMILIES:
        _book_sections(spec, costs, symbols, out)
    else:
        out["rebalance"].append("The strategy's book holds the symbols in equal weight, rebalanced daily.")
    return out


def _book_sections(spec: StrategySpec, costs: dict[str, Any], symbols: list[str], out: dict[str, list[str]]) -> None:
    """A book family is one account across its symbols, long and short (strategies.books)."""
    out["stops"].insert(0, "In this book 'buy' opens a position (long or short) and 'sell' closes it; stops are "
                           "measured on the position's return since its fill.")
    out["sizing"] = [("Each position takes its target fraction of the one account's equity, re-set at every "
                      "rebalance.") + (" Volatility targeting scales a new position by min(1, target / realised "
                                       "volatility)." if "vol_sizing" in spec.features else "")]
    out["costs"].append(f"Shorts pay {_num(float(costs.get('borrow_bps', 50.0)))} bp a year of their value to borrow "
                        "the shares, charged every close.")
    pairs = "; ".join(f"{a}/{b}" for a, b in spec.pairs)
    out["universe"] = [f"One account over {len(symbols)} symbol(s)" + (f", pairs {pairs}." if pairs else ".")]


def rule_lines(spec: StrategySpec, costs: dict[str, Any], symbols: list[str]) -> list[str]:
    """:func:`rule_sections` flattened as ``"Section: sentence"`` lines."""
    return [f"{name.capitalize()}: {line}" for name, lines in rule_sections(spec, costs, symbols).items()
            for line in lines]

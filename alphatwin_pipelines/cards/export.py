"""Code export from Jinja2 templates: one file per target, for one strategy.

Targets (:data:`TARGETS`): ``python`` (standalone backtest script, pandas + NumPy),
``pine`` (TradingView Pine Script v5 ``strategy()``) and ``alpaca`` (today's target orders
with alpaca-py, paper endpoint only). Every failure is an :class:`ExportError` that names the
strategy and the target; the caller decides whether the other targets and cards go on.
"""

from __future__ import annotations

import json
import pprint
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from alphatwin_pipelines.cards.rules import rule_lines
from alphatwin_pipelines.strategies.spec import ALL_FAMILIES, StrategySpec, search_space

TEMPLATES = Path(__file__).with_name("templates")
DEFAULT_COSTS = {"fees_bps": 5.0, "slippage_bps": 5.0, "impact_k_bps": 100.0, "adv_window": 20,
                 "impact_notional": None}
#: target -> (file name, template)
TARGETS: dict[str, tuple[str, str]] = {
    "python": ("strategy.py", "strategy.py.j2"),
    "pine": ("strategy.pine", "strategy.pine.j2"),
    "alpaca": ("alpaca_orders.py", "alpaca_orders.py.j2"),
}
#: Features a single TradingView chart cannot compute: they need every symbol of the shortlist.
PINE_CROSS_SECTIONAL = {"breadth_regime", "index_regime", "regime_exit"}
#: Families each target can express: the five original single-symbol families. ADX, volume
#: momentum and the book families (cross-sectional, pairs) are not exported yet (cards say so).
EXPORTABLE_FAMILIES = ("ma_cross", "rsi_reversion", "bollinger_reversion", "ts_momentum", "donchian_breakout")
TARGET_FAMILIES = {target: EXPORTABLE_FAMILIES for target in TARGETS}


class ExportError(ValueError):
    """A strategy cannot be exported to a target; the message names both. ``unsupported`` is True
    when the spec is valid but the target cannot express it (a known limit, not a bad spec)."""

    def __init__(self, strategy_id: str, target: str, reason: str, unsupported: bool = False):
        self.strategy_id, self.target, self.reason, self.unsupported = strategy_id, target, reason, unsupported
        super().__init__(f"strategy {strategy_id}, target {target}: {reason}")


@dataclass(frozen=True)
class Export:
    target: str
    filename: str
    text: str


@lru_cache(maxsize=1)
def _environment():
    import jinja2  # lazy: only card building renders templates

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    return env


def parse_spec(strategy_id: str, spec_json: str, target: str) -> StrategySpec:
    """The spec, or an ExportError naming the strategy and target when it is not a valid spec."""
    try:
        data = json.loads(spec_json)
        family = data.get("family") if isinstance(data, dict) else None
    except (TypeError, ValueError) as exc:
        raise ExportError(strategy_id, target, f"spec_json is not JSON ({exc})") from exc
    families = TARGET_FAMILIES.get(target, EXPORTABLE_FAMILIES)
    if family not in families:
        raise ExportError(strategy_id, target, f"not exportable to {target} for the family {family!r}; "
                                               f"{target} expresses {list(families)}", unsupported=family in ALL_FAMILIES)
    try:
        return StrategySpec.from_json(spec_json)
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(strategy_id, target, f"invalid spec ({exc})") from exc


def _check_target(strategy_id: str, spec: StrategySpec, target: str) -> None:
    if target not in TARGETS:
        raise ExportError(strategy_id, target, f"unknown target; known: {list(TARGETS)}")
    if target != "pine":
        return
    cross = [f for f in spec.features if f in PINE_CROSS_SECTIONAL]
    if cross:
        raise ExportError(strategy_id, target, f"level {spec.level} uses {cross}, which need every symbol of the "
                                               "shortlist; a TradingView strategy sees one chart symbol",
                          unsupported=True)
    for name, (low, high, kind) in search_space(spec.family, spec.level).items():
        value = spec.params[name]
        if kind != "categorical" and not low <= value <= high:
            raise ExportError(strategy_id, target, f"parameter {name}={value} is outside the input range "
                                                   f"[{low}, {high}] the script exposes", unsupported=True)


def _py(value: dict) -> str:
    return pprint.pformat(dict(value), sort_dicts=True, width=100)


def context(strategy_id: str, spec: StrategySpec, costs: dict[str, Any], symbols: list[str],
            init_cash: float) -> dict[str, Any]:
    costs = {**DEFAULT_COSTS, **(costs or {})}
    feats = list(spec.features)
    return {
        "strategy_id": strategy_id, "spec_hash": spec.spec_hash(), "family": spec.family, "level": spec.level,
        "params": dict(spec.params), "params_py": _py(spec.params), "features": feats,
        "stops": any(f in feats for f in ("stop_loss", "take_profit", "trailing_stop", "time_stop")),
        "costs": costs, "costs_py": _py(costs), "init_cash": float(init_cash), "symbols": list(symbols),
        "rules": rule_lines(spec, costs, list(symbols)),
        "title": f"AlphaTwin {spec.family} level {spec.level} ({', '.join(feats) or 'bare family'})",
        "search_space": search_space(spec.family, spec.level),
    }


def export(strategy_id: str, spec_json: str, target: str, *, costs: dict[str, Any] | None = None,
           symbols: list[str] | None = None, init_cash: float = 100_000.0, limits: dict | None = None) -> Export:
    """Render one target's file for one strategy (raises :class:`ExportError`)."""
    if target not in TARGETS:
        raise ExportError(strategy_id, target, f"unknown target; known: {list(TARGETS)}")
    spec = parse_spec(strategy_id, spec_json, target)
    _check_target(strategy_id, spec, target)
    filename, template = TARGETS[target]
    ctx = context(strategy_id, spec, costs or {}, symbols or [], init_cash)
    ctx["filename"] = filename
    if target == "alpaca":
        from alphatwin_pipelines.execution.safeguards import Limits

        ctx["limits_py"] = _py(limits or Limits().as_dict())
    text = _environment().get_template(template).render(**ctx)
    if target == "pine":
        from alphatwin_pipelines.cards.pine_check import check_pine

        problems = check_pine(text)
        if problems:  # a template bug, not a bad spec: say so plainly
            raise ExportError(strategy_id, target, f"generated script fails the structural check: {problems}")
    return Export(target, filename, text)

"""Strategy specifications: family + parameters + complexity level, serialisable and hashable.

Complexity levels are cumulative: level ``k`` has every feature of level ``k - 1`` plus one.
The same ladder applies to every family (level 0 is the bare family):

| level | feature        | adds (cumulative)                                                  | parameters (default)                  |
|-------|----------------|--------------------------------------------------------------------|---------------------------------------|
| 0     | bare family    | the family's own entries/exits, fully invested                     | family parameters                     |
| 1     | trend_filter   | entries only while close > SMA(trend_window)                       | trend_window (200)                    |
| 2     | vol_filter     | entries only while realised vol (vol_window) ranks <= vol_pct over  | vol_window (20), vol_pct (0.8)        |
|       |                | the last VOL_RANK_WINDOW (252) sessions                            |                                       |
| 3     | stop_loss      | exit at a close <= entry fill * (1 - stop_loss)                    | stop_loss (0.08)                      |
| 4     | take_profit    | exit at a close >= entry fill * (1 + take_profit)                  | take_profit (0.20)                    |
| 5     | vol_sizing     | commit min(1, target_vol / realised vol(sizing_window)) of equity  | target_vol (0.15), sizing_window (20) |
| 6     | breadth_regime | entries only while >= breadth_min of the symbols close above their | breadth_window (200), breadth_min (0.5)|
|       |                | SMA(breadth_window)                                                |                                       |
| 7     | index_regime   | entries only while the market's equal-weight index closes above    | index_window (200)                    |
|       |                | its SMA(index_window)                                              |                                       |
| 8     | trailing_stop  | exit at a close <= highest close since the fill * (1 - trail_stop) | trail_stop (0.12)                     |
| 9     | time_stop      | exit once the position has been held max_hold sessions             | max_hold (60)                         |
| 10    | trend_exit     | exit when close < SMA(trend_window) (the level-1 window)           | -                                     |
| 11    | regime_exit    | exit when the index regime (level 7) turns off                     | -                                     |

Stops, targets and time stops are evaluated on closes (no intraday stop orders): they are
exit *signals* at the close of t that fill like any other signal (next open by default).

Complexity score (see :func:`complexity_score`)::

    score = n_params + n_rules + 2 * n_execution + longest_lookback / 252

``n_params`` counts the spec's tunable parameters, ``n_rules`` the features above level 0,
``n_execution`` the features the execution layer must track per position (stop_loss,
take_profit, vol_sizing, trailing_stop, time_stop) and ``longest_lookback`` is the number of
sessions of history the slowest indicator needs, in years. Every level adds at least one
rule, so the score increases strictly with the level for the same family parameters.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from alphatwin_pipelines.strategies.family_params import (  # noqa: F401  (re-exported)
    ALL_FAMILIES, BOOK_FAMILIES, BOOK_PARAMS, FAMILIES, FAMILY_PARAMS,
)

#: Sessions over which the volatility filter ranks today's realised volatility.
VOL_RANK_WINDOW = 252
SPEC_VERSION = 1

#: The level ladder: (feature, {param: (default, low, high, type)}, description).
LEVELS: tuple[tuple[str, dict[str, tuple], str], ...] = (
    ("trend_filter", {"trend_window": (200, 100, 300, "int")}, "entries only while close > SMA(trend_window)"),
    ("vol_filter", {"vol_window": (20, 10, 60, "int"), "vol_pct": (0.8, 0.5, 0.95, "float")},
     "entries only while realised vol ranks at or below vol_pct over the last 252 sessions"),
    ("stop_loss", {"stop_loss": (0.08, 0.02, 0.25, "float")}, "exit when close <= entry fill * (1 - stop_loss)"),
    ("take_profit", {"take_profit": (0.20, 0.05, 0.5, "float")}, "exit when close >= entry fill * (1 + take_profit)"),
    ("vol_sizing", {"target_vol": (0.15, 0.05, 0.4, "float"), "sizing_window": (20, 10, 60, "int")},
     "commit min(1, target_vol / realised vol) of equity per entry"),
    ("breadth_regime", {"breadth_window": (200, 50, 250, "int"), "breadth_min": (0.5, 0.3, 0.7, "float")},
     "entries only while >= breadth_min of symbols close above SMA(breadth_window)"),
    ("index_regime", {"index_window": (200, 50, 250, "int")},
     "entries only while the equal-weight index closes above SMA(index_window)"),
    ("trailing_stop", {"trail_stop": (0.12, 0.05, 0.3, "float")}, "exit when close <= highest close since entry * (1 - trail_stop)"),
    ("time_stop", {"max_hold": (60, 10, 250, "int")}, "exit max_hold sessions after the entry fill"),
    ("trend_exit", {}, "exit when close < SMA(trend_window)"),
    ("regime_exit", {}, "exit when the index regime turns off"),
)
MAX_LEVEL = len(LEVELS)
EXECUTION_FEATURES = frozenset({"stop_loss", "take_profit", "vol_sizing", "trailing_stop", "time_stop"})


def level_features(level: int) -> tuple[str, ...]:
    """Features active at ``level`` (cumulative)."""
    if not 0 <= int(level) <= MAX_LEVEL:
        raise ValueError(f"level must be 0..{MAX_LEVEL}, got {level}")
    return tuple(name for name, _, _ in LEVELS[: int(level)])


def level_table() -> list[dict[str, Any]]:
    """The level ladder as rows (level, feature, adds, parameters) for docs and reports."""
    rows = [{"level": 0, "feature": "(bare family)", "adds": "family entries/exits, fully invested",
             "parameters": "family parameters"}]
    for i, (name, params, text) in enumerate(LEVELS, start=1):
        rows.append({"level": i, "feature": name, "adds": text,
                     "parameters": ", ".join(f"{k}={v[0]}" for k, v in params.items()) or "-"})
    return rows


def _param_table(family: str, level: int) -> dict[str, tuple]:
    if family not in FAMILY_PARAMS and family not in BOOK_PARAMS:
        raise ValueError(f"unknown family {family!r}; known: {list(ALL_FAMILIES)}")
    table = dict(FAMILY_PARAMS.get(family) or BOOK_PARAMS[family])
    for _, params, _ in LEVELS[: int(level)]:
        table.update(params)
    return table


def default_params(family: str, level: int = 0) -> dict[str, Any]:
    level_features(level)
    return {k: v[0] for k, v in _param_table(family, level).items()}


def search_space(family: str, level: int = 0) -> dict[str, tuple]:
    """Optuna-friendly ranges: name -> ``(low, high, "int" | "float")`` or
    ``(choices, None, "categorical")``. Ranges of paired windows are disjoint (fast < slow
    always holds), so any sample is a valid spec. Does not import optuna."""
    level_features(level)
    return {k: tuple(v[1:]) for k, v in _param_table(family, level).items()}


def suggest_params(trial, family: str, level: int = 0) -> dict[str, Any]:
    """Draw parameters from an Optuna-like ``trial`` (``suggest_int/float/categorical``)."""
    out = {}
    for name, (low, high, kind) in search_space(family, level).items():
        if kind == "int":
            out[name] = trial.suggest_int(name, low, high)
        elif kind == "float":
            out[name] = trial.suggest_float(name, low, high)
        else:
            out[name] = trial.suggest_categorical(name, list(low))
    return out


def _coerce(name: str, value, spec: tuple) -> Any:
    kind = spec[3]
    if kind == "categorical":
        if value not in spec[1] or isinstance(value, bool):
            raise ValueError(f"{name} must be one of {spec[1]}, got {value!r}")
        return value if isinstance(spec[0], int) else str(value)  # ml_rank's horizon stays an int
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if kind == "int":
        if float(value) != int(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def _validate(family: str, p: dict[str, Any]) -> None:
    windows = [k for k in p if k in ("fast", "slow", "period", "lookback", "entry_window", "exit_window",
                                     "trend_window", "vol_window", "sizing_window", "breadth_window",
                                     "index_window", "volume_window", "z_window")]
    for k in windows:
        least = 1 if k == "lookback" else 2
        if p[k] < least:
            raise ValueError(f"{k} must be a window of at least {least} sessions, got {p[k]}")
    if family == "ma_cross" and not p["fast"] < p["slow"]:
        raise ValueError(f"fast ({p['fast']}) must be below slow ({p['slow']})")
    if family == "rsi_reversion" and not 0 < p["lower"] < p["upper"] < 100:
        raise ValueError("rsi thresholds need 0 < lower < upper < 100")
    for k in ("n_std", "target_vol", "stop_loss", "take_profit", "trail_stop"):
        if k in p and not p[k] > 0:
            raise ValueError(f"{k} must be positive")
    for k in ("stop_loss", "trail_stop", "vol_pct", "breadth_min"):
        if k in p and not 0 < p[k] <= 1:
            raise ValueError(f"{k} must be in (0, 1]")
    if "max_hold" in p and p["max_hold"] < 1:
        raise ValueError("max_hold must be at least 1 session")
    for k in ("top_k", "rebalance", "hold_limit"):
        if k in p and p[k] < 1:
            raise ValueError(f"{k} must be at least 1, got {p[k]}")
    if "skip" in p and not 0 <= p["skip"] < p["lookback"]:
        raise ValueError(f"skip ({p['skip']}) must be in [0, lookback ({p['lookback']}))")
    if family == "pairs" and not 0 <= p["exit_z"] < p["entry_z"]:
        raise ValueError(f"pairs need 0 <= exit_z ({p['exit_z']}) < entry_z ({p['entry_z']})")
    if "pair_stop" in p and not 0 < p["pair_stop"] <= 1:
        raise ValueError("pair_stop must be in (0, 1]")


@dataclass(frozen=True)
class StrategySpec:
    """A family, its parameters (defaults filled in for every feature of ``level``) and a level.

    ``params`` is stored as a read-only mapping with every parameter of the level (missing ones
    take their defaults, ints and floats coerced to the declared type), so two specs that run
    the same strategy have the same JSON and the same :meth:`spec_hash`. ``pairs`` (the pairs
    family only) lists the traded ``(symbol_a, symbol_b)`` pairs; it is part of the JSON and hash.
    """

    family: str
    params: Mapping[str, Any] = field(default_factory=dict)
    level: int = 0
    pairs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        features = level_features(self.level)
        table = _param_table(self.family, self.level)
        unknown = sorted(set(self.params) - set(table))
        if unknown:
            raise ValueError(f"unknown parameters {unknown} for {self.family} at level {self.level} "
                             f"(features {list(features)}); known: {sorted(table)}")
        merged = {k: _coerce(k, self.params.get(k, v[0]), v) for k, v in table.items()}
        _validate(self.family, merged)
        object.__setattr__(self, "level", int(self.level))
        object.__setattr__(self, "params", MappingProxyType(dict(sorted(merged.items()))))
        pairs = tuple((str(a), str(b)) for a, b in self.pairs)
        if (self.family == "pairs") != bool(pairs) or any(a == b for a, b in pairs):
            raise ValueError(f"{self.family}: the pairs family needs at least one (symbol_a, symbol_b) pair of two "
                             f"different symbols and other families none; got {list(pairs)}")
        object.__setattr__(self, "pairs", pairs)

    def __hash__(self) -> int:
        return hash(self.spec_hash())

    @property
    def features(self) -> tuple[str, ...]:
        return level_features(self.level)

    def to_dict(self) -> dict[str, Any]:
        out = {"family": self.family, "level": self.level, "params": dict(self.params), "version": SPEC_VERSION}
        if self.pairs:  # only the pairs family: other specs keep their JSON and hash
            out["pairs"] = [list(p) for p in self.pairs]
        return out

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces; the same spec always gives the same text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "StrategySpec":
        data = json.loads(text)
        if data.get("version", SPEC_VERSION) != SPEC_VERSION:
            raise ValueError(f"unsupported spec version {data.get('version')}")
        return cls(family=data["family"], params=data.get("params", {}), level=data.get("level", 0),
                   pairs=tuple(tuple(p) for p in data.get("pairs", ())))

    def spec_hash(self) -> str:
        """sha256 hex digest of :meth:`to_json`."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def with_params(self, **params) -> "StrategySpec":
        return StrategySpec(self.family, {**self.params, **params}, self.level, self.pairs)


def family_lookback(family: str, p: dict[str, Any]) -> int:
    """Sessions of a symbol's history the family's indicators need before the first signal."""
    if family == "ma_cross":
        return int(p["slow"]) + 1  # a cross compares t with t - 1
    if family == "rsi_reversion":
        return int(p["period"]) + 2
    if family == "bollinger_reversion":
        return int(p["period"]) + 1
    if family in ("ts_momentum", "xs_reversal"):
        return int(p["lookback"]) + 2
    if family == "adx_trend":
        return 2 * int(p["period"]) + 1  # TA-Lib's ADX needs 2 * period - 1 bars, a cross one more
    if family == "volume_momentum":
        return max(int(p["lookback"]) + 1, int(p["volume_window"])) + 1
    if family == "xs_momentum":
        return int(p["lookback"]) + 1
    if family == "ml_rank":
        return 1  # the score is decided at the close it ranks (its features' lookbacks lie upstream)
    if family == "pairs":
        return int(p["z_window"]) * 2  # a hedge ratio over z_window returns, then a z-score of the spread
    return max(int(p["entry_window"]), int(p["exit_window"])) + 1


def longest_lookback(spec: StrategySpec) -> int:
    p = spec.params
    looks = [family_lookback(spec.family, p)]
    for k in ("trend_window", "breadth_window", "index_window"):
        if k in p:
            looks.append(int(p[k]))
    if "vol_window" in p:
        looks.append(int(p["vol_window"]) + VOL_RANK_WINDOW)
    if "sizing_window" in p:
        looks.append(int(p["sizing_window"]) + 1)
    return max(looks)


def holding_horizon(spec: StrategySpec) -> int:
    """Sessions a position of ``spec`` is taken to stay open, from its parameters alone.

    With a time stop (level 9+) no position outlives ``max_hold`` sessions. Without one nothing
    bounds a holding, so the horizon is the family's signal window (:func:`family_lookback`):
    its exit is decided from that many sessions of prices, and a position typically lasts about
    that long. Walk-forward validation purges ``longest_lookback + holding_horizon`` sessions
    between a train and a test window.
    """
    if "max_hold" in spec.params:
        return int(spec.params["max_hold"])
    return family_lookback(spec.family, spec.params)


def complexity_breakdown(spec: StrategySpec) -> dict[str, float]:
    feats = spec.features
    return {
        "n_params": float(len(spec.params)),
        "n_rules": float(len(feats)),
        "n_execution": float(sum(f in EXECUTION_FEATURES for f in feats)),
        "lookback_years": longest_lookback(spec) / 252.0,
    }


def complexity_score(spec: StrategySpec) -> float:
    """``n_params + n_rules + 2 * n_execution + longest_lookback / 252`` (module docstring)."""
    b = complexity_breakdown(spec)
    return b["n_params"] + b["n_rules"] + 2.0 * b["n_execution"] + b["lookback_years"]


def all_level_specs(family: str, pairs=()) -> list[StrategySpec]:
    """One default spec per level of ``family``."""
    return [StrategySpec(family, {}, level, tuple(pairs)) for level in range(MAX_LEVEL + 1)]


def expand_grid(param_grid) -> list[dict[str, Any]]:
    """A list of parameter dicts from ``{name: [values]}`` (cartesian product) or a list of dicts."""
    if isinstance(param_grid, dict):
        names = list(param_grid)
        values = [v if isinstance(v, (list, tuple)) else [v] for v in param_grid.values()]
        return [dict(zip(names, combo)) for combo in itertools.product(*values)]
    return [dict(p) for p in param_grid]

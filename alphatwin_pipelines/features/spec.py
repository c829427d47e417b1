"""The feature catalogue: every output column of ``compute_features`` is declared here, once.

A :class:`FeatureSpec` names a column, the kernel that computes it (``indicators`` for the
per-symbol families, ``normalise`` for the scaled columns), the kernel's parameters, the
column's *lookback* and its *unit*.

Lookback is the number of the symbol's own rows, the row at ``t`` included, that the value at
``t`` depends on. Finite-window indicators (SMA, WMA, Bollinger, Donchian, ...) depend on
exactly that many rows. Recursive ones (EMA, MACD, Wilder's RSI/ATR/ADX) depend on all of
history in principle; the influence of a seed ``k`` steps back decays like ``q**k``
(``q = 1 - 2/(n+1)`` for an EMA, ``1 - 1/n`` for Wilder's smoothing), so their lookback is
the seed length plus the steps needed for ``q**k <= WARMUP_DECAY``. With ``1e-7`` the value
computed from ``lookback`` rows differs from the full-history value by less than 1e-7 times
the seed's error, i.e. < 1e-6 relative even if the seed were off by 10x. A warm-up of
"3-4 periods" is not enough for that: it leaves ``exp(-6..-8)`` ~ 1e-3 of the seed. The
price is long warm-ups for slow EMAs, which is why the EMA family stops at 50 sessions.

Unit drives point-in-time rescaling (see ``compute``): ``price`` columns are in dollars
(per share) as of ``t``, ``volume`` columns in shares as of ``t``; ``ratio`` (scale-free) and
``count`` (plain numbers) columns are never rescaled, and neither is any ``basis="raw"``
column, which is computed from the unadjusted prices and volumes in the first place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

from alphatwin_pipelines.features import indicators as ind
from alphatwin_pipelines.features import normalise as nrm

Unit = Literal["price", "volume", "ratio", "count"]
Basis = Literal["adjusted", "raw"]

#: Weight left on a recursive indicator's seed after its lookback (see module docstring).
WARMUP_DECAY = 1e-7
#: Window of the per-symbol time-series z-score.
TS_WINDOW = 252
#: Base features that get the normalised columns, and the normalisations applied.
NORMALISED: tuple[str, ...] = ("ret_1d", "ret_5d", "ret_20d", "vol_20", "vol_60", "rsi_14", "bb_pctb")
NORMALISATIONS: tuple[str, ...] = ("cs_z", "cs_minmax", "cs_robust", "cs_rank", "ts_z")


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    function: Callable[..., Any]
    parameters: tuple[tuple[str, Any], ...]
    lookback: int
    unit: Unit
    description: str
    output: str | None = None  # which output of a multi-output kernel
    basis: Basis = "adjusted"  # "raw": computed from unadjusted columns, never rescaled
    of: str | None = None  # for normalised columns: the base feature

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.parameters)

    @property
    def parameter_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.parameters) or "-"


def _steps(keep: float) -> int:
    """Steps until a recursive filter with per-step retention ``keep`` forgets its seed."""
    return math.ceil(math.log(WARMUP_DECAY) / math.log(keep))


def ema_lookback(n: int) -> int:
    return n + _steps(1 - 2 / (n + 1))


def wilder_lookback(n: int) -> int:
    # TA-Lib seeds with the mean of the first n one-step quantities (which need n + 1 rows).
    return n + 1 + _steps(1 - 1 / n)


def _macd_lookback(fast: int, slow: int, signal: int) -> int:
    # talib's first MACD value needs slow + signal - 1 rows; the slow EMA then the signal EMA forget their seeds.
    return slow + signal - 1 + _steps(1 - 2 / (slow + 1)) + _steps(1 - 2 / (signal + 1))


def _adx_lookback(n: int) -> int:
    # Two cascaded Wilder smoothings (DM/TR, then DX): a double pole decays like k * q**k.
    return 2 * n + _steps(1 - 1 / n) + _steps(1 - 1 / n) // 2


def _spec(name, function, lookback, unit, description, output=None, basis="adjusted", **params) -> FeatureSpec:
    return FeatureSpec(name, function, tuple(params.items()), lookback, unit, description, output, basis)


def _base_features() -> list[FeatureSpec]:
    out: list[FeatureSpec] = []
    add = out.append
    asof = "(dollars as of t)"
    for k in (1, 5, 20):
        add(_spec(f"ret_{k}d", ind.simple_return, k + 1, "ratio",
                  f"{k}-session arithmetic return of the adjusted close", period=k))
    for k in (1, 5, 20):
        add(_spec(f"logret_{k}d", ind.log_return, k + 1, "ratio",
                  f"{k}-session log return of the adjusted close", period=k))
    for n in (20, 60):
        add(_spec(f"vol_{n}", ind.realised_vol, n + 1, "ratio",
                  f"annualised sample std (ddof=1, x sqrt 252) of {n} daily log returns", period=n))
    add(_spec("parkinson_vol_20", ind.parkinson_vol, 20, "ratio",
              "annualised Parkinson volatility: sqrt(mean(ln(H/L)^2) / (4 ln 2) x 252)", period=20))
    add(_spec("obv_20", ind.obv_window, 21, "volume",
              "on-balance volume over 20 sessions: sum of sign(close change) x volume (shares as of t)", period=20))
    add(_spec("vwap_20", ind.vwap, 20, "price",
              f"rolling VWAP: sum(typical price x volume) / sum(volume) over 20 sessions {asof}", period=20))
    add(_spec("volume_roc_10", ind.volume_roc, 11, "ratio",
              "volume rate of change over 10 sessions, as a fraction (NaN when the base volume is 0)", period=10))
    # No 200-session EMA: at this warm-up it alone would need ~1,800 sessions of history for
    # every daily increment; SMA and WMA cover the 200-session horizon exactly.
    averages = (("sma", ind.sma, lambda n: n, (10, 20, 50, 200)), ("ema", ind.ema, ema_lookback, (10, 20, 50)),
                ("wma", ind.wma, lambda n: n, (10, 20, 50, 200)))
    for kind, fn, look, windows in averages:
        for n in windows:
            add(_spec(f"{kind}_{n}", fn, look(n), "price",
                      f"{kind.upper()} of the close, {n} sessions {asof}", timeperiod=n))
    add(_spec("rsi_14", ind.rsi, wilder_lookback(14), "ratio", "Wilder RSI, 0-100", timeperiod=14))
    macd = {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9}
    for name, output, text in (("macd", "macd", "MACD line: EMA12 - EMA26 of the close"),
                               ("macd_signal", "signal", "MACD signal: EMA9 of the MACD line"),
                               ("macd_hist", "hist", "MACD histogram: line - signal")):
        add(_spec(name, ind.macd, _macd_lookback(12, 26, 9), "price", f"{text} {asof}", output=output, **macd))
    stoch = {"fastk_period": 14, "slowk_period": 3, "slowd_period": 3}
    add(_spec("stoch_k", ind.stochastic, 18, "ratio", "slow stochastic %K (SMA3 of fast %K14), 0-100",
              output="k", **stoch))
    add(_spec("stoch_d", ind.stochastic, 18, "ratio", "slow stochastic %D (SMA3 of %K), 0-100", output="d", **stoch))
    bb = {"timeperiod": 20, "nbdev": 2.0}
    for name, output, unit, text in (
        ("bb_upper", "upper", "price", f"Bollinger upper band: SMA20 + 2 population std {asof}"),
        ("bb_mid", "mid", "price", f"Bollinger middle band: SMA20 {asof}"),
        ("bb_lower", "lower", "price", f"Bollinger lower band: SMA20 - 2 population std {asof}"),
        ("bb_pctb", "pctb", "ratio", "Bollinger %B: (close - lower) / (upper - lower)"),
        ("bb_bandwidth", "bandwidth", "ratio", "Bollinger bandwidth: (upper - lower) / middle"),
    ):
        add(_spec(name, ind.bollinger, 20, unit, text, output=output, **bb))
    add(_spec("atr_14", ind.atr, wilder_lookback(14), "price", f"Wilder average true range {asof}", timeperiod=14))
    add(_spec("adx_14", ind.adx, _adx_lookback(14), "ratio",
              "Wilder ADX, 0-100 (equal up/down moves count as no direction)", timeperiod=14))
    add(_spec("donchian_high_20", ind.donchian, 20, "price",
              f"highest high of the 20 sessions ending at t, t included {asof}", output="high", period=20))
    add(_spec("donchian_low_20", ind.donchian, 20, "price",
              f"lowest low of the 20 sessions ending at t, t included {asof}", output="low", period=20))
    add(_spec("dollar_volume_20", ind.dollar_volume, 20, "price",
              "mean raw close x raw volume over 20 sessions: dollars traded per day as traders saw it",
              basis="raw", period=20))
    add(_spec("price", ind.last_price, 1, "price", "raw (as traded) close at t", basis="raw"))
    return out


_NORMALISERS = {
    "cs_z": (nrm.cs_zscore, "cross-sectional z-score per session: (x - mean) / std (ddof=0)"),
    "cs_minmax": (nrm.cs_minmax, "cross-sectional min-max per session: (x - min) / (max - min), in [0, 1]"),
    "cs_robust": (nrm.cs_robust, "cross-sectional robust scale per session: (x - median) / IQR"),
    "cs_rank": (nrm.cs_rank, "cross-sectional percentile rank per session, (0, 1], ties averaged"),
    "ts_z": (nrm.ts_zscore, f"time-series z-score per symbol over the last {TS_WINDOW} values, t included (ddof=0)"),
}


def _normalised(base: dict[str, FeatureSpec]) -> list[FeatureSpec]:
    out = []
    for name in NORMALISED:
        spec = base[name]
        if spec.unit != "ratio":
            raise ValueError(f"only scale-free features can be normalised; {name} is {spec.unit}")
        for method in NORMALISATIONS:
            fn, text = _NORMALISERS[method]
            params: tuple[tuple[str, Any], ...] = (("of", name),)
            lookback = spec.lookback
            if method == "ts_z":
                params += (("window", TS_WINDOW),)
                lookback += TS_WINDOW - 1
            out.append(FeatureSpec(f"{name}_{method}", fn, params, lookback, "ratio", f"`{name}`: {text}", of=name))
    return out


def _build() -> tuple[FeatureSpec, ...]:
    base = _base_features()
    specs = base + _normalised({s.name: s for s in base})
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("duplicate feature names")
    return tuple(specs)


#: Every output column of ``compute_features`` (besides ``symbol`` and ``date``), in output order.
FEATURES: tuple[FeatureSpec, ...] = _build()


def feature_names() -> list[str]:
    return [s.name for s in FEATURES]


def get_spec(name: str) -> FeatureSpec:
    for spec in FEATURES:
        if spec.name == name:
            return spec
    raise KeyError(name)


def max_lookback() -> int:
    """Sessions of history (the current one included) that make every feature exact/converged."""
    return max(s.lookback for s in FEATURES)


def feature_table_markdown() -> str:
    """The catalogue as a Markdown table for the README: name | description | parameters | lookback."""
    lines = ["| name | description | parameters | lookback |", "|---|---|---|---|"]
    for s in FEATURES:
        lines.append(f"| `{s.name}` | {s.description} | {s.parameter_text} | {s.lookback} |")
    return "\n".join(lines) + "\n"

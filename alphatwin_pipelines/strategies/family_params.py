"""Each family's own parameters: ``name -> (default, low, high, type)``; categorical:
``(default, choices, None, "categorical")``. The level ladder's parameters live in :mod:`.spec`.

Ranges of paired parameters are disjoint (fast < slow, skip < lookback, exit_z < entry_z), so
any point of a search space is a valid spec.
"""

from __future__ import annotations

#: family -> parameter -> (default, low, high, type); categorical: (default, choices, None, "categorical").
FAMILY_PARAMS: dict[str, dict[str, tuple]] = {
    "ma_cross": {"fast": (20, 5, 45, "int"), "slow": (50, 50, 250, "int"),
                 "ma_type": ("sma", ("sma", "ema"), None, "categorical")},
    "rsi_reversion": {"period": (14, 5, 30, "int"), "lower": (30.0, 10.0, 40.0, "float"),
                      "upper": (70.0, 55.0, 90.0, "float")},
    "bollinger_reversion": {"period": (20, 10, 60, "int"), "n_std": (2.0, 1.0, 3.0, "float")},
    "ts_momentum": {"lookback": (126, 20, 252, "int"), "threshold": (0.0, 0.0, 0.2, "float")},
    "donchian_breakout": {"entry_window": (55, 20, 120, "int"), "exit_window": (20, 5, 60, "int")},
    "adx_trend": {"period": (14, 7, 30, "int"), "adx_min": (25.0, 15.0, 40.0, "float")},
    "volume_momentum": {"lookback": (20, 5, 60, "int"), "volume_window": (50, 20, 120, "int"),
                        "volume_ratio": (1.5, 1.0, 3.0, "float")},
}
#: Book families hold one account across symbols (longs and shorts): see ``strategies.books``.
_RANK = {"top_k": (5, 1, 10, "int"), "mode": ("long_short", ("long_only", "long_short"), None, "categorical")}
BOOK_PARAMS: dict[str, dict[str, tuple]] = {
    "xs_momentum": {"lookback": (126, 40, 252, "int"), "skip": (21, 0, 30, "int"), **_RANK,
                    "rebalance": (21, 5, 63, "int")},
    "xs_reversal": {"lookback": (5, 2, 20, "int"), **_RANK, "rebalance": (5, 1, 21, "int")},
    "pairs": {"z_window": (60, 20, 120, "int"), "entry_z": (2.0, 1.0, 3.0, "float"),
              "exit_z": (0.5, 0.0, 0.9, "float"), "hold_limit": (20, 5, 60, "int"),
              "pair_stop": (0.05, 0.01, 0.2, "float")},
    # ranks the alpha model's scores of ``horizon`` sessions (market.score: alpha_predictions)
    "ml_rank": {"horizon": (1, (1, 5), None, "categorical"), **_RANK, "rebalance": (5, 1, 21, "int")},
}
#: The forward-return horizons ml_rank may rank on (alpha_predictions must hold each of them).
ML_RANK_HORIZONS: tuple[int, ...] = BOOK_PARAMS["ml_rank"]["horizon"][1]
#: Single-symbol signal families: each symbol is its own long-only account (``generate``).
FAMILIES: tuple[str, ...] = tuple(FAMILY_PARAMS)
BOOK_FAMILIES: tuple[str, ...] = tuple(BOOK_PARAMS)
#: Every family the optimiser studies.
ALL_FAMILIES: tuple[str, ...] = FAMILIES + BOOK_FAMILIES

"""A small synthetic market for the card export tests: a late listing, a delisting and a halt,
so the exports meet the same gaps the engine handles."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphatwin_pipelines.strategies import MarketArrays


def gappy_bars(seed: int = 3, T: int = 900, N: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2019-01-01", periods=T)
    frames = []
    for j in range(N):
        drift = 0.0004 * np.sin(np.arange(T) / 90 + j)
        close = 50 * np.exp(np.cumsum(drift + rng.normal(0, 0.018, T)))
        open_ = close * np.exp(rng.normal(0, 0.006, T))
        keep = np.ones(T, dtype=bool)
        if j == 1:
            keep[:120] = False  # listed late
        if j == 2:
            keep[780:] = False  # delisted
        if j == 3:
            keep[400:403] = False  # halted for three sessions
        frames.append(pd.DataFrame({
            "date": dates, "symbol": f"S{j}", "open": open_,
            "high": np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, T)),
            "low": np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, T)),
            "close": close, "volume": rng.uniform(2e5, 2e6, T)})[keep])
    return pd.concat(frames, ignore_index=True)


def market_of(bars: pd.DataFrame) -> MarketArrays:
    return MarketArrays.from_bars(bars, price="raw")


def load_generated(text: str, name: str = "generated"):
    """A generated script as a module (not run as __main__)."""
    import types

    module = types.ModuleType(name)
    exec(compile(text, name, "exec"), module.__dict__)
    return module

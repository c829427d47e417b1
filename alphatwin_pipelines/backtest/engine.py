"""Vectorised backtests with vectorbt: many symbols and parameter sets in one simulation.

Orders (see :mod:`.orders`): a signal decided at the close of t fills at the OPEN of t + 1 by
default, long-only, costs on (:class:`CostModel`). Each column is an independent account with
``init_cash`` (no cash sharing), so a grid column equals the same backtest run alone.

Why ``Portfolio.from_orders`` and not ``from_signals``: vectorbt's static
``simulate_from_signals_nb`` kernel is ``@njit`` *without* ``cache=True``, so every process
recompiles it, while ``simulate_from_orders_nb`` and the record kernels are cached in
``NUMBA_CACHE_DIR``. The signal -> order step is the state machine ``from_signals``
applies (:mod:`alphatwin_pipelines.strategies.filters`), done in NumPy.

Valuation: positions are marked at the close; a close missing inside a symbol's life is
forward-filled. Equity is ``cash + shares * close`` and the daily return
``(value[t] - value[t-1]) / value[t-1]`` with ``value[-1] = init_cash``: vectorbt's
``value()`` and ``returns()``. Returns are NaN before a symbol's first bar and after its last
one (no observation), so ``compute_metrics`` does not count those sessions.

With the pinned pandas and vectorbt (checked by the tests), ``from_orders``, ``assets``,
``cash``, ``value``, ``returns`` and the order/trade records work. Two pandas costs are worked
around here rather than patched: pandas copies an ndarray passed to ``pd.DataFrame`` (vectorbt's
``ArrayWrapper.wrap`` does that for every intermediate), so the accounts are rolled up from
the record arrays (:func:`.orders.account`); and ``pd.Index(multiindex)`` flattens to tuples,
so column indexes are passed through untouched. We read record arrays directly and never
use ``stats``/``records_readable``, the most version-sensitive formatting paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from alphatwin_pipelines.backtest.costs import CostModel
from alphatwin_pipelines.strategies import (
    Indicators,
    MarketArrays,
    Signals,
    StrategySpec,
    expand_grid,
    generate,
    sample_params,
)
from alphatwin_pipelines.backtest.orders import account, plan_orders
from alphatwin_pipelines.strategies.families import ffill
from alphatwin_pipelines.stats.metrics import compute_metrics

DEFAULT_INIT_CASH = 100_000.0


def _vbt():
    import vectorbt as vbt  # lazy: slow to import, not needed to build strategies

    return vbt


def _take_columns(a: np.ndarray, sym: np.ndarray) -> np.ndarray:
    """``a[:, sym]``; a block copy when ``sym`` repeats 0..N-1 (a grid), much faster than a gather."""
    n = a.shape[1]
    if sym.size % n == 0 and sym.size and np.array_equal(sym, np.tile(np.arange(n), sym.size // n)):
        return np.tile(a, (1, sym.size // n))
    return a[:, sym]


def _first_last_rows(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    T = valid.shape[0]
    any_ = valid.any(axis=0)
    first = np.where(any_, valid.argmax(axis=0), T)
    last = np.where(any_, T - 1 - valid[::-1].argmax(axis=0), -1)
    return first, last


@dataclass
class BacktestResult:
    """Daily returns, equity, exposure and trades of K backtest columns, plus their metrics."""

    returns: pd.DataFrame  # (T, K) simple daily returns, NaN outside each symbol's life
    value: pd.DataFrame  # (T, K) account equity at each close
    exposure: pd.DataFrame  # (T, K) asset value / equity (0 = flat)
    positions: pd.DataFrame  # (T, K) shares held after each close
    trades: pd.DataFrame  # one row per (closed or open) trade
    orders: pd.DataFrame  # one row per filled order
    init_cash: float
    costs: CostModel
    fill: str
    specs: pd.DataFrame | None = None  # grid runs: one row per parameter set
    # The vectorbt Portfolio that was simulated: on the event axis by default (row m = each
    # column's m-th order, see ``orders``), on the calendar with ``compress=False``.
    portfolio: object = field(default=None, repr=False)

    @cached_property
    def metrics(self) -> pd.DataFrame:
        """``compute_metrics`` per column (row per column), positions = exposure."""
        return compute_metrics(self.returns, positions=self.exposure)

    @property
    def total_return(self) -> pd.Series:
        return self.value.iloc[-1] / self.init_cash - 1.0

    @property
    def sharpe(self) -> pd.Series:
        return self.metrics["sharpe"]

    @property
    def cagr(self) -> pd.Series:
        return self.metrics["cagr"]

    @property
    def max_drawdown(self) -> pd.Series:
        return self.metrics["max_drawdown"]

    @cached_property
    def trade_summary(self) -> pd.DataFrame:
        """Per column: trades, closed trades, win rate, mean trade return, mean holding (sessions)."""
        t = self.trades
        closed = t[t["status"] == "closed"]
        g = closed.groupby("column_id")
        out = pd.DataFrame(index=pd.RangeIndex(len(self.returns.columns), name="column_id"))
        out["n_trades"] = t.groupby("column_id").size().reindex(out.index, fill_value=0)
        out["n_closed"] = g.size().reindex(out.index, fill_value=0)
        out["win_rate"] = (closed["return"] > 0).groupby(closed["column_id"]).mean().reindex(out.index)
        out["avg_return"] = g["return"].mean().reindex(out.index)
        out["avg_holding"] = g["holding"].mean().reindex(out.index)
        out.index = self.returns.columns
        return out

    def column(self, label) -> pd.DataFrame:
        """Returns, equity, exposure and shares of one column, side by side."""
        return pd.DataFrame({"return": self.returns[label], "value": self.value[label],
                             "exposure": self.exposure[label], "shares": self.positions[label]})


def _records(rec: np.ndarray, dates: pd.DatetimeIndex, columns: pd.Index, kind: str,
             calendar_row: np.ndarray | None) -> pd.DataFrame:
    frame = pd.DataFrame({name: rec[name] for name in rec.dtype.names})
    if calendar_row is not None:  # event axis -> calendar rows
        for name in ("idx", "entry_idx", "exit_idx"):
            if name in frame:
                frame[name] = calendar_row[frame[name].to_numpy(), frame["col"].to_numpy()]
    frame = frame.rename(columns={"col": "column_id"})
    codes = frame["column_id"].to_numpy()
    for i, name in enumerate(columns.names):
        frame[name or ("column" if columns.nlevels == 1 else f"level_{i}")] = (
            columns.get_level_values(i).to_numpy()[codes])
    if kind == "trades":
        frame["entry_date"] = dates[frame["entry_idx"].to_numpy()]
        frame["exit_date"] = dates[frame["exit_idx"].to_numpy()]
        frame["holding"] = frame["exit_idx"] - frame["entry_idx"]
        frame["status"] = np.where(frame["status"].to_numpy() == 1, "closed", "open")
    else:
        frame["date"] = dates[frame["idx"].to_numpy()]
        frame["side"] = np.where(frame["side"].to_numpy() == 0, "buy", "sell")
    return frame


def simulate(signals: Signals, market: MarketArrays, costs: CostModel | None = None,
             init_cash: float = DEFAULT_INIT_CASH, fill: str = "next_open",
             specs: pd.DataFrame | None = None, compress: bool = True) -> BacktestResult:
    """Backtest resolved or raw signals on ``market`` with vectorbt's ``Portfolio.from_orders``.

    ``compress=True`` simulates on each column's event axis (:mod:`.orders`); ``False`` on the
    full (T, K) calendar. Both give the same fills; ``result.portfolio`` is the vectorbt
    Portfolio of whichever axis was simulated.
    """
    costs = CostModel() if costs is None else costs
    vbt = _vbt()
    plan = plan_orders(signals, market, costs, init_cash, fill)
    sym = signals.symbol_index if signals.symbol_index is not None else np.arange(signals.shape[1])
    columns = signals.columns if signals.columns is not None else market.columns[sym]
    finite_m = np.isfinite(market.close)
    mark_m = ffill(market.close) if not finite_m.all() else market.close
    mark_m = np.where(np.isfinite(mark_m), mark_m, 1.0)  # before the first bar the position is 0 anyway
    common = dict(size_type="percent", direction="longonly", fees=costs.fees, init_cash=float(init_cash),
                  cash_sharing=False, max_orders=max(plan.n_orders, 1), attach_call_seq=False, fillna_close=False)
    if compress:
        size, price, slip, close, calendar_row = plan.packed(mark_m[-1, sym])
        pf = vbt.Portfolio.from_orders(close, size=size, price=price, slippage=slip,
                                       wrapper_kwargs=dict(columns=columns), **common)
    else:
        size, price, slip = plan.dense()
        calendar_row = None
        pf = vbt.Portfolio.from_orders(mark_m[:, sym], size=size, price=price, slippage=slip, freq="1D",
                                       wrapper_kwargs=dict(index=market.dates, columns=columns), **common)
    orders = _records(pf.orders.values, market.dates, columns, "orders", calendar_row)
    trades = _records(pf.trades.values, market.dates, columns, "trades", calendar_row)
    shares, cash = account(orders["idx"].to_numpy(), orders["column_id"].to_numpy(),
                           np.where(orders["side"].to_numpy() == "buy", 0, 1), orders["size"].to_numpy(),
                           orders["price"].to_numpy(), orders["fees"].to_numpy(), plan.shape, float(init_cash))
    mark = _take_columns(mark_m, sym)
    asset_value = shares * mark
    value = cash + asset_value
    first, last = _first_last_rows(finite_m)
    rows = np.arange(len(market.dates))[:, None]
    alive_m = (rows >= first) & (rows <= last)
    with np.errstate(invalid="ignore", divide="ignore"):
        returns = np.empty_like(value)
        np.subtract(value[1:], value[:-1], out=returns[1:])
        returns[1:] /= value[:-1]
        returns[0] = (value[0] - init_cash) / init_cash
        exposure = np.divide(asset_value, value, out=asset_value)
    if not alive_m.all():  # NaN before a symbol's first bar and after its last one
        dead = _take_columns(~alive_m, sym)
        returns[dead] = np.nan
        exposure[dead] = np.nan

    def frame(a):
        return pd.DataFrame(a, index=market.dates, columns=columns, copy=False)

    return BacktestResult(returns=frame(returns), value=frame(value), exposure=frame(exposure),
                          positions=frame(shares), trades=trades, orders=orders, init_cash=float(init_cash),
                          costs=costs, fill=fill, specs=specs, portfolio=pf)


def run_backtest(spec_or_signals: StrategySpec | Signals, market: MarketArrays, costs: CostModel | None = None,
                 init_cash: float = DEFAULT_INIT_CASH, fill: str = "next_open", compress: bool = True) -> BacktestResult:
    """Backtest one spec (on every symbol of ``market``) or ready-made signals."""
    if isinstance(spec_or_signals, StrategySpec):
        signals = generate(spec_or_signals, market)
        specs = _spec_frame([spec_or_signals])
    elif isinstance(spec_or_signals, Signals):
        signals, specs = spec_or_signals, None
    else:
        raise TypeError(f"expected a StrategySpec or Signals, got {type(spec_or_signals).__name__}")
    return simulate(signals, market, costs, init_cash, fill, specs, compress)


def _spec_frame(specs: list[StrategySpec]) -> pd.DataFrame:
    rows = [{"family": s.family, "level": s.level, "spec_hash": s.spec_hash(), "spec_json": s.to_json(),
             **dict(s.params)} for s in specs]
    return pd.DataFrame(rows, index=pd.RangeIndex(len(specs), name="param_set"))


def run_specs(specs: list[StrategySpec], market: MarketArrays, costs: CostModel | None = None,
              init_cash: float = DEFAULT_INIT_CASH, fill: str = "next_open", compress: bool = True) -> BacktestResult:
    """Many specs x every symbol in ONE vectorbt simulation; columns are ``(param_set, symbol)``.

    Indicators are shared between specs (one :class:`Indicators` cache per market).
    """
    specs = list(specs)
    if not specs:
        raise ValueError("no specs to run")
    ind = Indicators(market)
    parts = [generate(s, market, ind) for s in specs]
    signals = Signals.concat(parts, keys=list(range(len(specs))), names=["param_set", "symbol"])
    return simulate(signals, market, costs, init_cash, fill, _spec_frame(specs), compress)


def run_grid(family: str, param_grid, market: MarketArrays, level: int = 0, base_params: dict | None = None,
             costs: CostModel | None = None, init_cash: float = DEFAULT_INIT_CASH,
             fill: str = "next_open", compress: bool = True) -> BacktestResult:
    """A parameter grid (``{name: [values]}``, cartesian, or a list of dicts) broadcast as columns."""
    specs = [StrategySpec(family, {**(base_params or {}), **p}, level) for p in expand_grid(param_grid)]
    return run_specs(specs, market, costs, init_cash, fill, compress)


def run_random(family: str, level: int, n: int, market: MarketArrays, seed: int,
               costs: CostModel | None = None, init_cash: float = DEFAULT_INIT_CASH,
               fill: str = "next_open") -> BacktestResult:
    """``n`` parameter sets drawn from ``search_space(family, level)`` with ``seed``; deterministic."""
    return run_grid(family, sample_params(family, level, n, seed), market, level, None, costs, init_cash, fill)


def warm_up() -> float:
    """Run a tiny backtest so numba loads (or compiles) every kernel we use; returns seconds."""
    import time

    start = time.perf_counter()
    dates = pd.bdate_range("2020-01-01", periods=8)
    close = np.linspace(10.0, 11.0, 16).reshape(8, 2)
    market = MarketArrays(close, close + 0.1, close - 0.1, close, np.full_like(close, 1e6), dates, ("A", "B"))
    entries = np.zeros((8, 2), dtype=bool)
    exits = np.zeros((8, 2), dtype=bool)
    entries[1], exits[4] = True, True
    result = simulate(Signals(entries, exits, 1.0), market)
    _ = result.metrics, result.trade_summary
    return time.perf_counter() - start

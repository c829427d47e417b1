"""The offline synthetic market: the project's default source, so a fresh clone runs with no
network and no keys.

It imitates what makes real daily bars awkward (heavy tails, volatility clustering, sector
co-movement, splits, dividends, listings and delistings) so every later stage meets those
problems offline. A session's bars are a pure function of (seed, symbol, session): a backfill,
a single partition and a re-run all agree, whichever range or symbol subset they ask for.
The numbers live in ``synthetic_model``; this module turns them into canonical bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.special import ndtri

from alphatwin_pipelines.calendar import all_sessions
from alphatwin_pipelines.schema import empty_bars, to_canonical
from alphatwin_pipelines.sources.base import RULE_NO_DATA, BarSource, FetchResult, Rejection, SourceConfigError
from alphatwin_pipelines.sources.synthetic_model import (
    INTRADAY_DRAWS,
    MARKET,
    SECTOR_FACTOR,
    SECTORS,
    Panel,
    build_panel,
    ex_dividend_rows,
    make_universe,
    sector_of,
    stream,
)
from alphatwin_pipelines.sources.synthetic_defects import DEFAULT_DEFECT_RATE, apply_defects, check_rate, defects_frame, plan_defects
from alphatwin_pipelines.universe import is_valid_symbol

# Shape of a day: the share of the close-to-close move that happens overnight, the size of
# the overnight surprise, and how far the high and low reach beyond open and close (in
# units of daily volatility). Together they give a median high-low range of about 1.3 sigma.
OVERNIGHT_SHARE = 0.3
OVERNIGHT_NOISE = 0.25
RANGE_REACH = 0.5
# Volume: elasticity to the volatility regime, extra volume per sigma of surprise, noise.
# Share volume scales with the split factor (more shares) but falls as the split-free price
# grows, so a company that rose 1000-fold since 1990 trades millions of shares, not billions.
VOLUME_PRICE_ELASTICITY = 0.5
VOLUME_VOL_ELASTICITY = 1.5
VOLUME_SURPRISE = 0.35
VOLUME_NOISE = 0.3
#: Enough for any test universe; beyond it tickers would get scarce and the panel large.
MAX_SYMBOLS = 10_000
#: Every seed gives the same long-run statistics (tests/test_synthetic_calibration.py); this one
#: also makes the demo's window (`make run`, 2024-2025) an ordinary stretch of market rather than
#: a boom in which every strategy looks excellent.
DEFAULT_SEED = 10


class SyntheticSource(BarSource):
    """A deterministic market of ``n_symbols`` listed companies; symbol ``i`` does not depend on
    ``n_symbols``. Any other valid ticker is generated from its name on request, so a custom
    universe works too. ``defects`` is the rate of injected data defects (0: clean bars)."""

    name = "synthetic"

    def __init__(self, seed: int = DEFAULT_SEED, n_symbols: int = 1000, defects: float = DEFAULT_DEFECT_RATE):
        if not 1 <= int(n_symbols) <= MAX_SYMBOLS:
            raise SourceConfigError(
                f"the synthetic market has 1 to {MAX_SYMBOLS} symbols, got n_symbols={n_symbols}"
            )
        self.seed = int(seed)
        self.n_symbols = int(n_symbols)
        self.defects = check_rate(defects)

    def describe(self) -> str:
        return f"synthetic (seed {self.seed}, {self.n_symbols} symbols, defect rate {self.defects:g})"

    def universe(self) -> pd.DataFrame:
        """``symbol, sector, name`` of every company, sorted by symbol."""
        rows = make_universe(self.seed, self.n_symbols)
        frame = pd.DataFrame(
            {
                "symbol": [symbol for symbol, _, _ in rows],
                "sector": [SECTORS[sector].name for _, sector, _ in rows],
                "name": [name for _, _, name in rows],
            }
        ).astype("string")
        return frame.sort_values("symbol", kind="stable").reset_index(drop=True)

    def fetch(self, symbols: Sequence[str], sessions: pd.DatetimeIndex) -> FetchResult:
        return self._fetch(symbols, sessions)[0]

    def injected_defects(self, symbols: Sequence[str], sessions: pd.DatetimeIndex) -> pd.DataFrame:
        """The ground truth of ``fetch(symbols, sessions)``: what was damaged, how, and which
        rule should catch it (``symbol, date, kind, expected_rule, outcome, detail``)."""
        return self._fetch(symbols, sessions)[1]

    def _fetch(self, symbols, sessions) -> tuple[FetchResult, pd.DataFrame]:
        known = {symbol: (i, sector) for i, (symbol, sector, _) in enumerate(make_universe(self.seed, self.n_symbols))}
        listed, generated, rejections = [], [], []
        for symbol in dict.fromkeys(str(s).strip().upper() for s in symbols):
            if symbol in known:
                listed.append(symbol)
            elif is_valid_symbol(symbol):
                generated.append(symbol)
            else:
                rejections.append(
                    Rejection(
                        source=self.name,
                        rule=RULE_NO_DATA,
                        symbol=symbol,
                        reason=f"{symbol!r} is not a ticker (1-6 letters or digits, optional class suffix), "
                        "so the synthetic market cannot generate it",
                    )
                )
        rows = _session_rows(sessions)
        if not (listed or generated) or rows.size == 0:
            return FetchResult(bars=empty_bars(), rejections=rejections), defects_frame([], [])
        last_row = int(rows[-1])
        groups = []
        if listed:
            listed.sort()
            universe = tuple((s, sector) for s, (_, sector) in sorted(known.items(), key=lambda kv: kv[1][0]))
            groups.append((_panel(self.seed, universe, last_row), np.array([known[s][0] for s in listed]), listed))
        if generated:
            generated.sort()
            members = tuple((s, sector_of(self.seed, s)) for s in generated)
            groups.append((_panel(self.seed, members, last_row), np.arange(len(generated)), generated))
        frames, truths = [], []
        for panel, members, names in groups:
            bars, applied = _render_with_defects(panel, self.seed, members, rows, self.defects)
            frames.append(_to_frame(bars, names, all_sessions()[rows]))
            truths.append(defects_frame(applied, names))
        bars = frames[0] if len(frames) == 1 else to_canonical(pd.concat(frames, ignore_index=True))
        truth = truths[0] if len(truths) == 1 else pd.concat(truths, ignore_index=True).sort_values(
            ["symbol", "date"], kind="stable").reset_index(drop=True)
        return FetchResult(bars=bars, rejections=rejections), truth


@lru_cache(maxsize=3)
def _panel(seed: int, members: tuple[tuple[str, int], ...], last_row: int) -> Panel:
    """One simulation per process serves every later fetch of the same members ending on the same session."""
    return build_panel(seed, members, last_row)


def _render_with_defects(panel: Panel, seed: int, members: np.ndarray, rows: np.ndarray, rate: float):
    """Bars of ``members`` on ``rows`` with their defects applied, and the defects that took effect."""
    plan = plan_defects(panel, seed, members, rows, rate)
    need = np.union1d(rows, [d.source_row for d in plan if d.source_row >= 0]).astype(np.int64)
    bars = render_bars(panel, seed, members, need)
    applied = apply_defects(bars, need, plan)
    if need.size != rows.size:
        keep = np.isin(need, rows)
        bars = {name: values[:, keep] for name, values in bars.items()}
    return bars, applied


def _session_rows(sessions) -> np.ndarray:
    """Sorted unique calendar positions of the requested dates that are sessions."""
    dates = pd.DatetimeIndex(pd.to_datetime(sessions))
    if dates.tz is not None:
        dates = dates.tz_localize(None)
    found = all_sessions().get_indexer(dates.normalize())
    return np.unique(found[found >= 0])


def render_bars(panel: Panel, seed: int, members: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Bars of companies ``members`` on session indices ``rows``, as (members, rows) arrays.

    Only the requested cells are computed: open, high, low and volume need the day's path
    value and its own intraday uniforms, which a generator reaches by jumping ahead.
    ``listed`` marks the cells inside each company's listing window.
    """
    first, span = int(rows[0]), int(rows[-1] - rows[0] + 1)
    cur = panel.log_price[np.ix_(members, rows)]
    prev = panel.log_price[np.ix_(members, np.maximum(rows - 1, 0))]
    sector = panel.column("sector", members)
    vol = np.square(panel.idio_vol[np.ix_(members, rows)], dtype=np.float64)
    vol += np.square(panel.column("beta_market", members)[:, None] * panel.market_vol[rows])
    vol += np.square(panel.column("beta_sector", members)[:, None] * panel.sector_vol[np.ix_(sector, rows)])
    np.sqrt(vol, out=vol)

    log_split, ratio, quarterly = np.zeros(cur.shape), np.ones(cur.shape), np.zeros(cur.shape)
    listed = np.zeros(cur.shape, dtype=bool)
    uniforms = np.empty((*cur.shape, INTRADAY_DRAWS))
    ex_rows: dict[tuple[int, int], np.ndarray] = {}
    for j, i in enumerate(members):
        c = panel.companies[i]
        split_rows, split_ratios = panel.splits[i]
        if split_rows.size:
            log_split[j] = np.concatenate([[0.0], np.cumsum(np.log(split_ratios))])[
                np.searchsorted(split_rows, rows, side="right")
            ]
            shown = np.isin(split_rows, rows)
            ratio[j, np.searchsorted(rows, split_rows[shown])] = split_ratios[shown]
        if c.quarterly_yield:
            key = (c.dividend_phase, c.dividend_day)
            if key not in ex_rows:
                ex_rows[key] = np.isin(rows, ex_dividend_rows(*key))
            quarterly[j, ex_rows[key]] = c.quarterly_yield
        listed[j] = (rows >= c.list_row) & (rows <= (rows[-1] if c.delist_row is None else c.delist_row))
        bits = stream(seed, panel.symbols[i], "intraday")
        bits.advance(first * INTRADAY_DRAWS)
        uniforms[j] = np.random.Generator(bits).random((span, INTRADAY_DRAWS))[rows - first]

    drop = np.log1p(-quarterly)  # the ex-dividend drop, already inside the path
    day_return = cur - prev - drop
    normal = ndtri(np.clip(uniforms[..., [0, 3]], 1e-12, 1 - 1e-12))  # gap and volume noise
    overnight = OVERNIGHT_SHARE * day_return + OVERNIGHT_NOISE * vol * normal[..., 0]
    open_ = np.round(np.exp(prev - log_split + drop + overnight), 2)
    close = np.round(np.exp(cur - log_split), 2)
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    high = np.maximum(np.round(top * np.exp(-RANGE_REACH * vol * np.log1p(-uniforms[..., 1])), 2), top)
    low = np.clip(np.round(bottom * np.exp(RANGE_REACH * vol * np.log1p(-uniforms[..., 2])), 2), 0.01, bottom)
    dividend = np.where(quarterly > 0, np.maximum(np.round(quarterly * np.exp(prev - log_split), 2), 0.01), 0.0)

    typical = np.sqrt(
        (panel.column("beta_market", members) * MARKET[1]) ** 2
        + (panel.column("beta_sector", members) * SECTOR_FACTOR[0]) ** 2
        + panel.column("idio_vol", members) ** 2
    )[:, None]
    log_volume = (
        np.log(panel.column("volume_level", members))[:, None]
        + log_split
        - VOLUME_PRICE_ELASTICITY * (cur - np.log(panel.column("first_price", members))[:, None])
        + VOLUME_VOL_ELASTICITY * np.clip(np.log(vol / typical), -1.0, 1.5)
        + VOLUME_SURPRISE * np.minimum(np.abs(day_return) / vol, 6.0)
        + VOLUME_NOISE * normal[..., 1]
    )
    volume = np.maximum(np.rint(np.exp(log_volume)), 100).astype(np.int64)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume,
            "dividend": dividend, "split_ratio": ratio, "listed": listed}


def _to_frame(bars: dict[str, np.ndarray], symbols: list[str], dates: pd.DatetimeIndex) -> pd.DataFrame:
    member, day = np.nonzero(bars["listed"])
    copies = bars["copies"][member, day]
    if (copies > 1).any():  # a duplicated row, delivered twice
        member, day = np.repeat(member, copies), np.repeat(day, copies)
    frame = pd.DataFrame(
        {
            "symbol": pd.array(np.array(symbols, dtype=object)[member], dtype="string"),
            "date": dates.values[day],
            **{name: values[member, day] for name, values in bars.items() if name not in ("listed", "copies")},
            "source": SyntheticSource.name,
        },
        copy=False,  # consolidating the float columns into one block costs more than the rest
    )
    return to_canonical(frame)

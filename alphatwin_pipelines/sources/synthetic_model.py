"""The numbers behind the synthetic market: companies, price paths and corporate actions.

Every random stream is keyed by (seed, symbol or factor, purpose) and starts at the calendar
origin, so the value on session ``t`` depends only on draws ``0..t`` of its own stream. That
is what makes a session's bars identical however the range, the symbol subset or the
universe size is chosen. One generator never mixes two distributions (that would make a
draw's position depend on how many came before it); intraday noise uses uniforms only, so
a generator can jump straight to the first requested session.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.special import ndtri

from alphatwin_pipelines.calendar import all_sessions

STUDENT_DF = 5  # heavy tails with a finite fourth moment, like single-stock daily returns
T_UNIT_SCALE = np.sqrt((STUDENT_DF - 2) / STUDENT_DF)
VOL_PERSISTENCE = 0.98  # AR(1) of log-variance: shocks to volatility last months
FORWARD_SPLITS = (1.5, 2.0, 3.0, 4.0)
SPLIT_COOLDOWN = 60  # sessions between two splits of one company
INTRADAY_DRAWS = 4  # uniforms per bar: gap noise, high reach, low reach, volume noise
LATE_LISTING = ("2001-01-01", "2025-12-31", 0.12)  # window and share of companies
DELISTING = ("2005-01-01", "2025-12-31", 0.04)
MARKET = ("factor:market", 0.009, 0.15)  # stream key, typical daily vol, vol of log-variance
SECTOR_FACTOR = (0.007, 0.12)  # typical daily vol, vol of log-variance


@dataclass(frozen=True)
class Sector:
    name: str
    weight: float  # share of companies
    payer_share: float  # share paying a quarterly dividend
    suffixes: tuple[str, ...]


SECTORS: tuple[Sector, ...] = (
    Sector("Communication Services", 0.07, 0.35, ("Communications", "Media", "Networks", "Interactive")),
    Sector("Consumer Discretionary", 0.12, 0.40, ("Brands", "Retail", "Motors", "Apparel", "Leisure")),
    Sector("Consumer Staples", 0.05, 0.80, ("Foods", "Beverages", "Household Products", "Farms")),
    Sector("Energy", 0.05, 0.65, ("Energy", "Petroleum", "Resources", "Midstream")),
    Sector("Financials", 0.14, 0.70, ("Bancorp", "Financial", "Capital", "Insurance Group")),
    Sector("Health Care", 0.13, 0.25, ("Therapeutics", "Pharmaceuticals", "Medical", "Biosciences")),
    Sector("Industrials", 0.14, 0.60, ("Industries", "Aerospace", "Logistics", "Machinery")),
    Sector("Information Technology", 0.13, 0.30, ("Systems", "Software", "Technologies", "Semiconductor")),
    Sector("Materials", 0.06, 0.65, ("Chemicals", "Materials", "Mining", "Packaging")),
    Sector("Real Estate", 0.07, 0.90, ("Realty Trust", "Properties", "Residential")),
    Sector("Utilities", 0.04, 0.95, ("Utilities", "Power & Light", "Water")),
)
_SECTOR_CDF = np.cumsum([s.weight for s in SECTORS]) / sum(s.weight for s in SECTORS)
_ONSETS = ("b", "br", "c", "cr", "d", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "pr", "r", "s", "st", "t", "tr",
           "v", "w", "z")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ea", "io")
_CODAS = ("n", "r", "x", "s", "l", "m", "nt", "rk", "", "", "ton", "tex", "dex", "gen", "via", "ra")


def stream(seed: int, *key: object) -> np.random.PCG64:
    """A bit generator owned by one (seed, key); stable across processes (no ``hash()``)."""
    text = "\x1f".join(str(part) for part in (seed, *key))
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return np.random.PCG64(int.from_bytes(digest, "little"))


def _pick(options, u: float):
    return options[min(int(u * len(options)), len(options) - 1)]


def _ticker_options(word: str, u_len: float) -> list[str]:
    """Abbreviations in order of preference, the way real tickers shorten names."""
    letters = word.upper()
    consonants = letters[0] + "".join(c for c in letters[1:] if c not in "AEIOUY")
    wanted = 2 if u_len < 0.1 else 3 if u_len < 0.5 else 4
    options = []
    for length in (wanted, 3, 4, 2):
        options += [consonants[:length], letters[:length], letters[0] + letters[-(length - 1) :]]
    return [o for o in dict.fromkeys(options) if 2 <= len(o) <= 4]


@lru_cache(maxsize=8)
def make_universe(seed: int, n_symbols: int) -> tuple[tuple[str, int, str], ...]:
    """(symbol, sector index, name) for the first ``n_symbols`` companies.

    Candidates come in fixed-size chunks from one stream and are accepted in order, so the
    first 50 companies are the same whether 50 or 1000 are asked for.
    """
    rng, taken, out = np.random.Generator(stream(seed, "universe")), set(), []
    while len(out) < n_symbols:
        for u in rng.random((256, 12)):
            syllables = 2 + (u[0] > 0.85)
            word = "".join(_pick(_ONSETS, u[1 + 2 * k]) + _pick(_VOWELS, u[2 + 2 * k]) for k in range(syllables))
            word += _pick(_CODAS, u[7])
            symbol = next((t for t in _ticker_options(word, u[8]) if t not in taken), None)
            if symbol is None:
                continue
            sector = int(np.searchsorted(_SECTOR_CDF, u[9], side="right"))
            taken.add(symbol)
            out.append((symbol, sector, f"{word.capitalize()} {_pick(SECTORS[sector].suffixes, u[10])}"))
            if len(out) == n_symbols:
                break
    return tuple(out)


def _window_index(window: tuple[str, str, float], u: float) -> int:
    """A session index placed ``u`` of the way through ``window``."""
    lo, hi = all_sessions().searchsorted(pd.DatetimeIndex(window[:2]))
    return int(lo + int(u * (hi - lo)))


@dataclass(frozen=True)
class Company:
    """Per-symbol constants, drawn from the symbol's own parameter stream."""

    sector: int
    beta_market: float
    beta_sector: float
    idio_vol: float  # typical daily idiosyncratic volatility
    vol_of_vol: float
    drift: float  # daily log drift
    first_price: float
    volume_level: float  # typical shares per day at listing
    quarterly_yield: float  # 0 for non-payers
    dividend_phase: int  # 0, 1, 2: which month of each quarter holds the ex-date
    dividend_day: int
    list_row: int  # first session index with a bar
    delist_row: int | None  # last session index with a bar, None while listed
    split_up: float  # raw price that triggers a forward split
    split_down: float  # raw price that triggers a 1:10 reverse split
    split_draws: tuple[float, ...]


def company(seed: int, symbol: str, sector: int) -> Company:
    """Each parameter reads a fixed position of the stream, so adding one never moves the rest."""
    u = np.random.Generator(stream(seed, symbol, "params")).random(24)
    z = ndtri(np.clip(u, 1e-9, 1 - 1e-9))
    late, delisted = u[10] < LATE_LISTING[2], u[12] < DELISTING[2]
    list_row = _window_index(LATE_LISTING, u[11]) if late else 0
    delist_row = _window_index(DELISTING, u[13]) if delisted else None
    if delist_row is not None and delist_row < list_row + 250:
        delist_row = None
    split_up = float(np.exp(np.log(120) + u[14] * np.log(900 / 120)))
    payer = u[6] < SECTORS[sector].payer_share
    return Company(
        sector=sector,
        beta_market=0.6 + 0.8 * u[0],
        beta_sector=0.5 + 0.7 * u[1],
        idio_vol=float(np.clip(0.013 * np.exp(0.3 * z[2]), 0.006, 0.04)),
        vol_of_vol=0.10 + 0.10 * u[3],
        drift=(0.05 + 0.05 * z[4]) / 252,
        first_price=float(np.clip(np.exp(np.log(22 if late else 30) + 0.7 * z[5]), 6, 0.6 * split_up)),
        volume_level=float(np.clip(np.exp(np.log(6e5) + 0.8 * z[9]), 3e4, 1e7)),
        quarterly_yield=(0.01 + 0.03 * u[7]) / 4 if payer else 0.0,
        dividend_phase=int(3 * u[8]) % 3,
        dividend_day=1 + int(25 * u[15]),
        list_row=list_row,
        delist_row=delist_row,
        split_up=split_up,
        split_down=float(np.exp(np.log(1.5) + u[16] * np.log(4.0 / 1.5))),
        split_draws=tuple(float(x) for x in u[17:]),
    )


@lru_cache(maxsize=128)
def ex_dividend_rows(phase: int, day: int) -> np.ndarray:
    """Session index of the first session on/after ``day`` of each quarter's ``phase`` month."""
    sessions = all_sessions()
    targets = [
        pd.Timestamp(year, month + phase, day)
        for year in range(sessions[0].year, sessions[-1].year + 1)
        for month in (1, 4, 7, 10)
    ]
    rows = np.unique(sessions.searchsorted(pd.DatetimeIndex(targets)))
    return rows[rows < len(sessions)]


def _volatility(seed: int, keys: tuple[str, ...], count: int, level: np.ndarray, vol_of_vol: np.ndarray) -> np.ndarray:
    """Daily volatility paths (one row per key): a stationary AR(1) in log-variance.

    Persistent log-variance is what makes calm and turbulent months (volatility clustering);
    it is centred so that the mean variance equals ``level**2``.
    """
    state = np.empty((len(keys), count))
    for row, key in enumerate(keys):
        state[row] = np.random.Generator(stream(seed, key, "vol")).standard_normal(count)
    state[:, 0] /= np.sqrt(1 - VOL_PERSISTENCE**2)  # start in equilibrium, not at zero
    state = _ar1_along_rows(state, VOL_PERSISTENCE)
    state *= (0.5 * vol_of_vol)[:, None]
    state += (np.log(level) - vol_of_vol**2 / (4 * (1 - VOL_PERSISTENCE**2)))[:, None]
    return np.exp(state, out=state)


def _ar1_along_rows(shocks: np.ndarray, phi: float) -> np.ndarray:
    """y[t] = x[t] + phi * y[t-1] along each row.

    A plain loop over time on contiguous (time, key) rows: as fast as scipy's lfilter and
    bit-identical to it, without the slow import of scipy.signal that every run would pay.
    """
    by_time = np.ascontiguousarray(shocks.T)
    for t in range(1, by_time.shape[0]):
        by_time[t] += phi * by_time[t - 1]
    return by_time.T


def _innovations(seed: int, keys: tuple[str, ...], count: int) -> np.ndarray:
    """Unit-variance Student-t shocks (one row per key)."""
    out = np.empty((len(keys), count))
    for row, key in enumerate(keys):
        out[row] = np.random.Generator(stream(seed, key, "ret")).standard_t(STUDENT_DF, count)
    out *= T_UNIT_SCALE
    return out


def _factor(seed: int, keys: tuple[str, ...], count: int, level: float, vol_of_vol: float):
    """Returns and volatility of common factors (the market, the sectors)."""
    ones = np.ones(len(keys))
    vol = _volatility(seed, keys, count, level * ones, vol_of_vol * ones)
    return _innovations(seed, keys, count) * vol, vol


def split_schedule(log_price: np.ndarray, c: Company, last_row: int) -> tuple[list[int], list[float]]:
    """Sessions and ratios of splits, decided from the raw close before each one (causal)."""
    rows, ratios, offset, start = [], [], 0.0, c.list_row + 1
    up, down = np.log(c.split_up), np.log(c.split_down)
    while start <= last_row:
        raw = log_price[start - 1 : last_row] - offset
        hit = np.flatnonzero((raw > up) | (raw < down))
        if hit.size == 0:
            break
        price = float(np.exp(raw[hit[0]]))
        if price < c.split_down:
            ratio = 0.1
        else:
            u = c.split_draws[len(rows) % len(c.split_draws)]
            choice = 1 if u < 0.6 else 2 if u < 0.75 else 0 if u < 0.85 else 3
            while choice < 3 and price / FORWARD_SPLITS[choice] > 0.7 * c.split_up:
                choice += 1
            ratio = FORWARD_SPLITS[choice]
        rows.append(start + int(hit[0]))
        ratios.append(ratio)
        offset += np.log(ratio)
        start = rows[-1] + SPLIT_COOLDOWN
    return rows, ratios


@dataclass(frozen=True)
class Panel:
    """Everything path-dependent up to one last session; bars are rendered from it on demand."""

    symbols: tuple[str, ...]
    companies: tuple[Company, ...]
    log_price: np.ndarray  # (N, T) split-free, ex-dividend log close
    idio_vol: np.ndarray  # (N, T) float32 idiosyncratic daily volatility
    market_vol: np.ndarray  # (T,)
    sector_vol: np.ndarray  # (sectors, T)
    splits: tuple[tuple[np.ndarray, np.ndarray], ...]  # per company: (rows, ratios)

    def column(self, attr: str, members=None) -> np.ndarray:
        return _column(self.companies if members is None else [self.companies[i] for i in members], attr)


def _column(companies, attr: str) -> np.ndarray:
    return np.array([getattr(c, attr) for c in companies])


def sector_of(seed: int, symbol: str) -> int:
    """The sector of a symbol the generated universe does not list, drawn from its own name."""
    u = np.random.Generator(stream(seed, symbol, "sector")).random()
    return int(np.searchsorted(_SECTOR_CDF, u, side="right"))


def build_panel(seed: int, members: tuple[tuple[str, int], ...], last_row: int) -> Panel:
    """Simulate the companies ``members`` ((symbol, sector) pairs) from the calendar origin to ``last_row``.

    A company depends only on its symbol and sector (the factors are shared streams), so any
    list of members gives each one the same path. Works in place on (N, T) arrays so that no
    more than three are alive at once.
    """
    symbols = tuple(symbol for symbol, _ in members)
    companies = tuple(company(seed, symbol, sector) for symbol, sector in members)
    count = last_row + 1

    def col(attr: str) -> np.ndarray:
        return _column(companies, attr)[:, None]

    market_ret, market_vol = _factor(seed, MARKET[:1], count, *MARKET[1:])
    sector_keys = tuple(f"factor:{s.name}" for s in SECTORS)
    sector_ret, sector_vol = _factor(seed, sector_keys, count, *SECTOR_FACTOR)

    sd = _volatility(seed, symbols, count, col("idio_vol")[:, 0], col("vol_of_vol")[:, 0])
    ret = _innovations(seed, symbols, count)
    ret *= sd
    idio_vol = sd.astype(np.float32)
    common = sd  # reuse the buffer for the factor part of each return
    np.take(sector_ret, _column(companies, "sector"), axis=0, out=common, mode="clip")
    common *= col("beta_sector")
    ret += common
    np.multiply(col("beta_market"), market_ret, out=common)
    common += col("drift")
    ret += common
    del sd, common
    np.clip(ret, -0.7, 0.5, out=ret)

    for i, c in enumerate(companies):
        if c.quarterly_yield:
            rows = ex_dividend_rows(c.dividend_phase, c.dividend_day)
            rows = rows[rows < count]
            ret[i, rows] = np.log(np.exp(ret[i, rows]) - c.quarterly_yield)
    log_price = np.cumsum(ret, axis=1, out=ret)
    listing = np.minimum(_column(companies, "list_row"), last_row)
    log_price += np.log(col("first_price")) - log_price[np.arange(len(companies)), listing][:, None]

    splits = []
    for i, c in enumerate(companies):
        end = last_row if c.delist_row is None else min(c.delist_row, last_row)
        rows, ratios = split_schedule(log_price[i], c, end)
        splits.append((np.array(rows, dtype=np.int64), np.array(ratios, dtype=np.float64)))
    return Panel(symbols, companies, log_price, idio_vol, market_vol[0], sector_vol, tuple(splits))

"""Factor analysis of alpha predictions against their forward-return labels (no Dagster, no I/O).

A pure function of two frames (plus an optional sector map):

- predictions: ``date, symbol, horizon, score`` (higher = more bullish), one row per key;
- labels: ``date, symbol, horizon, fwd_return, available`` (``available``: the session the
  label became known, t + h).

Only labels whose ``available`` is on or before the report's ``as_of`` session are used: a
report as of t never scores a prediction against a return that was unknown at t.

Per date and prediction horizon h (its score against the h-session label): IC (Pearson) and rank
IC (Spearman), quantile mean returns, top-minus-bottom spread and top/bottom quantile turnover;
then their means, ICIR (mean / std of the daily series, not annualised), decay (the h score
against every label horizon), and IC by year and by sector. The definitions follow alphalens
(``factor_information_coefficient``, ``mean_return_by_quantile`` with ``demeaned=False``,
``quantile_turnover``): the tests check the numbers against a hand computation and alphalens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

PREDICTION_COLUMNS = ("date", "symbol", "horizon", "score")
LABEL_COLUMNS = ("date", "symbol", "horizon", "fwd_return", "available")


@dataclass(frozen=True)
class FactorReportSettings:
    quantiles: int = 5
    #: A date (or a date within a sector) with fewer valid names has no IC: a correlation of a
    #: handful of names is noise.
    min_names: int = 10
    #: ``as_of`` session (``YYYY-MM-DD``); empty: the latest prediction date.
    as_of: str = ""


@dataclass
class FactorReport:
    as_of: pd.Timestamp
    settings: FactorReportSettings
    daily: pd.DataFrame  # date, horizon, names, ic, rank_ic, spread, top_turnover, bottom_turnover
    summary: pd.DataFrame  # one row per horizon
    quantile_returns: pd.DataFrame  # horizon, quantile, mean_return, days
    decay: pd.DataFrame  # horizon, label_horizon, mean_ic, mean_rank_ic, rank_icir, days
    by_year: pd.DataFrame  # horizon, year, mean_ic, mean_rank_ic, icir, rank_icir, days
    by_sector: pd.DataFrame  # horizon, sector, mean_ic, mean_rank_ic, rank_icir, days
    notes: list[str] = field(default_factory=list)

    def to_table(self) -> pd.DataFrame:
        """Every section as one tidy frame (section, horizon, label_horizon, group, metric, value)."""
        parts = [
            _melt(self.daily.assign(group=self.daily["date"].dt.strftime("%Y-%m-%d")).drop(columns="date"), "daily"),
            _melt(self.summary.assign(group="all"), "summary"),
            _melt(self.quantile_returns.assign(group=self.quantile_returns["quantile"].map(lambda q: f"Q{q}"))
                  .drop(columns="quantile"), "quantile"),
            _melt(self.decay.assign(group="all"), "decay"),
            _melt(self.by_year.assign(group=self.by_year["year"].astype(str)).drop(columns="year"), "year"),
            _melt(self.by_sector.rename(columns={"sector": "group"}), "sector"),
        ]
        table = pd.concat(parts, ignore_index=True)
        return table.assign(as_of=self.as_of)[["as_of", "section", "horizon", "label_horizon", "group", "metric", "value"]]


def _melt(frame: pd.DataFrame, section: str) -> pd.DataFrame:
    if "label_horizon" not in frame:
        frame = frame.assign(label_horizon=frame["horizon"])
    long = frame.melt(id_vars=["horizon", "label_horizon", "group"], var_name="metric", value_name="value")
    return long.assign(section=section, value=long["value"].astype(float))


def _require(frame: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, frame.columns))}); "
                         f"the factor report needs {', '.join(columns)}")


def _check_unique(frame: pd.DataFrame, what: str) -> None:
    dupes = frame.duplicated(["date", "symbol", "horizon"], keep=False)
    if dupes.any():
        row = frame.loc[dupes].iloc[0]
        raise ValueError(f"{what} has {int(dupes.sum())} rows sharing a (date, symbol, horizon), e.g. "
                         f"{row['date']:%Y-%m-%d} {row['symbol']} h={row['horizon']}: keep one row per key "
                         "(re-materialise the partition)")


def prepare(predictions: pd.DataFrame, labels: pd.DataFrame, as_of=None) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Predictions joined with every label horizon known by ``as_of``: one row per (date, symbol,
    horizon) with ``score`` and ``fwd_<h>`` columns (NaN where the label is unknown)."""
    _require(predictions, PREDICTION_COLUMNS, "alpha_predictions")
    _require(labels, LABEL_COLUMNS, "alpha_labels")
    preds = predictions[list(PREDICTION_COLUMNS)].copy()
    labs = labels[list(LABEL_COLUMNS)].copy()
    for frame in (preds, labs):
        frame["date"] = pd.to_datetime(frame["date"]).dt.normalize()
        frame["symbol"] = frame["symbol"].astype(str)
        frame["horizon"] = frame["horizon"].astype(int)
    labs["available"] = pd.to_datetime(labs["available"]).dt.normalize()
    if len(preds) == 0:
        raise ValueError("alpha_predictions holds no rows up to the report's as-of session: materialise it first")
    as_of = pd.Timestamp(as_of).normalize() if as_of else preds["date"].max()
    preds = preds[preds["date"] <= as_of]
    labs = labs[(labs["available"] <= as_of) & labs["fwd_return"].notna()]
    _check_unique(preds, "alpha_predictions")
    _check_unique(labs, "alpha_labels")
    wide = labs.pivot(index=["date", "symbol"], columns="horizon", values="fwd_return")
    wide.columns = [f"fwd_{h}" for h in wide.columns]
    joined = preds.merge(wide.reset_index(), on=["date", "symbol"], how="left")
    joined["score"] = joined["score"].astype(float)
    return joined.sort_values(["horizon", "date", "symbol"], kind="stable").reset_index(drop=True), as_of


def label_horizons(joined: pd.DataFrame) -> list[int]:
    return sorted(int(c.removeprefix("fwd_")) for c in joined.columns if c.startswith("fwd_"))


def group_ranks(codes: np.ndarray, values: np.ndarray, ties: str = "average") -> np.ndarray:
    """1-based ranks of ``values`` within each group of ``codes`` (no NaN): ``average`` as
    ``rank(method="average")``, ``first`` breaks ties in row order. One sort for all groups."""
    n = len(values)
    if n == 0:
        return np.empty(0)
    order = np.argsort(values, kind="stable")  # stable sorts: equal values keep row order
    order = order[np.argsort(codes[order], kind="stable")]
    c, v = codes[order], values[order]
    new_group = np.r_[True, c[1:] != c[:-1]]
    position = np.arange(n) - np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    ranks = np.empty(n)
    if ties == "first":
        ranks[order] = position + 1.0
        return ranks
    new_run = new_group | np.r_[True, v[1:] != v[:-1]]
    run = np.cumsum(new_run) - 1
    run_length = np.diff(np.r_[np.flatnonzero(new_run), n])
    ranks[order] = (position[new_run] + (run_length - 1) / 2.0 + 1.0)[run]
    return ranks


def _pearson(codes: np.ndarray, x: np.ndarray, y: np.ndarray, groups: int) -> np.ndarray:
    count = np.bincount(codes, minlength=groups).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = x - (np.bincount(codes, x, groups) / count)[codes]
        dy = y - (np.bincount(codes, y, groups) / count)[codes]
        sxy, sxx, syy = (np.bincount(codes, w, groups) for w in (dx * dy, dx * dx, dy * dy))
        denominator = np.sqrt(sxx * syy)
        return np.where(denominator > 1e-300, sxy / denominator, np.nan)


def daily_correlation(frame: pd.DataFrame, x: str, y: str, keys, min_names: int) -> pd.DataFrame:
    """Pearson and Spearman correlation of ``x`` and ``y`` per ``keys`` group (rows with both
    values), NaN where a group has fewer than ``min_names`` rows or no dispersion."""
    valid = frame[frame[x].notna() & frame[y].notna()]
    grouped = valid.groupby(keys, sort=True)
    codes = grouped.ngroup().to_numpy()
    out = grouped.size().rename("names").to_frame()
    xs, ys = valid[x].to_numpy(dtype=float), valid[y].to_numpy(dtype=float)
    out["ic"] = _pearson(codes, xs, ys, len(out))
    out["rank_ic"] = _pearson(codes, group_ranks(codes, xs), group_ranks(codes, ys), len(out))
    out.loc[out["names"] < min_names, ["ic", "rank_ic"]] = np.nan
    return out.reset_index()


def assign_quantiles(frame: pd.DataFrame, keys, quantiles: int) -> pd.Series:
    """Quantile 1..Q of ``score`` within each group, as ``pd.qcut(score, Q)`` bins distinct values
    (alphalens' binning); ties are split in row order (sorted by symbol), so bins stay equal-sized."""
    codes = frame.groupby(keys, sort=False).ngroup().to_numpy()
    rank = group_ranks(codes, frame["score"].to_numpy(dtype=float), ties="first")
    n = np.bincount(codes)[codes].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.maximum(np.ceil((rank - 1) * quantiles / (n - 1)), 1)
    return pd.Series(np.where(n >= quantiles, q, np.nan), index=frame.index).astype("Int64")


def turnover(frame: pd.DataFrame, quantile: int) -> pd.Series:
    """Per date: the share of names in ``quantile`` that were not in it on the previous date."""
    members = frame.loc[frame["quantile"] == quantile, ["date", "symbol"]]
    day_codes, days = pd.factorize(members["date"], sort=True)
    symbol_codes, symbols = pd.factorize(members["symbol"])
    width = max(len(symbols), 1)
    keys = day_codes.astype(np.int64) * width + symbol_codes
    stayed = np.isin(keys - width, keys) & (day_codes > 0)
    now = np.bincount(day_codes, minlength=len(days)).astype(float)
    kept = np.bincount(day_codes, weights=stayed, minlength=len(days))
    values = 1.0 - kept / np.where(now > 0, now, np.nan)
    values[:1] = np.nan  # the first date has no previous one
    return pd.Series(values, index=pd.DatetimeIndex(days, name="date"), dtype=float)


def _ratio(mean: float, std: float) -> float:
    return float(mean / std) if std and np.isfinite(std) and std > 0 else np.nan


def _stats(ic: pd.Series, rank_ic: pd.Series) -> dict:
    ic, rank_ic = ic.dropna(), rank_ic.dropna()
    return {"mean_ic": ic.mean(), "ic_std": ic.std(ddof=1), "icir": _ratio(ic.mean(), ic.std(ddof=1)),
            "mean_rank_ic": rank_ic.mean(), "rank_ic_std": rank_ic.std(ddof=1),
            "rank_icir": _ratio(rank_ic.mean(), rank_ic.std(ddof=1)), "days": float(len(rank_ic))}


def _horizon_frames(joined: pd.DataFrame, h: int, settings: FactorReportSettings):
    """Daily series and quantile means of horizon ``h``'s score against its own label."""
    label = f"fwd_{h}"
    rows = joined[(joined["horizon"] == h) & joined["score"].notna() & joined[label].notna()].copy()
    daily = daily_correlation(rows, "score", label, ["date"], settings.min_names).set_index("date")
    rows["quantile"] = assign_quantiles(rows, ["date"], settings.quantiles)
    rows = rows[rows["quantile"].notna()]
    by_q = rows.groupby(["date", "quantile"])[label].mean().unstack("quantile")
    top, bottom = settings.quantiles, 1
    if top in by_q and bottom in by_q:
        daily["spread"] = by_q[top] - by_q[bottom]
    else:
        daily["spread"] = np.nan
    daily["top_turnover"] = turnover(rows, top)
    daily["bottom_turnover"] = turnover(rows, bottom)
    quantile_returns = pd.DataFrame({"mean_return": by_q.mean(), "days": by_q.count().astype(float)})
    quantile_returns = quantile_returns.rename_axis("quantile").reset_index().assign(horizon=h)
    quantile_returns["quantile"] = quantile_returns["quantile"].astype(int)
    return daily.reset_index().assign(horizon=h), quantile_returns, rows


def factor_report(predictions: pd.DataFrame, labels: pd.DataFrame, sectors: pd.DataFrame | None = None,
                  settings: FactorReportSettings = FactorReportSettings()) -> FactorReport:
    """The factor report (module docstring). ``sectors``: ``symbol, sector`` (the universe table)."""
    joined, as_of = prepare(predictions, labels, settings.as_of or None)
    notes = []
    horizons = sorted(int(h) for h in joined["horizon"].unique())
    known = label_horizons(joined)
    dailies, quantile_frames, summaries, decays, years, sector_rows = [], [], [], [], [], []
    if sectors is not None and len(sectors):
        sector_of = sectors.drop_duplicates("symbol").set_index("symbol")["sector"].astype(str)
        joined["sector"] = joined["symbol"].map(sector_of).fillna("Unknown")
    else:
        joined["sector"] = "Unknown"
    for h in horizons:
        if h not in known:
            notes.append(f"horizon {h}: no label with that horizon is available by {as_of:%Y-%m-%d}")
            continue
        daily, quantile_returns, rows = _horizon_frames(joined, h, settings)
        if daily.empty:  # labels of that horizon exist, but none yet for the sessions predicted
            notes.append(f"horizon {h}: no prediction up to {as_of:%Y-%m-%d} has its {h}-session label yet")
            continue
        dailies.append(daily)
        quantile_frames.append(quantile_returns)
        spread = daily["spread"].dropna()
        summaries.append({"horizon": h, **_stats(daily["ic"], daily["rank_ic"]),
                          "mean_spread": spread.mean(), "spread_t": _ratio(spread.mean(), spread.std(ddof=1))
                          * np.sqrt(len(spread)), "spread_per_session": spread.mean() / h,
                          "top_turnover": daily["top_turnover"].mean(),
                          "bottom_turnover": daily["bottom_turnover"].mean()})
        for label_h in known:
            pairs = joined[joined["horizon"] == h]
            ic = daily_correlation(pairs, "score", f"fwd_{label_h}", ["date"], settings.min_names)
            stats = _stats(ic["ic"], ic["rank_ic"])
            decays.append({"horizon": h, "label_horizon": label_h, **{k: stats[k] for k in
                           ("mean_ic", "mean_rank_ic", "icir", "rank_icir", "days")}})
        for year, part in daily.groupby(daily["date"].dt.year):
            years.append({"horizon": h, "year": int(year), **_stats(part["ic"], part["rank_ic"])})
        per_sector = daily_correlation(rows, "score", f"fwd_{h}", ["sector", "date"], settings.min_names)
        for sector, part in per_sector.groupby("sector"):
            sector_rows.append({"horizon": h, "sector": sector, **_stats(part["ic"], part["rank_ic"])})
    if not dailies:
        raise ValueError(f"no prediction could be scored as of {as_of:%Y-%m-%d}: alpha_labels has no label "
                         f"available by then for horizons {horizons} (labels become available h sessions later). "
                         f"Materialise alpha_predictions for sessions at least h sessions before {as_of:%Y-%m-%d} "
                         f"(a backfill), or choose a later as_of")
    daily_columns = ["date", "horizon", "names", "ic", "rank_ic", "spread", "top_turnover", "bottom_turnover"]
    return FactorReport(
        as_of=as_of, settings=settings,
        daily=pd.concat(dailies, ignore_index=True)[daily_columns],
        summary=pd.DataFrame(summaries),
        quantile_returns=pd.concat(quantile_frames, ignore_index=True)[["horizon", "quantile", "mean_return", "days"]],
        decay=pd.DataFrame(decays), by_year=pd.DataFrame(years), by_sector=pd.DataFrame(sector_rows), notes=notes)

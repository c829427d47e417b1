"""Rank raw hits within each session, in pieces that can run anywhere.

Ranks compare signals of the same session only, so the sessions can be cut into groups and
each group ranked on its own (on a Dask worker, say): ``split_by_session`` cuts a shard's raw
hits by session group, ``rank_group`` orders and ranks one group's hits from every shard, and
``name_ranked`` turns a ranked group into its signals frame (``ranked_signals`` does both).
Concatenated in session order, the groups' frames are the same whatever the number of groups
or shards.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from alphatwin_pipelines.scanner.cross_asset import arrow_strings
from alphatwin_pipelines.scanner.packed import PackedStrings
from alphatwin_pipelines.scanner.signals import FAMILIES, SIGNAL_FAMILY, SIGNAL_NAMES

_FAMILY_OF_SIGNAL = np.asarray([FAMILIES.index(f) for f in SIGNAL_FAMILY], dtype=np.int64)


class RawHits(NamedTuple):
    signals: pd.DataFrame  # symbol_code, date, signal_id, direction, score (unranked)
    evidence: PackedStrings  # one JSON object per signals row


class RankedHits(NamedTuple):
    """Ranked signals with symbols, signals and families still as codes."""

    numbers: pd.DataFrame  # date, symbol_code, signal_id, direction, score, rank_family, rank_overall
    evidence: PackedStrings


def session_groups(sessions: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """``sessions`` (sorted) cut into at most ``n_groups`` consecutive runs of similar length."""
    n_groups = max(1, min(int(n_groups), len(sessions)))
    return [g for g in np.array_split(np.asarray(sessions, dtype="datetime64[ns]"), n_groups) if len(g)]


def split_by_session(hits: RawHits, groups: list[np.ndarray]) -> list[RawHits]:
    """``hits`` cut into one piece per session group (a group's piece keeps the hits' order)."""
    dates = hits.signals["date"].to_numpy(dtype="datetime64[ns]")
    firsts = np.asarray([g[0] for g in groups], dtype="datetime64[ns]")
    group = np.searchsorted(firsts, dates, side="right") - 1
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(len(groups) + 1), side="left")
    evidence = hits.evidence.to_arrow().take(pa.array(order, type=pa.int64()))
    signals = hits.signals.iloc[order].reset_index(drop=True)
    return [RawHits(signals.iloc[a:b].reset_index(drop=True), PackedStrings.from_arrow(evidence.slice(a, b - a)))
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]


def _rank_within(keys: np.ndarray, presorted: bool = False) -> np.ndarray:
    """1-based position of each row among the rows with the same key, in the current order."""
    order = np.arange(keys.size) if presorted else np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, keys.size]))
    ranks = np.empty(keys.size, dtype=np.int64)
    ranks[order] = np.arange(keys.size) - group_start + 1
    return ranks


def rank_group(pieces: list[RawHits], sessions: np.ndarray) -> RankedHits:
    """Order one session group's hits by date then strength, and rank them (1 = strongest
    by score; ties by symbol then signal) within their family and overall, per session."""
    signals = pd.concat([p.signals for p in pieces], ignore_index=True)
    codes = signals["symbol_code"].to_numpy().astype(np.int64)
    ids = signals["signal_id"].to_numpy().astype(np.int64)
    day = np.searchsorted(sessions, signals["date"].to_numpy(dtype="datetime64[ns]"))
    order = np.lexsort((codes * len(SIGNAL_NAMES) + ids, -signals["score"].to_numpy(), day))
    codes, ids, day = codes[order], ids[order], day[order]
    numbers = pd.DataFrame({
        "date": np.asarray(sessions, dtype="datetime64[ns]")[day],
        "symbol_code": codes,
        "signal_id": ids,
        "direction": signals["direction"].to_numpy()[order].astype(np.int8),
        "score": signals["score"].to_numpy()[order].astype(np.float64),
        "rank_family": _rank_within(day * len(FAMILIES) + _FAMILY_OF_SIGNAL[ids]),
        "rank_overall": _rank_within(day, presorted=True),
    })
    evidence = pa.chunked_array([p.evidence.to_arrow() for p in pieces], type=pa.large_string()).combine_chunks()
    return RankedHits(numbers, PackedStrings.from_arrow(evidence.take(pa.array(order, type=pa.int64()))))


def name_ranked(ranked: RankedHits, names: np.ndarray, sectors: pd.Series) -> pd.DataFrame:
    """The signals frame (``scan.SIGNAL_COLUMNS``) of one ranked group."""
    numbers = ranked.numbers
    codes, ids = numbers["symbol_code"].to_numpy(), numbers["signal_id"].to_numpy()
    sector_codes, sector_names = pd.factorize(sectors.reindex(names).fillna("Unknown"))
    return pd.DataFrame({
        "date": numbers["date"].to_numpy(dtype="datetime64[ns]"),
        "symbol": arrow_strings(codes, names),
        "sector": arrow_strings(sector_codes[codes], sector_names),
        "family": arrow_strings(_FAMILY_OF_SIGNAL[ids], FAMILIES),
        "signal": arrow_strings(ids, SIGNAL_NAMES),
        "direction": numbers["direction"].to_numpy(),
        "score": numbers["score"].to_numpy(),
        "rank_family": numbers["rank_family"].to_numpy(),
        "rank_overall": numbers["rank_overall"].to_numpy(),
        "evidence": pd.array(ranked.evidence.to_arrow(), dtype="string"),
    })


def ranked_signals(pieces: list[RawHits], sessions: np.ndarray, names: np.ndarray, sectors: pd.Series) -> pd.DataFrame:
    """One session group's finished signals frame: ranked, then named."""
    return name_ranked(rank_group(pieces, sessions), names, sectors)

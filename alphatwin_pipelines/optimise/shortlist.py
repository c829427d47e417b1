"""The symbols a research run studies: the scanner's best-ranked, then the most liquid, as of one session.

The scanner lists only the symbols with a signal on its session: on 100 real S&P 500 names that is
about half of them on a given day, so a shortlist of the scanner alone would quietly study fewer
symbols than configured. The rest of the shortlist is filled with the symbols that traded most
(median dollar volume, unadjusted close × volume, over the last ``LIQUIDITY_SESSIONS`` stored
cleaned sessions up to the scanner session) among those with a bar on that session, so nothing after
the session is read and the same store gives the same list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import CLEANED, SCANNER, UNIVERSE

#: Sessions of dollar volume that rank the symbols filling the shortlist (about a quarter).
LIQUIDITY_SESSIONS = 63


@dataclass
class Shortlist:
    symbols: list[str]
    scanner_partition: pd.Timestamp
    filled: list[str] = field(default_factory=list)  # the symbols added by liquidity, not by the scanner


def select_shortlist(store: TableStore, size: int, sector: str | None = None, symbols=None) -> Shortlist:
    """The ``size`` best-ranked distinct symbols of the last scanner partition (rank_overall, then symbol),
    filled up to ``size`` with the most liquid other symbols of the same session (see the module)."""
    stored = store.stored_sessions(SCANNER)
    if len(stored) == 0:
        raise FileNotFoundError(f"{SCANNER} has no partitions under {store.data_dir}: materialise the scanner first")
    session = stored[-1]
    rows = store.read_partitions(SCANNER, session, session, columns=["symbol", "sector", "rank_overall"])
    wanted = None if symbols is None else {str(s).strip().upper() for s in symbols}
    if sector is not None:
        rows = rows[rows["sector"].astype(str).str.casefold() == sector.strip().casefold()]
    if wanted is not None:
        rows = rows[rows["symbol"].astype(str).isin(wanted)]
    ranked = rows.assign(symbol=rows["symbol"].astype(str)).sort_values(["rank_overall", "symbol"], kind="stable")
    picked = list(ranked.drop_duplicates("symbol")["symbol"].head(int(size)))
    filled = []
    if len(picked) < size:
        candidates = most_liquid(store, session, sector, wanted)
        filled = [s for s in candidates if s not in set(picked)][: int(size) - len(picked)]
    if not picked and not filled:
        if wanted is not None:
            raise ValueError(f"none of the symbols {sorted(wanted)} has a {SCANNER} row or a {CLEANED} bar on "
                             f"{session:%Y-%m-%d}: pick symbols that traded that session or leave the list empty")
        known = sorted(store.read_partitions(SCANNER, session, session, columns=["sector"])["sector"].astype(str).unique())
        raise ValueError(f"no {SCANNER} row or {CLEANED} bar of {session:%Y-%m-%d} is in sector {sector!r}; "
                         f"sectors there: {known}")
    return Shortlist(symbols=sorted(picked + filled), scanner_partition=session, filled=sorted(filled))


def most_liquid(store: TableStore, session: pd.Timestamp, sector: str | None = None, wanted=None) -> list[str]:
    """Symbols with a cleaned bar on ``session``, by median dollar volume over the last
    ``LIQUIDITY_SESSIONS`` stored sessions up to it (highest first, then symbol); [] without cleaned bars."""
    stored = store.stored_sessions(CLEANED)
    stored = stored[stored <= session]
    if len(stored) == 0 or stored[-1] != session:
        return []
    bars = store.read_partitions(CLEANED, stored[-LIQUIDITY_SESSIONS:][0], session,
                                 columns=["symbol", "date", "close", "volume"])
    listed = set(bars.loc[bars["date"] == session, "symbol"].astype(str))
    if sector is not None:
        sectors = store.read_table(UNIVERSE, columns=["symbol", "sector"])
        listed &= set(sectors.loc[sectors["sector"].astype(str).str.casefold() == sector.strip().casefold(), "symbol"])
    if wanted is not None:
        listed &= wanted
    bars = bars[bars["symbol"].astype(str).isin(listed)]
    dollars = (bars["close"] * bars["volume"]).groupby(bars["symbol"].astype(str)).median()
    return list(dollars.reset_index(name="dollars").sort_values(["dollars", "symbol"], ascending=[False, True],
                                                              kind="stable")["symbol"])

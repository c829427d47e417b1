"""Realistic data defects injected into the synthetic market, with the ground truth of each.

Real feeds deliver bad prints, swapped columns, stale repeats, missing and duplicated rows and
splits nobody recorded; a demo market without them never exercises the quarantine, the
warnings or the missing-session check. Each defect is decided from the symbol's own
``defects`` stream at a fixed position per block of sessions, and only from what is known at
or before the session it touches (calendar dividends, the listing window, splits so far), so
a partition re-fetched alone equals the same partition fetched inside any range.

At most one defect falls in each block of ``BLOCK`` sessions of a symbol, away from the block
edges, so two defects never sit next to each other: one bad print cannot hide another, and
the rules' verdicts (the expected rule per kind) stay the same however a range is cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alphatwin_pipelines.calendar import all_sessions
from alphatwin_pipelines.sources.base import SourceConfigError
from alphatwin_pipelines.sources.synthetic_model import Panel, ex_dividend_rows, stream

#: Expected defects per (symbol, session); ``ALPHATWIN_SYNTHETIC_DEFECTS`` overrides it, 0 turns them off.
DEFAULT_DEFECT_RATE = 0.0005
BLOCK = 32  # sessions per block; one defect at most in each
OFFSETS = (6, 26)  # a block's defect lands on one of these offsets (half-open), >= 12 sessions from the next
DRAWS = 5  # uniforms per block: happens, offset, kind, parameter, unrecorded split
MAX_RATE = 1.0 / BLOCK
#: A split goes unrecorded this many times more often than a bar is damaged (both are rare).
UNRECORDED_SPLIT_BOOST = 100
BAD_PRINT_FACTORS = (10.0, 100.0, 0.1, 0.01)
STALE_REPEATS = (4, 8)  # the first bar is repeated on 4..8 later sessions: 5..9 identical bars


@dataclass(frozen=True)
class DefectKind:
    name: str
    expected_rule: str  # the quality rule that should catch it
    outcome: str  # "quarantined" (ERROR rule), "flagged" (WARNING rule) or "missing" (missing-session check)
    weight: float  # share of damaged blocks
    description: str


DEFECT_KINDS: tuple[DefectKind, ...] = (
    DefectKind("bad_print", "ohlc.close_above_high", "quarantined", 0.20,
               "the close off by 10x or 100x (a bad last print); below the low when divided"),
    DefectKind("ohlc_order", "ohlc.low_above_high", "quarantined", 0.15, "high and low swapped"),
    DefectKind("duplicate_row", "key.duplicate", "quarantined", 0.15, "the bar delivered twice"),
    DefectKind("stale_bars", "price.stale", "flagged", 0.15, "the bar repeated unchanged on the next sessions"),
    DefectKind("zero_volume", "volume.zero", "flagged", 0.15, "volume 0 on a day that traded"),
    DefectKind("missing_session", "session.gap_before", "missing", 0.20,
               "no bar for a session the symbol was listed on"),
)
UNRECORDED_SPLIT = DefectKind("unrecorded_split", "return.outlier", "flagged", 0.0,
                              "a forward split whose ratio the feed left at 1.0")
# A 1-for-10 reverse split multiplies the price by 10, beyond the extreme-move bound: its first
# bar is rejected like a 10x print, and the bars after it are judged against that bar in both
# passes of the quality stage (``QualityReport.recheck_context``), so they stay validated.
UNRECORDED_REVERSE_SPLIT = DefectKind("unrecorded_reverse_split", "return.extreme_outlier", "quarantined", 0.0,
                                      "a reverse split whose ratio the feed left at 1.0")
_STALE = next(k for k in DEFECT_KINDS if k.name == "stale_bars")
_CDF = np.cumsum([k.weight for k in DEFECT_KINDS]) / sum(k.weight for k in DEFECT_KINDS)
DEFECT_COLUMNS = ("symbol", "date", "kind", "expected_rule", "outcome", "detail")


def check_rate(rate: float) -> float:
    rate = float(rate)
    if not 0.0 <= rate <= MAX_RATE:
        raise SourceConfigError(
            f"ALPHATWIN_SYNTHETIC_DEFECTS must be a rate between 0 (no defects) and {MAX_RATE:.4g}, got {rate}"
        )
    return rate


@dataclass(frozen=True)
class Defect:
    member: int  # position in the render's member list
    row: int  # session index the defect is seen on
    kind: DefectKind
    parameter: float = 0.0  # bad-print factor, or the number of stale repeats
    source_row: int = -1  # stale bars: the session whose bar is repeated


def plan_defects(panel: Panel, seed: int, members: np.ndarray, rows: np.ndarray, rate: float) -> list[Defect]:
    """Defects of companies ``members`` that touch session indices ``rows`` (not yet checked
    against the rendered bars: :func:`apply_defects` drops those that change nothing)."""
    if rate <= 0 or rows.size == 0:
        return []
    first_block, last_block = max(int(rows[0]) - BLOCK, 0) // BLOCK, int(rows[-1]) // BLOCK
    wanted = set(rows.tolist())
    plan = []
    for j, i in enumerate(members):
        c, symbol = panel.companies[i], panel.symbols[i]
        bits = stream(seed, symbol, "defects")
        bits.advance(first_block * DRAWS)
        draws = np.random.Generator(bits).random((last_block - first_block + 1, DRAWS))
        split_rows, split_ratios = panel.splits[i]
        dividends = set(ex_dividend_rows(c.dividend_phase, c.dividend_day).tolist()) if c.quarterly_yield else set()
        last = np.inf if c.delist_row is None else c.delist_row
        for block, u in zip(range(first_block, last_block + 1), draws):
            start = block * BLOCK
            in_block = (split_rows >= start) & (split_rows < start + BLOCK)  # one at most (cooldown > BLOCK)
            if in_block.any() and u[4] < min(1.0, rate * UNRECORDED_SPLIT_BOOST) and int(split_rows[in_block][0]) in wanted:
                kind = UNRECORDED_SPLIT if split_ratios[in_block][0] > 1 else UNRECORDED_REVERSE_SPLIT
                plan.append(Defect(j, int(split_rows[in_block][0]), kind))
            if u[0] >= rate * BLOCK:
                continue
            row = start + OFFSETS[0] + int(u[1] * (OFFSETS[1] - OFFSETS[0]))
            kind = DEFECT_KINDS[int(np.searchsorted(_CDF, u[2], side="right"))]
            # Away from the listing edges (a gap there is invisible) and from corporate actions
            # (whose own rules would then judge the damaged bar); splits only as far as known.
            quiet = not ({row - 1, row, row + 1} & dividends) and not np.isin([row - 1, row], split_rows).any()
            if not (c.list_row < row < last) or not quiet:
                continue
            if kind is _STALE:
                repeats = STALE_REPEATS[0] + int(u[3] * (STALE_REPEATS[1] - STALE_REPEATS[0] + 1))
                plan += _stale(j, row, repeats, split_rows, dividends, last, wanted)
            elif row in wanted:
                factor = BAD_PRINT_FACTORS[int(u[3] * len(BAD_PRINT_FACTORS))] if kind.name == "bad_print" else 0.0
                plan.append(Defect(j, row, kind, factor))
    return plan


def _stale(j, source_row, repeats, split_rows, dividends, last, wanted) -> list[Defect]:
    """The bar of ``source_row`` repeated on the next sessions, up to a corporate action."""
    out = []
    for n in range(1, repeats + 1):
        row = source_row + n
        if row >= last or row in dividends or row in split_rows:
            break
        if row in wanted:
            out.append(Defect(j, row, _STALE, float(n), source_row))
    return out


def apply_defects(bars: dict[str, np.ndarray], rows: np.ndarray, plan: list[Defect]) -> list[Defect]:
    """Damage ``bars`` (member x ``rows`` arrays) in place; returns the defects that took effect.

    ``bars`` gains ``copies`` (1, or 2 for a duplicated row); a missing session clears ``listed``.
    """
    column = {int(r): k for k, r in enumerate(rows)}
    bars["copies"] = np.ones(bars["close"].shape, dtype=np.int64)
    applied = []
    for d in plan:
        j, k = d.member, column[d.row]
        name = d.kind.name
        if name == "bad_print":
            bars["close"][j, k] = np.round(bars["close"][j, k] * d.parameter, 4)
        elif name == "ohlc_order":
            if bars["high"][j, k] == bars["low"][j, k]:
                continue  # a flat bar: swapping changes nothing
            bars["high"][j, k], bars["low"][j, k] = bars["low"][j, k], bars["high"][j, k]
        elif name == "duplicate_row":
            bars["copies"][j, k] = 2
        elif name == "stale_bars":
            for field in ("open", "high", "low", "close", "volume"):
                bars[field][j, k] = bars[field][j, column[d.source_row]]
        elif name == "zero_volume":
            bars["volume"][j, k] = 0
        elif name == "missing_session":
            bars["listed"][j, k] = False
        elif name in ("unrecorded_split", "unrecorded_reverse_split"):
            bars["split_ratio"][j, k] = 1.0
        applied.append(d)
    return applied


def defects_frame(applied: list[Defect], symbols: list[str]) -> pd.DataFrame:
    """The ground truth: one row per damaged (symbol, session), sorted like bars."""
    sessions = all_sessions()
    records = []
    for d in applied:
        detail = d.kind.description
        expected = d.kind.expected_rule
        if d.kind.name == "bad_print":
            detail = f"close x{d.parameter:g}"
            expected = "ohlc.close_above_high" if d.parameter > 1 else "ohlc.low_above_close"
        elif d.kind.name == "stale_bars":
            detail = f"repeats the bar of {sessions[d.source_row]:%Y-%m-%d} ({int(d.parameter)} repeat(s) so far)"
            if d.parameter < STALE_REPEATS[0]:
                expected = ""  # fewer than 5 identical bars: not yet distinguishable from a quiet market
        records.append((symbols[d.member], sessions[d.row], d.kind.name, expected, d.kind.outcome, detail))
    frame = pd.DataFrame.from_records(records, columns=list(DEFECT_COLUMNS))
    frame = frame.astype({c: "string" for c in DEFECT_COLUMNS if c != "date"}).astype({"date": "datetime64[ns]"})
    return frame.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)

"""A listing's first sessions: before its return baseline exists (about 2 x MIN_HISTORY sessions),
the extreme-move rule judges it against a neutral one (a median move of 0 at the MAD floor), so a
bad print or an unrecorded 1-for-10 reverse split there is still quarantined, while a recorded
split or a large but possible move is not."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from alphatwin_pipelines.quality import validate
from alphatwin_pipelines.quality.catalogue_series import MIN_HISTORY
from alphatwin_pipelines.stages.quality import residual_errors
from test_quality_rules import AS_OF, OHLC, bars

EXTREME = "return.extreme_outlier"


def _row(raw: pd.DataFrame, symbol: str, nth: int) -> int:
    return int(np.flatnonzero(raw["symbol"].to_numpy() == symbol)[nth])


def _scale(raw: pd.DataFrame, symbol: str, nth: int, factor: float, *, onwards: bool = False) -> int:
    row = _row(raw, symbol, nth)
    rows = ((raw["symbol"] == symbol) & (raw.index >= row)).to_numpy() if onwards else [row]
    raw.loc[rows, OHLC] = np.round(raw.loc[rows, OHLC].to_numpy(dtype=float) * factor, 2)
    return row


def _rejected(result) -> dict[int, str]:
    quarantined = result.quarantined[result.quarantined["action"] == "rejected"]
    return dict(zip(quarantined["raw_row"].astype(int), quarantined["rule_id"]))


def test_bad_prints_and_an_unrecorded_reverse_split_in_the_first_sessions_are_quarantined():
    raw = bars(sessions=60)
    up = _scale(raw, "AAPL", 5, 10.0)  # a 10x print, the next bar back at the right price
    down = _scale(raw, "XOM", 12, 0.1)
    split = _scale(raw, "MSFT", 8, 10.0, onwards=True)  # 1-for-10, ratio left at 1.0
    assert max(5, 12, 8) < 2 * MIN_HISTORY  # no baseline yet for any of them
    result = validate(raw, as_of=AS_OF)
    assert _rejected(result) == {up: EXTREME, down: EXTREME, split: EXTREME}
    # The bar after each is judged against the rejected one: back down (a reversal) or ordinary.
    validated = set(result.validated["raw_row"])
    assert {up + 1, down + 1, split + 1} <= validated
    text = result.quarantined.set_index("raw_row").loc[up, "offending_value"]
    assert re.search(r"\(\+8\d\d%, \d+ MADs\)$", text), text  # MADs of the neutral baseline
    context = raw.iloc[sorted(_rejected(result))]
    assert residual_errors(result.validated, context, as_of=AS_OF).empty


def test_a_recorded_split_or_a_large_possible_move_on_a_young_listing_is_not_an_error():
    raw = bars(sessions=60)
    split = _scale(raw, "MSFT", 8, 10.0, onwards=True)
    raw.loc[split, "split_ratio"] = 0.1  # recorded: adjusted, the move is ordinary
    jump = _scale(raw, "AAPL", 6, 3.0, onwards=True)  # +200 %: news, not beyond the 5x bound
    result = validate(raw, as_of=AS_OF)
    assert result.quarantined.empty
    flags = result.validated.set_index("raw_row")["flags"]
    assert EXTREME not in flags.loc[[split, jump]].str.cat(sep=",")

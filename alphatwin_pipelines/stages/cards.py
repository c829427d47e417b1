"""Strategy cards stage: validation reports + OOS returns + adjusted bars in; card files out.

For every ``validation_reports`` row (sorted by strategy id): build the card, write its files
as an immutable content-hashed version under ``<data_dir>/cards/<strategy_id>/`` and put the
card into the strategy's HTML report (a ``<section id="strategy-card">`` replaced in place, so
re-running gives the same page). A strategy whose spec cannot be read or exported to a target
gets a card that says so; the other cards and targets are still written. The index table
``strategy_cards`` (one row per strategy: version, folder relative to the data directory,
files, errors) is replaced atomically at the end.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from alphatwin_pipelines.atomic import atomic_write_bytes
from alphatwin_pipelines.cards.card import Card, build_card
from alphatwin_pipelines.cards.store import write_version
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.strategies import MarketArrays
from alphatwin_pipelines.tables import (
    STRATEGY_CARDS, STRATEGY_RETURNS, VALIDATION, read_adjusted, resolve_stored_path, stored_path,
)

CARD_COLUMNS = ("strategy_id", "family", "level", "passed", "version", "card_dir", "files", "errors",
                "not_exported")
_SECTION = re.compile(r'\n?<section id="strategy-card">.*?</section>\n?', re.S)


@dataclass
class CardsRun:
    table: pd.DataFrame
    cards: list[Card]
    created: int  # versions written by this run (the others existed already)

    @property
    def errors(self) -> list[str]:
        return [e for c in self.cards for e in c.errors]

    @property
    def unsupported(self) -> list[str]:
        return [e for c in self.cards for e in c.unsupported]


def _market_for(row: dict, universe: MarketArrays | None) -> MarketArrays | None:
    try:
        symbols = json.loads(row.get("symbols_json") or "[]")
    except ValueError:
        return None
    if universe is None or not symbols or not set(symbols) <= set(universe.symbols):
        return None
    return universe.select(symbols)


def _universe(store: TableStore, reports: pd.DataFrame) -> MarketArrays | None:
    """All adjusted bars; with the stored alpha scores when an ml_rank strategy needs them."""
    if not len(reports):
        return None
    universe = MarketArrays.from_bars(read_adjusted(store), price="adj")
    if (reports["family"] == "ml_rank").any():
        from alphatwin_pipelines.alpha.scores import attach_scores

        universe = attach_scores(store, universe)
    return universe


def card_html(card: Card) -> str:
    """The card as an HTML section (chart inline as a data URI: the report stays one offline file)."""
    d = card.data
    parts = ['<section id="strategy-card">', f"<h2>Strategy card: {html.escape(d['title'])}</h2>", "<ul>"]
    for section, sentences in d["rules"].items():
        parts += [f"<li><b>{html.escape(section.capitalize())}</b>: {html.escape(s)}</li>" for s in sentences]
    parts.append("</ul><h3>Gates</h3><ul>")
    for g in d["gates"]:
        css = "pass" if g["passed"] else "fail"
        parts.append(f'<li class="{css}">{html.escape(g["gate"])}: {html.escape(g["sentence"])}</li>')
    parts.append("</ul>")
    if card.chart:
        parts.append(f'<img alt="entries and exits" src="data:image/png;base64,{base64.b64encode(card.chart).decode()}">')
    if d["code"]:
        parts.append("<p>Code: " + ", ".join(html.escape(f"{t}: {f}") for t, f in d["code"].items()) + "</p>")
    parts += [f'<p class="fail">{html.escape(e)}</p>' for e in d["errors"]]
    parts += [f"<p>Not exported: {html.escape(e)}</p>" for e in d["not_exported"]]
    parts.append("</section>")
    return "\n".join(parts)


def put_card_in_report(page, section: str) -> bool:
    """Replace (or add) the card section of one report page; False when there is no page."""
    if not page.is_file():
        return False
    old = page.read_bytes()
    text = _SECTION.sub("\n", old.decode("utf-8"))
    body_end = text.rfind("</body>")
    if body_end < 0:
        text = text + "\n" + section + "\n"
    else:
        text = text[:body_end].rstrip("\n") + "\n" + section + "\n" + text[body_end:]
    data = text.encode("utf-8")
    if data != old:  # a re-run with the same card leaves the page (and its object) untouched
        atomic_write_bytes(page, lambda tmp: Path(tmp).write_bytes(data))
    return True


def _report_page(store: TableStore, path):
    if not isinstance(path, str) or not path:
        return None
    return resolve_stored_path(store, path)


def build_strategy_cards(store: TableStore) -> CardsRun:
    """Cards for every validated strategy (module docstring)."""
    reports = store.read_table(VALIDATION)
    returns = store.read_table(STRATEGY_RETURNS, columns=["date", "strategy_id", "return"])
    universe = _universe(store, reports)
    rows, cards, created = [], [], 0
    for row in reports.sort_values("strategy_id").to_dict("records"):
        mine = returns[returns["strategy_id"] == row["strategy_id"]].sort_values("date")
        oos = pd.Series(mine["return"].to_numpy(dtype=float), index=pd.DatetimeIndex(mine["date"]), name="return")
        card = build_card(row, _market_for(row, universe), oos)
        folder, new = write_version(store.data_dir, card.strategy_id, card.files)
        created += new
        page = _report_page(store, row.get("report_path"))
        if page is not None:
            put_card_in_report(page, card_html(card))
        cards.append(card)
        rows.append({"strategy_id": card.strategy_id, "family": str(row.get("family")), "level": int(row["level"]),
                     "passed": card.passed, "version": folder.name,
                     "card_dir": stored_path(store, folder),
                     "files": json.dumps(sorted(card.files)), "errors": "; ".join(card.errors),
                     "not_exported": "; ".join(card.unsupported)})
    table = pd.DataFrame(rows, columns=list(CARD_COLUMNS)).astype({"level": "int64", "passed": "bool"})
    store.write_table(STRATEGY_CARDS, frame_to_arrow(table))
    return CardsRun(table, cards, created)

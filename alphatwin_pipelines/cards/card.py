"""One strategy card: rules in plain language, gates in one sentence each, chart and code files.

A card is built from a ``validation_reports`` row, the strategy's symbols' adjusted bars and
its walk-forward out-of-sample returns. A spec that cannot be read or exported still gets a
card: the problem is stated on it (naming the strategy and the target) and in ``errors``.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field

import pandas as pd

from alphatwin_pipelines.cards.export import DEFAULT_COSTS, TARGETS, ExportError, export
from alphatwin_pipelines.cards.rules import SECTIONS, rule_sections
from alphatwin_pipelines.reports.gates import BENCHMARK_GATE, DSR_GATE, GATES, OOS_SHARPE_GATE, PBO_GATE
from alphatwin_pipelines.strategies import MarketArrays, StrategySpec, generate
from alphatwin_pipelines.strategies.books import generate_book
from alphatwin_pipelines.strategies.spec import BOOK_FAMILIES

CHART_FILE, JSON_FILE, MARKDOWN_FILE = "chart.png", "card.json", "card.md"
#: How each gate's failure reason begins (reports.gates.gate_failures; a test keeps them in step).
REASON_PREFIX = {DSR_GATE: "DSR", PBO_GATE: "PBO", OOS_SHARPE_GATE: "out-of-sample Sharpe",
                 BENCHMARK_GATE: "benchmarks"}
GATE_LABEL = {DSR_GATE: "Deflated Sharpe Ratio", PBO_GATE: "Probability of Backtest Overfitting",
              OOS_SHARPE_GATE: "Out-of-sample Sharpe",
              BENCHMARK_GATE: "Lowest information ratio against the benchmarks"}
_PASS_WHY = {
    DSR_GATE: "the in-sample Sharpe is clearly above what the best of {n} lucky trials would show",
    PBO_GATE: "the study's best trial did not fall to the bottom half out of sample in most CSCV splits",
    OOS_SHARPE_GATE: "the walk-forward earned enough return per unit of risk after costs",
    BENCHMARK_GATE: "the walk-forward compounded more than every benchmark of its report over the same sessions",
}


@dataclass
class Card:
    strategy_id: str
    title: str
    passed: bool
    data: dict  # what card.json holds
    files: dict[str, bytes] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # bad specs or missing inputs
    unsupported: list[str] = field(default_factory=list)  # valid specs a target cannot express
    chart: bytes | None = None

    def markdown(self, embed_chart: bool = False) -> str:
        """The card as Markdown; ``embed_chart`` inlines the PNG (for the Dagster UI)."""
        return card_markdown(self.data, self.chart if embed_chart else None)


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{float(x):.2f}"


def gate_sentences(row: dict) -> list[dict]:
    """One sentence per gate: its reason when it failed (from the row's ``reasons``), else why it passed."""
    reasons = [r for r in str(row.get("reasons") or "").split("; ") if r]
    values = {DSR_GATE: row.get("dsr"), PBO_GATE: row.get("pbo"), OOS_SHARPE_GATE: row.get("oos_sharpe"),
              BENCHMARK_GATE: row.get("information_ratio")}
    out = []
    for gate in GATES:
        failed = [r for r in reasons if r.startswith(REASON_PREFIX[gate])]
        if failed:
            sentence = f"Failed: {failed[0]}."
        else:
            why = _PASS_WHY[gate].format(n=row.get("dsr_n_trials", row.get("n_trials", "the")))
            sentence = f"Passed: {GATE_LABEL[gate]} {_fmt(values[gate])}; {why}."
        out.append({"gate": gate, "passed": not failed, "sentence": sentence})
    return out


def _costs(row: dict) -> dict:
    try:
        recorded = json.loads(row.get("record_json") or "{}")["validation"]["settings"]["costs"]
    except (KeyError, TypeError, ValueError):
        recorded = {}
    return {**DEFAULT_COSTS, **recorded}


def _chart(spec, market: MarketArrays, oos: pd.Series, title: str) -> tuple[bytes, str]:
    from alphatwin_pipelines.cards.chart import entry_exit_chart, growth, representative_symbol

    if spec.family in BOOK_FAMILIES:  # positions opened / closed by the book's targets (longs and shorts)
        held = pd.DataFrame(generate_book(spec, market).weights, index=market.dates, columns=list(market.symbols))
        held = held.ffill().fillna(0.0) != 0
        before = held.shift(1, fill_value=False)
        entries, exits = held & ~before, ~held & before
    else:
        sig = generate(spec, market)
        entries = pd.DataFrame(sig.entries, index=market.dates, columns=list(market.symbols))
        exits = pd.DataFrame(sig.exits, index=market.dates, columns=list(market.symbols))
    window = oos.index if len(oos) else market.dates[-252:]
    entries, exits = entries.loc[entries.index.isin(window)], exits.loc[exits.index.isin(window)]
    symbol = representative_symbol(entries, exits)
    close = market.frame("close")[symbol].loc[entries.index].rename(symbol)
    png = entry_exit_chart(close, entries[symbol], exits[symbol], growth(oos), f"{title}: {symbol}, out of sample")
    return png, symbol


def build_card(row: dict, market: MarketArrays | None, oos: pd.Series, init_cash: float = 100_000.0) -> Card:
    """The card of one ``validation_reports`` row (never raises for a bad spec: see ``errors``)."""
    sid = str(row["strategy_id"])
    errors: list[str] = []
    try:
        symbols = [str(x) for x in json.loads(row.get("symbols_json") or "[]")]
    except (TypeError, ValueError):
        symbols = []
        errors.append(f"strategy {sid}: symbols_json is not a JSON list of symbols ({row.get('symbols_json')!r})")
    costs = _costs(row)
    title = f"{row.get('family')} level {row.get('level')} ({sid[:12]})"
    unsupported: list[str] = []
    files: dict[str, bytes] = {}
    exported = {}
    for target in TARGETS:
        try:
            ex = export(sid, row["spec_json"], target, costs=costs, symbols=symbols, init_cash=init_cash)
            files[ex.filename] = ex.text.encode("utf-8")
            exported[target] = ex.filename
        except ExportError as exc:
            (unsupported if exc.unsupported else errors).append(str(exc))
    try:
        spec = StrategySpec.from_json(row["spec_json"])
    except (KeyError, TypeError, ValueError) as exc:  # each target's error above names it too
        spec, rules = None, {"error": [f"strategy {sid}: the spec cannot be read ({exc}), so no rules are stated"]}
    else:
        rules = rule_sections(spec, costs, symbols)
    chart, symbol = None, None
    if spec is not None and market is not None:
        chart, symbol = _chart(spec, market, oos, title)
        files[CHART_FILE] = chart
    elif spec is not None:
        errors.append(f"strategy {sid}, target chart: no adjusted bars for its symbols {symbols}; "
                      "materialise cleaned_ohlcv for them")
    data = {
        "strategy_id": sid, "title": title, "family": row.get("family"), "level": int(row.get("level", 0)),
        "spec": json.loads(row["spec_json"]) if spec is not None else row.get("spec_json"),
        "spec_hash": spec.spec_hash() if spec is not None else None, "symbols": symbols,
        "passed": bool(row.get("passed")), "rules": rules, "gates": gate_sentences(row),
        "out_of_sample": {k: (None if v is None or not math.isfinite(float(v)) else round(float(v), 6))
                          for k, v in (("sharpe", row.get("oos_sharpe")), ("cagr", row.get("oos_cagr")),
                                       ("max_drawdown", row.get("oos_max_drawdown")))},
        "chart": {"file": CHART_FILE, "symbol": symbol,
                  "period": [f"{oos.index[0]:%Y-%m-%d}", f"{oos.index[-1]:%Y-%m-%d}"] if len(oos) else None}
        if chart else None,
        "code": exported, "errors": errors, "not_exported": unsupported,
    }
    files[JSON_FILE] = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")
    files[MARKDOWN_FILE] = card_markdown(data, None).encode("utf-8")
    return Card(sid, title, bool(row.get("passed")), data, files, errors, unsupported, chart)


def card_markdown(data: dict, chart: bytes | None) -> str:
    verdict = "passed every gate" if data["passed"] else "did not pass the gates"
    lines = [f"### {data['title']}: {verdict}", ""]
    for section in (*SECTIONS, "error"):
        for sentence in data["rules"].get(section, []):
            lines.append(f"- **{section.capitalize()}**: {sentence}")
    lines += ["", "**Gates**", ""]
    lines += [f"- {'✅' if g['passed'] else '❌'} {g['sentence']}" for g in data["gates"]]
    oos = data["out_of_sample"]
    lines += ["", f"**Out of sample** (walk-forward, after costs): Sharpe {_fmt(oos['sharpe'])}, "
                  f"CAGR {_fmt(oos['cagr'])}, max drawdown {_fmt(oos['max_drawdown'])}", ""]
    if data["chart"]:
        src = f"data:image/png;base64,{base64.b64encode(chart).decode()}" if chart else data["chart"]["file"]
        lines += [f"![entries and exits of {data['chart']['symbol']}]({src})", ""]
    if data["code"]:
        lines.append("**Code**: " + ", ".join(f"{t} `{f}`" for t, f in data["code"].items()))
    lines += [f"- ⚠️ {err}" for err in data["errors"]]
    lines += [f"- Not exported: {why}" for why in data["not_exported"]]
    return "\n".join(lines).rstrip() + "\n"

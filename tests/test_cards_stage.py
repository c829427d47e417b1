"""The strategy_cards stage and asset: one card per validated strategy, content-hashed versions,
the card in the HTML report, bad specs named while the other cards are still written."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from alphatwin_pipelines.cards.store import content_version
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.stages.cards import build_strategy_cards
from alphatwin_pipelines.reports import GATES, ValidationSettings
from alphatwin_pipelines.stages.validation import validate_strategies
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import STRATEGY_CARDS, VALIDATION
from alphatwin_pipelines.reports import ValidationSettings
from test_validation_reports import write_study_tables

STUDIES = [("ma_cross", 3), ("donchian_breakout", 7)]
PAIRS, CROSSED = "0" * 64, "1" * 64


@pytest.fixture
def validated_dir(research_dir):
    store = TableStore(research_dir)
    write_study_tables(store, STUDIES)
    validate_strategies(store, ValidationSettings(train=100, test=40, trials_per_window=3))
    reports = store.read_table(VALIDATION)
    good = reports.iloc[0].to_dict()
    good["report_path"] = ""  # the bad rows have no report page
    bad = [{**good, "strategy_id": PAIRS, "family": "calendar_spread", "level": 0,
            "spec_json": json.dumps({"family": "calendar_spread", "level": 0, "params": {"z_entry": 2.0}, "version": 1})},
           {**good, "strategy_id": CROSSED, "family": "ma_cross", "level": 0,
            "spec_json": json.dumps({"family": "ma_cross", "level": 0, "params": {"fast": 80, "slow": 50}, "version": 1})}]
    import pandas as pd

    store.write_table(VALIDATION, frame_to_arrow(pd.concat([reports, pd.DataFrame(bad)], ignore_index=True)))
    return research_dir


def _cards(data_dir):
    return {p.relative_to(data_dir): p.read_bytes() for p in sorted((data_dir / "cards").rglob("*")) if p.is_file()}


def test_cards_for_every_strategy_and_bad_specs_named(validated_dir):
    store = TableStore(validated_dir)
    run = build_strategy_cards(store)
    table = store.read_table(STRATEGY_CARDS)
    reports = store.read_table(VALIDATION).set_index("strategy_id")
    assert sorted(table["strategy_id"]) == sorted(reports.index) and run.created == len(reports)
    for row in table.itertuples():
        folder = validated_dir / row.card_dir
        files = {p.name: p.read_bytes() for p in folder.iterdir()}
        assert folder.parent.name == row.strategy_id and folder.name == row.version == content_version(files)
        card = json.loads(files["card.json"])
        assert card["passed"] == bool(reports.loc[row.strategy_id, "passed"]) and len(card["gates"]) == len(GATES)
        if row.strategy_id in (PAIRS, CROSSED):
            for target in ("python", "pine", "alpaca"):
                assert f"strategy {row.strategy_id}, target {target}:" in row.errors
            assert "chart.png" not in files and "strategy.py" not in files and card["code"] == {}
            assert card["rules"] == {"error": [card["rules"]["error"][0]]} and "spec cannot be read" in files["card.md"].decode()
            continue
        assert files["chart.png"][:8] == b"\x89PNG\r\n\x1a\n"
        assert card["chart"]["symbol"] in card["symbols"]
        assert files["card.md"].decode().count("- **Entry**") == 1 and "(chart.png)" in files["card.md"].decode()
        expected = {"strategy.py", "alpaca_orders.py"} | ({"strategy.pine"} if card["level"] < 6 else set())
        assert set(card["code"].values()) == expected and expected <= set(files)
        if card["level"] >= 6:
            assert f"strategy {row.strategy_id}, target pine: level {card['level']} uses" in row.not_exported
        assert row.errors == ""
        page = (validated_dir / "reports" / f"{row.strategy_id}.html").read_text()
        assert page.count('<section id="strategy-card">') == 1 and "data:image/png;base64," in page
        assert page.index('<section id="strategy-card">') < page.index("</body>")
    assert "for the family 'calendar_spread'" in table.set_index("strategy_id").loc[PAIRS, "errors"]
    assert "fast (80) must be below slow (50)" in table.set_index("strategy_id").loc[CROSSED, "errors"]


def test_versions_are_content_hashed_and_never_overwritten(validated_dir):
    store = TableStore(validated_dir)
    build_strategy_cards(store)
    before = _cards(validated_dir)
    pages = {p: p.read_bytes() for p in (validated_dir / "reports").glob("*.html")}
    again = build_strategy_cards(store)
    assert again.created == 0 and _cards(validated_dir) == before
    assert {p: p.read_bytes() for p in pages} == pages  # the card section is replaced, not added twice
    reports = store.read_table(VALIDATION)
    reports.loc[reports["strategy_id"] == CROSSED, "reasons"] = "PBO 0.90 > 0.50: a new reason"
    store.write_table(VALIDATION, frame_to_arrow(reports))
    third = build_strategy_cards(store)
    assert third.created == 1
    after = _cards(validated_dir)
    assert {k: v for k, v in after.items() if k in before} == before  # the old version is untouched
    new = [k for k in after if k not in before]
    assert new and all(k.parts[1] == CROSSED for k in new)
    card = json.loads(next(v for k, v in after.items() if k in new and k.name == "card.json"))
    assert card["gates"][1] == {"gate": "pbo", "passed": False, "sentence": "Failed: PBO 0.90 > 0.50: a new reason."}


def test_asset_shows_cards_in_metadata_and_warns_on_exports(validated_dir):
    from assets.cards import CARD_EXPORTS_CHECK, strategy_cards
    from assets.resources import StorageResource

    result = dg.materialize([strategy_cards], resources={"storage": StorageResource(data_dir=str(validated_dir))})
    assert result.success
    meta = result.asset_materializations_for_node(STRATEGY_CARDS)[0].metadata
    assert meta["cards"].value == len(STUDIES) + 2
    shown = [v.value for k, v in meta.items() if k.startswith("card ")]
    assert len(shown) == len(STUDIES) + 2
    assert sum("data:image/png;base64," in md for md in shown) == len(STUDIES)
    check = {e.check_name: e for e in result.get_asset_check_evaluations()}[CARD_EXPORTS_CHECK]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["problems"].value == 6  # 3 targets x 2 bad specs
    assert check.metadata["not_exported"].value == 1  # Pine for the level-7 strategy: a limit, not a problem


def test_a_card_without_bars_or_readable_symbols_says_so_and_keeps_its_code():
    import pandas as pd

    from alphatwin_pipelines.cards.card import build_card
    from alphatwin_pipelines.strategies import StrategySpec

    sid = "9" * 64
    card = build_card({"strategy_id": sid, "family": "ma_cross", "level": 0, "spec_json": StrategySpec("ma_cross").to_json(),
                       "symbols_json": "AAPL,MSFT", "passed": False, "reasons": ""}, None, pd.Series(dtype=float))
    assert card.errors[0].startswith(f"strategy {sid}: symbols_json is not a JSON list")
    assert card.errors[1].startswith(f"strategy {sid}, target chart: no adjusted bars")
    assert {"strategy.py", "strategy.pine", "alpaca_orders.py", "card.json", "card.md"} == set(card.files)
    assert card.chart is None and card.data["chart"] is None

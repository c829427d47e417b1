"""The Dagster UI as a user meets it: `dagster dev` on a throwaway instance, its GraphQL API
and the global asset lineage page in headless Chromium.

One `dagster dev` (webserver + daemon) serves the whole module. The universe is built by a
separate `dagster asset materialize` run started alongside the server (the backfill daemon only
looks at backfills every 30 s, so a universe inside the backfill would cost a whole extra
iteration); the backfill of raw_ohlcv → cleaned_ohlcv is launched through GraphQL exactly as
the UI's "Materialize" dialog does and is carried out by the daemon.

Expected names come from ``definitions.defs`` in this process, never from a list in this file,
so assets, checks, schedules, sensors and jobs added later are covered without edits.

The lineage screenshot goes to ``docs/img/lineage.png`` when ``ALPHATWIN_UPDATE_SCREENSHOT=1``
or the file is missing, otherwise to a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from ui_helpers import (
    Chromium,
    GraphQL,
    ServerUnavailable,
    find_chromium,
    free_port,
    png_crc_ok,
    png_size,
    start_process_group,
    stop_process_group,
    tail,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_e2e")]

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
SCREENSHOT = REPO_ROOT / "docs" / "img" / "lineage.png"
SESSIONS = ("2024-07-02", "2024-07-03", "2024-07-05")
NOT_SESSIONS = ("2024-07-04", "2024-07-06")  # Independence Day; a Saturday
BACKFILL_ASSETS = ("raw_ohlcv", "validated_ohlcv", "quarantined_ohlcv", "adjustment_factors", "cleaned_ohlcv")
UNIVERSE_SIZE = 8
WINDOW = (1600, 1000)
SERVER_TIMEOUT_S = 180
BACKFILL_TIMEOUT_S = 300
SUCCESS = "COMPLETED_SUCCESS"
FINISHED = {SUCCESS, "COMPLETED", "COMPLETED_FAILED", "FAILED", "CANCELED"}

WORKSPACE_QUERY = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename
        ... on PythonError { message }
        ... on RepositoryLocation { repositories { name
            jobs { name } schedules { name } sensors { name }
            assetNodes { assetKey { path } groupName
              assetChecksOrError { __typename ... on AssetChecks { checks { name } } } } } } } } }
    ... on PythonError { message } } }
"""
PARTITIONS_QUERY = """
query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename
    ... on AssetNode { isPartitioned partitionKeys } } }
"""
LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }
"""
BACKFILL_QUERY = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
    ... on PartitionBackfill { status error { message } runs(limit: 50) { runId status } }
    ... on Error { message } } }
"""
MATERIALIZATIONS_QUERY = """
query($key: AssetKeyInput!, $partitions: [String!]) { assetNodeOrError(assetKey: $key) { __typename
    ... on AssetNode { assetMaterializations(partitions: $partitions) { partition runId } } } }
"""


@dataclass(frozen=True)
class LiveUI:
    base_url: str
    gql: GraphQL
    data_dir: Path
    log: Path
    backfill_id: str
    universe_symbols: tuple[str, ...]
    expected: dict[str, set]


def _universe_symbols() -> tuple[str, ...]:
    """The first synthetic companies listed on every session of the backfill: a small universe whose
    bars the synthetic source really has (some companies list later or delist, as anywhere)."""
    from alphatwin_pipelines.sources.synthetic import SyntheticSource

    source = SyntheticSource(defects=0)
    listed = source.fetch(source.universe()["symbol"].tolist()[:4 * UNIVERSE_SIZE], pd.DatetimeIndex(SESSIONS)).bars
    full = listed.groupby("symbol")["date"].nunique()
    return tuple(sorted(full[full == len(SESSIONS)].index[:UNIVERSE_SIZE]))


@pytest.fixture(scope="module")
def live_ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui_e2e")
    home, data_dir = root / "dagster_home", root / "data"
    home.mkdir()
    data_dir.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    _create_instance_storage(home)
    symbols = _universe_symbols()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ALPHATWIN_DATA_DIR": str(data_dir),
        "ALPHATWIN_UNIVERSE": ",".join(symbols),
        # Render only these symbols' market: a 1000-symbol market costs the run ~5 s, which can push
        # the backfill past the daemon's 30 s cycle.
        "ALPHATWIN_SYNTHETIC_SYMBOLS": str(UNIVERSE_SIZE),
        # Clean bars: this test drives the UI, not the quality rules (test_synthetic_defects does).
        "ALPHATWIN_SYNTHETIC_DEFECTS": "0",
        "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(REPO_ROOT / ".numba_cache")),
    }
    try:
        port = free_port()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    server_log, universe_log = root / "dagster_dev.log", root / "universe_run.log"
    server = start_process_group([DAGSTER, "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
                                 cwd=REPO_ROOT, env=env, log=server_log)
    universe_run = start_process_group(
        [DAGSTER, "asset", "materialize", "-f", "definitions.py", "-d", ".", "--select", "universe"],
        cwd=REPO_ROOT, env=env, log=universe_log,
    )
    try:
        expected = _expected_definitions()  # imported while the server starts
        gql = GraphQL(f"http://127.0.0.1:{port}")
        try:
            gql.wait_until_up(server, server_log, SERVER_TIMEOUT_S)
        except ServerUnavailable as exc:
            pytest.skip(str(exc))
        assert universe_run.wait(timeout=SERVER_TIMEOUT_S) == 0, f"universe run failed:\n{tail(universe_log)}"
        yield LiveUI(gql.base_url, gql, data_dir, server_log, _launch_backfill(gql), symbols, expected)
    finally:
        stop_process_group(universe_run)
        stop_process_group(server)


def _create_instance_storage(home: Path) -> None:
    """Create the SQLite storages up front: the server and the universe run creating them at the
    same moment leave alembic's version table with two heads."""
    import dagster as dg

    # dagster.yaml's storage lives under DAGSTER_HOME, as for every Dagster process the test starts.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(home))
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.get_runs_count()


def _launch_backfill(gql: GraphQL) -> str:
    params = {
        "partitionNames": list(SESSIONS),
        "assetSelection": [{"path": [name]} for name in BACKFILL_ASSETS],
        "title": "ui end-to-end test",
    }
    result = gql(LAUNCH_BACKFILL, params=params)["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", f"backfill refused: {result}"
    return result["backfillId"]


def _expected_definitions() -> dict[str, set]:
    import definitions

    repo = definitions.defs.get_repository_def()
    return {
        "assets": {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()},
        "groups": {spec.group_name for spec in definitions.defs.resolve_all_asset_specs()},
        "checks": {(k.asset_key.to_user_string(), k.name) for k in definitions.defs.resolve_asset_graph().asset_check_keys},
        "jobs": {job.name for job in repo.get_all_jobs()},
        "schedules": {s.name for s in repo.schedule_defs},
        "sensors": {s.name for s in repo.sensor_defs},
    }


def _listed_definitions(gql: GraphQL) -> dict[str, set]:
    workspace = gql(WORKSPACE_QUERY)["workspaceOrError"]
    assert workspace["__typename"] == "Workspace", workspace
    (entry,) = workspace["locationEntries"]
    location = entry["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", f"code location {entry['name']} failed to load: {location}"
    (repo,) = location["repositories"]
    nodes = repo["assetNodes"]
    return {
        "assets": {"/".join(node["assetKey"]["path"]) for node in nodes},
        "groups": {node["groupName"] for node in nodes},
        "checks": {("/".join(node["assetKey"]["path"]), check["name"])
                   for node in nodes for check in node["assetChecksOrError"].get("checks", [])},
        "jobs": {job["name"] for job in repo["jobs"]},
        "schedules": {s["name"] for s in repo["schedules"]},
        "sensors": {s["name"] for s in repo["sensors"]},
    }


def test_ui_lists_every_definition(live_ui):
    expected, listed = live_ui.expected, _listed_definitions(live_ui.gql)
    assert expected["assets"] and expected["jobs"], "definitions.defs defines assets and the asset job"
    for kind in expected:
        missing, unexpected = expected[kind] - listed[kind], listed[kind] - expected[kind]
        assert not missing and not unexpected, f"{kind}: missing from the UI {sorted(missing)}, not defined {sorted(unexpected)}"


def test_raw_ohlcv_partitions_are_nyse_sessions(live_ui):
    from assets.partitions import PARTITION_START

    node = live_ui.gql(PARTITIONS_QUERY, key={"path": ["raw_ohlcv"]})["assetNodeOrError"]
    assert node["__typename"] == "AssetNode" and node["isPartitioned"], node
    keys = node["partitionKeys"]
    assert set(SESSIONS) <= set(keys), "known sessions are partitions"
    assert not set(NOT_SESSIONS) & set(keys), "a holiday and a Saturday are not partitions"
    assert keys == sorted(set(keys)), "keys are unique and in date order"
    assert keys[0] >= PARTITION_START and pd.Timestamp(keys[0]) - pd.Timestamp(PARTITION_START) < pd.Timedelta(days=5)


def test_universe_run_is_recorded_in_the_servers_instance(live_ui):
    node = live_ui.gql(MATERIALIZATIONS_QUERY, key={"path": ["universe"]}, partitions=None)["assetNodeOrError"]
    assert len(node["assetMaterializations"]) == 1, node


def test_backfill_builds_three_sessions_of_cleaned_bars(live_ui):
    status, backfill = _wait_for_backfill(live_ui)
    assert status == SUCCESS, f"backfill {live_ui.backfill_id} ended {status}: {backfill}\n{tail(live_ui.log)}"
    run_ids = {run["runId"] for run in backfill["runs"]}
    assert run_ids and all(run["status"] == "SUCCESS" for run in backfill["runs"]), backfill["runs"]

    for asset in BACKFILL_ASSETS:
        node = live_ui.gql(MATERIALIZATIONS_QUERY, key={"path": [asset]}, partitions=list(SESSIONS))["assetNodeOrError"]
        events = node["assetMaterializations"]
        assert {e["partition"] for e in events} == set(SESSIONS), f"{asset} materialised {events}"
        assert {e["runId"] for e in events} <= run_ids, f"{asset} was materialised outside the backfill"

    cleaned = live_ui.data_dir / "cleaned_ohlcv"
    assert sorted(p.stem for p in cleaned.glob("*.parquet")) == list(SESSIONS)
    bars = pd.concat(pd.read_parquet(p) for p in sorted(cleaned.glob("*.parquet")))
    assert set(bars["symbol"]) == set(live_ui.universe_symbols), "raw bars were fetched for the universe run's symbols"
    assert sorted(bars["date"].astype(str).str[:10].unique()) == list(SESSIONS)


def _wait_for_backfill(live_ui) -> tuple[str, dict]:
    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    while True:
        backfill = live_ui.gql(BACKFILL_QUERY, id=live_ui.backfill_id)["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if backfill["status"] in FINISHED or time.monotonic() > deadline:
            return backfill["status"], backfill
        time.sleep(1)


def test_lineage_page_shows_every_group(live_ui, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium); the GraphQL tests still ran")
    # What clicking "Skip" on the first-visit community dialog does, so it does not cover the graph.
    live_ui.gql("mutation { setNuxSeen }")
    groups = sorted(live_ui.expected["groups"])
    update = os.environ.get("ALPHATWIN_UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists()
    target = SCREENSHOT if update else tmp_path / "lineage.png"

    page_text, png = _capture_lineage(chromium, live_ui.base_url, groups, tmp_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(png)

    missing = [group for group in groups if group not in page_text]
    assert not missing, f"the lineage graph does not show the group(s) {missing}"
    assert png_size(png) == WINDOW and png_crc_ok(png)
    assert _distinct_colours(target) > 64, "the screenshot is (nearly) blank"


def _capture_lineage(chromium: str, base_url: str, groups: list[str], workdir: Path) -> tuple[str, bytes]:
    """The global lineage page as it opens, navigation and asset sidebar hidden.

    Groups stay collapsed, as the UI shows them by default: with every group expanded the graph
    of the whole research pipeline no longer fits a screen, and asset labels get truncated, so
    the per-asset listing is asserted through GraphQL instead.
    """
    browser = Chromium(chromium, workdir / "profile", *WINDOW, log=workdir / "chromium.log")
    sidebar_toggle = "document.querySelector('[aria-label=panel_show_right]')"
    try:
        browser.navigate(f"{base_url}/server_info")
        browser.wait_for("document.readyState === 'complete'", 30, "the server info page")
        browser.evaluate("localStorage.setItem('dagster-nav-collapsed', 'true')")
        browser.navigate(f"{base_url}/asset-groups")
        browser.wait_for(f"!!{sidebar_toggle}", 60, "the lineage page's sidebar")
        browser.evaluate(f"{sidebar_toggle}.closest('button').click()")
        browser.wait_for(f"!{sidebar_toggle}", 10, "the sidebar hidden")  # it lists group names too
        shown = " && ".join(f"document.body.innerText.includes({group!r})" for group in groups)
        browser.wait_for(shown, 60, f"the groups {groups} in the graph")
        return browser.evaluate("document.body.innerText"), _settled_screenshot(browser)
    finally:
        browser.close()


def _settled_screenshot(browser: Chromium, timeout_s: float = 10) -> bytes:
    """The first screenshot equal to the one before it: the zoom-to-fit animation has ended."""
    deadline = time.monotonic() + timeout_s
    previous = browser.screenshot()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current = browser.screenshot()
        if current == previous:
            return current
        previous = current
    return previous


def _distinct_colours(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return len(image.convert("RGB").getcolors(maxcolors=1 << 24))

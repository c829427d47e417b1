"""The engine's files other than tables on an object-store data directory (moto's server on 127.0.0.1):
card versions (a version is whole once its marker object is written; a writer that dies half-way
leaves one that reads as absent and is written again), the corrections file and its archive,
paths stored in tables, reproducibility hashes, allocation versions, the inventory and the asset
metadata that points at them. The whole graph on the store is in test_object_storage_graph.py."""

from __future__ import annotations

import hashlib
import json

import dagster as dg
import pandas as pd
import pytest

from alphatwin_pipelines import inventory as inventory_module, objectstore
from alphatwin_pipelines.cards.store import COMPLETE, content_version, version_complete, write_version
from alphatwin_pipelines.corrections import CORRECTIONS_PATH, VERSIONS_DIR, load_corrections
from alphatwin_pipelines.execution.run import allocation_path, read_allocation
from alphatwin_pipelines.inventory import inventory, rows_by_rule
from alphatwin_pipelines.objectstore import is_remote, listing
from alphatwin_pipelines.reproducibility import content_hash, input_hashes
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import resolve_stored_path, stored_path, version_table
from assets.locations import link, location
from tests.s3_support import s3_data_dir, s3_server  # noqa: F401 (fixtures)
from tests.test_object_storage import SESSIONS, _bars

pytestmark = pytest.mark.slow
FILES = {"card.json": b'{"a": 1}', "card.md": b"# card\n", "chart.png": b"\x89PNG fake"}


def test_a_card_version_is_written_file_by_file_then_marked_complete(s3_data_dir):
    folder, created = write_version(s3_data_dir, "abc123", FILES)
    assert created and is_remote(folder) and folder.name == content_version(FILES)
    stored = listing(folder)
    assert set(stored) == {*FILES, COMPLETE}
    marker = json.loads(folder.joinpath(COMPLETE).read_bytes())
    assert marker == {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}
    assert (folder / "card.md").read_bytes() == FILES["card.md"]
    again, created = write_version(s3_data_dir, "abc123", FILES)
    assert (again, created) == (folder, False)
    assert listing(folder) == stored, "an existing version is never rewritten"


def test_a_writer_that_dies_mid_version_leaves_it_absent_and_the_next_run_completes_it(s3_data_dir, monkeypatch):
    upload, uploaded = objectstore.put_file, []

    def dying_upload(local, path):
        if len(uploaded) == 2:
            raise KeyboardInterrupt("killed between two uploads")
        upload(local, path)
        uploaded.append(path.name)

    monkeypatch.setattr(objectstore, "put_file", dying_upload)
    with pytest.raises(KeyboardInterrupt):
        write_version(s3_data_dir, "abc123", FILES)
    monkeypatch.setattr(objectstore, "put_file", upload)
    folder = TableStore(s3_data_dir).data_dir / "cards" / "abc123" / content_version(FILES)
    assert set(listing(folder)) == set(uploaded) and len(uploaded) == 2 and COMPLETE not in uploaded
    assert not version_complete(folder), "a version without its marker is absent"
    _, created = write_version(s3_data_dir, "abc123", FILES)
    assert created and version_complete(folder) and set(listing(folder)) == {*FILES, COMPLETE}


def test_local_card_versions_have_no_marker(tmp_path):
    folder, created = write_version(tmp_path, "abc123", FILES)
    assert created and version_complete(folder) and sorted(p.name for p in folder.iterdir()) == sorted(FILES)


def test_corrections_are_read_from_the_store_and_their_version_archived_there(s3_data_dir):
    root = TableStore(s3_data_dir).data_dir
    assert load_corrections(s3_data_dir).empty
    text = b"symbol,ex_date,kind,value,reason,source\nABC,2024-01-03,split,2,2-for-1,press release\n"
    (root / CORRECTIONS_PATH.as_posix()).write_bytes(text)
    corrections = load_corrections(s3_data_dir)
    assert corrections.version == hashlib.sha256(text).hexdigest()[:16] and len(corrections.table) == 1
    assert (root / VERSIONS_DIR.as_posix() / f"{corrections.version}.csv").read_bytes() == text


def test_stored_paths_round_trip_on_the_store(s3_data_dir, tmp_path):
    store = TableStore(s3_data_dir)
    page = store.data_dir / "reports" / "abc.html"
    assert stored_path(store, page) == "reports/abc.html"
    back = resolve_stored_path(store, "reports/abc.html")
    assert is_remote(back) and str(back) == str(page)
    with pytest.raises(ValueError, match="not under the data directory"):
        stored_path(store, TableStore(s3_data_dir.replace("/data", "/other")).data_dir / "x.html")
    local = TableStore(tmp_path)
    assert resolve_stored_path(local, stored_path(local, tmp_path / "reports" / "abc.html")) == tmp_path / "reports" / "abc.html"


def test_reproducibility_hashes_read_the_objects(s3_data_dir, tmp_path):
    remote, local = TableStore(s3_data_dir), TableStore(tmp_path)
    bars = _bars(4)
    for store in (remote, local):
        store.write_sessions("features", bars, SESSIONS)
    wanted = SESSIONS[2:6].append(pd.DatetimeIndex(["2030-01-02"]))  # a session never stored is left out
    hashes = input_hashes(remote, "features", wanted)
    assert list(hashes) == [f"features/{s:%Y-%m-%d}" for s in SESSIONS[2:6]]
    assert hashes == input_hashes(local, "features", wanted), "the same bytes hash the same on the store"
    paths = [remote.partition_path("features", s) for s in SESSIONS[:3]]
    assert content_hash(paths[::-1]) == content_hash([local.partition_path("features", s) for s in SESSIONS[:3]])


def test_allocations_inventory_and_metadata_on_the_store(s3_data_dir, monkeypatch):
    store = TableStore(s3_data_dir)
    allocation = pd.DataFrame({"allocation_version": ["v1"], "kind": ["cash"], "name": ["cash"], "weight": [1.0]})
    store.write_table(version_table("v1"), frame_to_arrow(allocation))
    store.write_table("portfolio_allocations", frame_to_arrow(allocation))
    assert is_remote(allocation_path(s3_data_dir, "v1"))
    pd.testing.assert_frame_equal(read_allocation(s3_data_dir, "v1"), allocation, check_dtype=False)
    with pytest.raises(FileNotFoundError, match="allocation version 'v2' not found at s3://"):
        read_allocation(s3_data_dir, "v2")

    bars = _bars(5)
    store.write_sessions("quarantined_ohlcv", bars.assign(rule_id=["price_gt_0,ohlc"] + [""] * (len(bars) - 1)),
                         SESSIONS)
    listed = {row["table"]: row for row in inventory(store)}
    assert listed["quarantined_ohlcv"]["rows"] == len(bars) and listed["portfolio_allocations"]["rows"] == 1
    monkeypatch.setattr(inventory_module, "_TAIL", 16)  # footers longer than the fetched tail: read whole
    assert {row["table"]: row["rows"] for row in inventory(store)} == {t: row["rows"] for t, row in listed.items()}
    assert "1 immutable version" in listed["portfolio_allocations"]["span"]
    rows, counts = rows_by_rule(store, "quarantined_ohlcv", "rule_id")
    assert rows == 1 and counts.to_dict() == {"price_gt_0": 1, "ohlc": 1}

    plot = store.data_dir / "reports" / "allocation.png"
    assert location(plot) == dg.MetadataValue.url(f"{s3_data_dir}/reports/allocation.png")
    assert link(plot) == f"{s3_data_dir}/reports/allocation.png"
    local = TableStore("/tmp/x").data_dir / "a.png"
    assert location(local) == dg.MetadataValue.path(str(local)) and link(local) == f"file://{local}"

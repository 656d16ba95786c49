"""The Python API: bucketchat.connect/timeline/thread/search on a real synced cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

import bucketchat
from bucketchat.session import sync_bucket
from bucketchat.storage import LocalBucket
from tests.chatbuilder import ChatBuilder

ROOM = "general"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    chat = ChatBuilder(tmp_path / "bucket")
    root = chat.message("alice", ROOM, "hello api")
    chat.message("bob", ROOM, "a threaded answer", parent=root["event_id"])
    chat.react("bob", root, "👍")
    for n in range(5):
        chat.message("carol", ROOM, f"filler {n}")
    chat.flush()
    path = tmp_path / "cache.duckdb"
    sync_bucket(LocalBucket(chat.root), path, workers=1)
    return path


def test_connect_is_read_only_with_the_documented_views(db: Path) -> None:
    con = bucketchat.connect(db)
    try:
        views = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
        assert {"events", "timeline", "threads", "reactions", "members", "keys",
                "findings"} <= views
        assert con.execute("SELECT count(*) FROM threads").fetchone() == (1,)
        with pytest.raises(duckdb.Error):
            con.execute("DELETE FROM event_rows")
    finally:
        con.close()


def test_timeline_and_thread_are_arrow_tables(db: Path) -> None:
    page = bucketchat.timeline(ROOM, db=db, limit=4)
    assert isinstance(page, pa.Table) and page.num_rows == 4
    assert page.schema.field("reactions").type == pa.map_(pa.string(), pa.int32())
    assert page.column("body").to_pylist() == [f"filler {n}" for n in range(1, 5)]
    older = bucketchat.timeline(ROOM, db=db, before=page.column("event_id")[0].as_py(), limit=2)
    assert older.column("body").to_pylist() == [None, "filler 0"]  # carol's join, then
    assert older.column("type").to_pylist() == ["m.room.member", "m.room.message"]
    root = bucketchat.timeline(ROOM, db=db, limit=100).to_pylist()
    hello = next(r for r in root if r["body"] == "hello api")
    assert dict(hello["reactions"]) == {"👍": 1}
    thread = bucketchat.thread(hello["event_id"], db=db)
    assert thread.column("depth").to_pylist() == [0, 1]


def test_search_returns_plain_dicts(db: Path) -> None:
    hits = bucketchat.search("threaded", db=db)
    assert [hit["body"] for hit in hits] == ["a threaded answer"]
    assert hits[0]["snippet"] == "a **threaded** answer"


def test_settings_decide_the_cache_without_db(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUCKETCHAT_DB", str(db))
    assert bucketchat.timeline(ROOM, limit=1).num_rows == 1


def test_import_bucketchat_loads_nothing_heavy() -> None:
    code = (
        "import sys, bucketchat; "
        "print(sorted(m for m in ('duckdb', 'pyarrow', 'tantivy', 'bucketchat.api') "
        "if m in sys.modules)); bucketchat.connect; print('bucketchat.api' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split("\n")
    assert output[0] == "[]" and output[1] == "True"

"""Search through a real cache and tantivy index: syntax, scripts, freshness and healing."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

from bucketchat.cache import open_cache
from bucketchat.projections.search import syntax as search_module
from bucketchat.projections.search.index import index_dir
from bucketchat.projections.search.syntax import parse_query
from bucketchat.session import Session, sync_bucket
from bucketchat.storage import LocalBucket
from tests.chatbuilder import ChatBuilder

ROOM = "general"


def _sync(chat: ChatBuilder, db: Path) -> Path:
    chat.flush()
    sync_bucket(LocalBucket(chat.root), db, workers=1)
    return db


def bodies(db: Path, text: str, **kwargs: object) -> list[str]:
    return [hit.body for hit in Session(None, db).search(text, **kwargs)]  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    chat = ChatBuilder(tmp_path / "bucket")
    root = chat.message("alice", ROOM, "Deploy the café service on Friday")
    chat.message("bob", ROOM, "the deploy failed again", parent=root["event_id"])
    chat.message("bob", ROOM, "lunch at noon?")
    chat.message("carol", "random", "Привет мир, deploy завтра")
    chat.message("carol", "random", "Καλημέρα κόσμε")
    chat.message("carol", "random", "東京都に行きます")
    chat.message("alice", ROOM, "rollback plan ready", at=chat.clock + 3 * 86_400_000)
    return _sync(chat, tmp_path / "cache.duckdb")


def test_ranked_words_and_phrases(db: Path) -> None:
    assert set(bodies(db, "deploy")) == {
        "Deploy the café service on Friday",
        "the deploy failed again",
        "Привет мир, deploy завтра",
    }
    assert bodies(db, '"deploy failed"') == ["the deploy failed again"]
    assert bodies(db, '"failed deploy"') == []
    hits = Session(None, db).search("deploy failed")
    assert hits[0].body == "the deploy failed again"
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


def test_and_or_not(db: Path) -> None:
    assert bodies(db, "deploy AND friday") == ["Deploy the café service on Friday"]
    assert set(bodies(db, "lunch OR rollback")) == {"lunch at noon?", "rollback plan ready"}
    assert "the deploy failed again" not in bodies(db, "deploy -failed")
    assert len(bodies(db, "deploy -failed")) == 2


def test_filters(db: Path) -> None:
    assert set(bodies(db, "deploy from:bob")) == {"the deploy failed again"}
    assert set(bodies(db, "deploy in:random")) == {"Привет мир, deploy завтра"}
    assert set(bodies(db, "has:thread")) == {
        "Deploy the café service on Friday",
        "the deploy failed again",
    }
    assert bodies(db, "rollback before:2026-01-02") == []
    assert bodies(db, "rollback after:2026-01-02") == ["rollback plan ready"]
    assert bodies(db, "lunch is:attested") == []
    assert bodies(db, "lunch is:tofu") == ["lunch at noon?"]
    assert set(bodies(db, "deploy", room="random")) == {"Привет мир, deploy завтра"}
    assert set(bodies(db, "deploy", sender="alice")) == {"Deploy the café service on Friday"}


def test_accents_folded_and_other_scripts(db: Path) -> None:
    assert bodies(db, "cafe") == ["Deploy the café service on Friday"]
    assert bodies(db, "CAFÉ") == ["Deploy the café service on Friday"]
    assert bodies(db, "привет") == ["Привет мир, deploy завтра"]
    assert bodies(db, "καλημερα") == ["Καλημέρα κόσμε"]
    assert bodies(db, "東京") == ["東京都に行きます"]
    assert bodies(db, "京都") == ["東京都に行きます"]
    assert bodies(db, "東") == ["東京都に行きます"]


def test_snippets_highlight_the_original_text(db: Path) -> None:
    hit = Session(None, db).search("cafe")[0]
    assert [hit.snippet[s:e] for s, e in hit.highlights] == ["café"]
    assert hit.as_json()["snippet"] == "Deploy the **café** service on Friday"
    assert set(hit.as_json()) >= {
        "event_id", "room_id", "sender_id", "timestamp_ms", "body", "snippet", "score"
    }


def test_long_bodies_get_a_window_around_the_match() -> None:
    body = "word " * 100 + "needle " + "word " * 100
    spans = search_module.highlight(body, ["needle"])
    text, inside = search_module.snippet(body, spans)
    assert text.startswith("…") and text.endswith("…") and len(text) <= 162
    assert [text[s:e] for s, e in inside] == ["needle"]


def test_query_parser() -> None:
    parsed = parse_query('"Big Deal" OR other -noise from:Bob in:room1 has:thread is:attested')
    assert parsed.groups == [[["big", "deal"], ["other"]]]
    assert parsed.excluded == [["noise"]]
    assert parsed.senders == ["bob"] and parsed.rooms == ["room1"]
    assert parsed.has_thread and parsed.trust == ["attested"]


def test_edits_and_redactions_reach_the_index_incrementally(tmp_path: Path) -> None:
    chat = ChatBuilder(tmp_path / "bucket")
    db = tmp_path / "cache.duckdb"
    message = chat.message("alice", ROOM, "original wording")
    _sync(chat, db)
    assert bodies(db, "original") == ["original wording"]
    chat.edit("alice", message, "revised wording")
    chat.edit("mallory", message, "hostile wording")
    _sync(chat, db)
    assert bodies(db, "original") == []
    assert bodies(db, "revised") == ["revised wording"]
    assert bodies(db, "hostile") == []
    chat.redact("alice", message)
    _sync(chat, db)
    assert bodies(db, "wording") == []
    state = json.loads((index_dir(db) / "watermark.json").read_text())
    with open_cache(db, read_only=True) as cache:
        assert state["version"] == int(cache.meta("query.version") or 0)


def test_the_index_heals_after_a_crash_or_loss(tmp_path: Path) -> None:
    chat = ChatBuilder(tmp_path / "bucket")
    db = tmp_path / "cache.duckdb"
    chat.message("alice", ROOM, "first words")
    _sync(chat, db)
    chat.message("alice", ROOM, "second words")
    chat.flush()
    from unittest import mock

    # the index misses this sync
    with mock.patch("bucketchat.projections.search.index.update_index"):
        sync_bucket(LocalBucket(chat.root), db, workers=1)
    assert set(bodies(db, "words")) == {"first words", "second words"}
    shutil.rmtree(index_dir(db))  # the whole index lost
    assert set(bodies(db, "words")) == {"first words", "second words"}
    (index_dir(db) / "watermark.json").write_text("not json")
    assert set(bodies(db, "words")) == {"first words", "second words"}


def test_senders_outside_ascii_and_matrix_style_ids(tmp_path: Path) -> None:
    chat = ChatBuilder(tmp_path / "bucket")
    chat.message("Zoë@example.org", ROOM, "offsite agenda")
    chat.message("@Dave:example.org", ROOM, "agenda draft")
    db = _sync(chat, tmp_path / "cache.duckdb")
    assert bodies(db, "agenda from:ZOË") == ["offsite agenda"]
    assert bodies(db, "agenda from:zoë@example.org") == ["offsite agenda"]
    assert bodies(db, "agenda from:dave") == ["agenda draft"]
    assert bodies(db, "agenda", sender="@dave:example.org") == ["agenda draft"]
    assert Session(None, db).search("offsite")[0].sender_id == "Zoë@example.org"


def test_an_index_of_an_older_format_is_rebuilt(tmp_path: Path) -> None:
    import tantivy

    chat = ChatBuilder(tmp_path / "bucket")
    chat.message("alice", ROOM, "current words")
    db = _sync(chat, tmp_path / "cache.duckdb")
    folder = index_dir(db)
    state = json.loads((folder / "watermark.json").read_text())
    shutil.rmtree(folder)
    folder.mkdir()
    builder = tantivy.SchemaBuilder()  # format 1 kept stored strings in indexed text fields
    builder.add_text_field("body", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("text", stored=False, tokenizer_name="default")
    old = tantivy.Index(builder.build(), path=str(folder))
    writer = old.writer(15_000_000, 1)
    writer.add_json(json.dumps({"body": "stale words", "text": "stale words"}))
    writer.commit()
    writer.wait_merging_threads()
    (folder / "watermark.json").write_text(json.dumps({**state, "format": 1}))
    assert bodies(db, "words") == ["current words"]

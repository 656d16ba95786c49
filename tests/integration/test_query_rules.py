"""PROTOCOL.md §6 state rules through a real folder bucket, sync and DuckDB cache.

Each test writes signed events with ChatBuilder, pulls them, and reads the timeline the
way ``log`` does (``query.timeline``) and the way SQL users do (the ``timeline`` view).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bucketchat.cache import open_cache
from bucketchat.projections.timeline import read as query
from bucketchat.projections.timeline import refresh as query_state
from bucketchat.projections.timeline.threads import thread_roots
from bucketchat.session import sync_bucket
from bucketchat.storage import LocalBucket
from tests.chatbuilder import ChatBuilder

ROOM = "general"


@pytest.fixture
def chat(tmp_path: Path) -> ChatBuilder:
    return ChatBuilder(tmp_path / "bucket")


@pytest.fixture
def sync(tmp_path: Path, chat: ChatBuilder) -> Callable[[], Path]:
    def run() -> Path:
        chat.flush()
        sync_bucket(LocalBucket(chat.root), tmp_path / "cache.duckdb", workers=1)
        return tmp_path / "cache.duckdb"

    return run


def page(db: Path, room: str = ROOM, **kwargs: Any) -> list[dict[str, Any]]:
    with open_cache(db, read_only=True) as cache:
        return query.timeline(cache, room, **kwargs)


def item(db: Path, event_id: str) -> dict[str, Any]:
    found = [i for i in page(db, limit=10_000, include_invalid=True) if i["event_id"] == event_id]
    assert len(found) == 1, found
    return found[0]


def test_latest_edit_by_the_original_sender_wins(chat: ChatBuilder, sync: Any) -> None:
    message = chat.message("alice", ROOM, "first")
    chat.edit("alice", message, "second")
    chat.edit("alice", message, "third")
    db = sync()
    shown = item(db, message["event_id"])
    assert shown["body"] == "third" and shown["edited"] is True


def test_edit_order_is_timeline_order_not_arrival(chat: ChatBuilder, sync: Any) -> None:
    message = chat.message("alice", ROOM, "first")
    late = chat.event(
        "alice", ROOM, "m.room.edit",
        {"replaces": message["event_id"], "new_content": {"body": "latest", "msgtype": "m.text"}},
        at=chat.clock + 10_000,
    )
    sync()
    chat.event(  # synced later but earlier in timeline order
        "alice", ROOM, "m.room.edit",
        {"replaces": message["event_id"], "new_content": {"body": "older", "msgtype": "m.text"}},
        at=late["timestamp_ms"] - 5_000,
    )
    db = sync()
    assert item(db, message["event_id"])["body"] == "latest"


def test_unauthorized_edit_and_redaction_are_not_applied(chat: ChatBuilder, sync: Any) -> None:
    message = chat.message("alice", ROOM, "mine")
    chat.edit("mallory", message, "hijacked")
    chat.redact("mallory", message)
    db = sync()
    shown = item(db, message["event_id"])
    assert shown["body"] == "mine"
    assert shown["edited"] is False and shown["redacted"] is False
    with open_cache(db, read_only=True) as cache:
        kinds = [r[0] for r in cache.rows("SELECT kind FROM findings")]
    assert kinds.count("unauthorized_relation") == 2


def test_redaction_by_the_sender_removes_the_text(chat: ChatBuilder, sync: Any) -> None:
    message = chat.message("alice", ROOM, "regrettable words")
    chat.edit("alice", message, "regrettable edit")
    chat.redact("alice", message)
    db = sync()
    shown = item(db, message["event_id"])
    assert shown["body"] is None and shown["redacted"] is True
    with open_cache(db, read_only=True) as cache:
        rows = cache.rows("SELECT * FROM timeline")
    assert "regrettable" not in json.dumps(rows, default=str)


def test_redacting_the_latest_edit_falls_back_to_the_one_before(
    chat: ChatBuilder, sync: Any
) -> None:
    message = chat.message("alice", ROOM, "v1")
    chat.edit("alice", message, "v2")
    latest = chat.edit("alice", message, "v3")
    db = sync()
    assert item(db, message["event_id"])["body"] == "v3"
    chat.redact("alice", latest)
    db = sync()
    shown = item(db, message["event_id"])
    assert shown["body"] == "v2" and shown["edited"] is True


def test_redacting_every_edit_falls_back_to_the_original(chat: ChatBuilder, sync: Any) -> None:
    message = chat.message("alice", ROOM, "v1")
    chat.redact("alice", chat.edit("alice", message, "v2"))
    db = sync()
    shown = item(db, message["event_id"])
    assert shown["body"] == "v1" and shown["edited"] is False


def test_reactions_count_once_per_sender_target_and_key(chat: ChatBuilder, sync: Any) -> None:
    message = chat.message("alice", ROOM, "react to me")
    for _ in range(3):
        chat.react("bob", message, "👍")
    chat.react("carol", message, "👍")
    chat.react("carol", message, "🎉")
    db = sync()
    assert item(db, message["event_id"])["reactions"] == {"👍": 2, "🎉": 1}
    with open_cache(db, read_only=True) as cache:
        rows = cache.rows(
            "SELECT reaction_key, count FROM reactions ORDER BY reaction_key"
        )
    assert sorted(rows) == sorted([("👍", 2), ("🎉", 1)])


def test_a_redacted_reaction_no_longer_counts(chat: ChatBuilder, sync: Any) -> None:
    message = chat.message("alice", ROOM, "react to me")
    reaction = chat.react("bob", message, "👍")
    db = sync()
    assert item(db, message["event_id"])["reactions"] == {"👍": 1}
    chat.redact("bob", reaction)
    db = sync()
    assert item(db, message["event_id"])["reactions"] == {}


def test_a_reaction_redacted_by_someone_else_still_counts(chat: ChatBuilder, sync: Any) -> None:
    message = chat.message("alice", ROOM, "react to me")
    reaction = chat.react("bob", message, "👍")
    chat.redact("alice", reaction)
    db = sync()
    assert item(db, message["event_id"])["reactions"] == {"👍": 1}


def test_threads_roots_depths_and_reply_counts(chat: ChatBuilder, sync: Any) -> None:
    root = chat.message("alice", ROOM, "root")
    reply = chat.message("bob", ROOM, "reply", parent=root["event_id"])
    deeper = chat.message("carol", ROOM, "deeper", parent=reply["event_id"])
    alone = chat.message("carol", ROOM, "no thread")
    db = sync()
    assert item(db, root["event_id"])["thread_root"] == root["event_id"]
    assert item(db, root["event_id"])["reply_count"] == 2
    assert item(db, deeper["event_id"])["thread_root"] == root["event_id"]
    assert item(db, deeper["event_id"])["reply_count"] == 0
    assert item(db, alone["event_id"])["thread_root"] is None
    with open_cache(db, read_only=True) as cache:
        for start in (root, reply, deeper):
            found = query.thread(cache, start["event_id"])
            assert found["root"] == root["event_id"]
            assert [(e["body"], e["depth"]) for e in found["events"]] == [
                ("root", 0), ("reply", 1), ("deeper", 2)
            ]


def test_an_orphan_reply_is_a_root_until_its_parent_arrives(
    chat: ChatBuilder, sync: Any
) -> None:
    parent_id = f"{ROOM}::20260101T000000.500Z::99999999-0000-4000-8000-000000000000"
    orphan = chat.message("bob", ROOM, "orphan", parent=parent_id)
    db = sync()
    assert item(db, orphan["event_id"])["thread_root"] is None
    chat.message("alice", ROOM, "the parent", event_id=parent_id)
    db = sync()
    assert item(db, orphan["event_id"])["thread_root"] == parent_id
    assert item(db, parent_id)["reply_count"] == 1


def test_a_parent_in_another_room_does_not_resolve(chat: ChatBuilder, sync: Any) -> None:
    elsewhere = chat.message("alice", "random", "elsewhere")
    reply = chat.message("bob", ROOM, "cross-room reply", parent=elsewhere["event_id"])
    db = sync()
    assert item(db, reply["event_id"])["thread_root"] is None


def test_a_parent_chain_that_loops_makes_the_reply_a_root(chat: ChatBuilder, sync: Any) -> None:
    first_id = f"{ROOM}::20260101T000010.000Z::aaaaaaaa-0000-4000-8000-000000000000"
    second_id = f"{ROOM}::20260101T000011.000Z::bbbbbbbb-0000-4000-8000-000000000000"
    chat.message("alice", ROOM, "a", event_id=first_id, parent=second_id)
    chat.message("bob", ROOM, "b", event_id=second_id, parent=first_id)
    db = sync()
    for event_id in (first_id, second_id):
        shown = item(db, event_id)
        assert shown["thread_root"] is None and shown["reply_count"] == 0
    assert thread_roots([(1, 2), (2, 1), (3, 1), (4, 5)]) == {4: (5, 1), 5: (5, 0)}


def test_event_id_conflict_resolves_to_the_relating_senders_event(
    chat: ChatBuilder, sync: Any
) -> None:
    shared = f"{ROOM}::20260101T000100.000Z::cccccccc-0000-4000-8000-000000000000"
    chat.message("alice", ROOM, "alice's", event_id=shared)
    chat.message("bob", ROOM, "bob's", event_id=shared)
    chat.edit("alice", shared, "alice edited")
    chat.react("alice", shared, "👍")
    chat.react("carol", shared, "❤️")  # from a third sender: resolves to nothing
    db = sync()
    both = [i for i in page(db, limit=100) if i["event_id"] == shared]
    by_sender = {i["sender_id"]: i for i in both}
    assert by_sender["alice"]["body"] == "alice edited"
    assert by_sender["alice"]["reactions"] == {"👍": 1}
    assert by_sender["bob"]["body"] == "bob's" and by_sender["bob"]["reactions"] == {}


def test_members_view_and_member_items(chat: ChatBuilder, sync: Any) -> None:
    chat.join("alice", ROOM, displayname="Alice")
    chat.message("bob", ROOM, "hi")
    chat.leave("bob", ROOM)
    db = sync()
    with open_cache(db, read_only=True) as cache:
        members = dict(
            cache.rows("SELECT sender_id, membership FROM members")
        )
    assert members == {"alice": "join", "bob": "leave"}
    kinds = [(i["sender_id"], i["type"], i["membership"]) for i in page(db)]
    assert ("bob", "m.room.member", "leave") in kinds


def test_typing_and_unknown_types_are_not_items(chat: ChatBuilder, sync: Any) -> None:
    chat.message("alice", ROOM, "visible")
    chat.event("alice", ROOM, "m.room.typing", {"typing": True})
    chat.event("alice", ROOM, "org.example.custom", {"x": 1})
    db = sync()
    assert {i["type"] for i in page(db)} == {"m.room.member", "m.room.message"}


def test_keyset_pages_never_skip_or_repeat(chat: ChatBuilder, sync: Any) -> None:
    sent = [chat.message("alice", ROOM, f"m{n}")["event_id"] for n in range(25)]
    db = sync()
    seen: list[str] = []
    before = None
    while True:
        items = page(db, limit=7, before=before)
        if not items:
            break
        seen = [i["event_id"] for i in items] + seen
        before = items[0]["event_id"]
    assert [e for e in seen if e in sent] == sent
    assert len(seen) == len(set(seen))


def test_since_and_until_bound_the_page(chat: ChatBuilder, sync: Any) -> None:
    early = chat.message("alice", ROOM, "early")
    late = chat.message("alice", ROOM, "late", at=chat.clock + 86_400_000)
    db = sync()
    bodies = [i["body"] for i in page(db, since_ms=late["timestamp_ms"])]
    assert bodies == ["late"]
    bodies = [i["body"] for i in page(db, until_ms=early["timestamp_ms"])]
    assert "late" not in bodies and "early" in bodies


def test_invalid_events_only_on_request_and_never_act(
    chat: ChatBuilder, tmp_path: Path
) -> None:
    message = chat.message("alice", ROOM, "genuine")
    chat.edit("alice", message, "forged edit")
    tampered = chat.message("alice", ROOM, "tampered message")
    chat.flush()
    for path in chat.root.rglob("*.jsonl"):  # the signatures of two lines no longer verify
        text = path.read_text()
        text = text.replace("forged edit", "forged EDIT").replace("tampered message", "TAMPERED")
        path.write_text(text)
    db = tmp_path / "cache.duckdb"
    sync_bucket(LocalBucket(chat.root), db, workers=1)
    shown = {i["event_id"]: i for i in page(db)}
    assert shown[message["event_id"]]["body"] == "genuine"
    assert tampered["event_id"] not in shown
    everything = {i["event_id"]: i for i in page(db, include_invalid=True)}
    assert everything[tampered["event_id"]]["trust"] == "invalid"
    assert everything[message["event_id"]]["body"] == "genuine"


def test_incremental_refresh_matches_a_full_rebuild(chat: ChatBuilder, sync: Any) -> None:
    root = chat.message("alice", ROOM, "root")
    sync()
    reply = chat.message("bob", ROOM, "reply", parent=root["event_id"])
    chat.react("bob", root, "👍")
    sync()
    chat.edit("alice", root, "root edited")
    chat.redact("bob", reply)
    db = sync()
    with open_cache(db, read_only=True) as cache:
        incremental = cache.rows(
            "SELECT * EXCLUDE (version) FROM timeline_rows ORDER BY seq"
        )
    with open_cache(db) as cache:
        assert query_state.is_fresh(cache)
        query_state.refresh(cache, full=True)
        rebuilt = cache.rows(
            "SELECT * EXCLUDE (version) FROM timeline_rows ORDER BY seq"
        )
    assert incremental == rebuilt


def test_a_crash_before_the_refresh_heals_on_the_next_open(
    chat: ChatBuilder, sync: Any, tmp_path: Path
) -> None:
    chat.message("alice", ROOM, "before")
    db = sync()
    chat.message("alice", ROOM, "after the crash")
    chat.flush()
    from unittest import mock

    with mock.patch("bucketchat.projections.timeline.refresh.refresh"):
        sync_bucket(LocalBucket(chat.root), db, workers=1)
    with open_cache(db, read_only=True) as cache:
        assert not query_state.is_fresh(cache)
    query_state.ensure_fresh(db)
    assert "after the crash" in [i["body"] for i in page(db)]


def test_a_cache_rebuild_starts_the_rows_over(chat: ChatBuilder, sync: Any) -> None:
    from bucketchat.cache.maintenance import clear_events

    message = chat.message("alice", ROOM, "kept")
    chat.edit("alice", message, "kept, edited")
    db = sync()
    clear_events(db)
    query_state.ensure_fresh(db)
    with open_cache(db, read_only=True) as cache:
        assert cache.one("SELECT count(*) FROM timeline") == (0,)
    sync_bucket(LocalBucket(chat.root), db, workers=1)
    assert item(db, message["event_id"])["body"] == "kept, edited"


def test_event_state_agrees_with_the_events_view(chat: ChatBuilder, tmp_path: Path) -> None:
    message = chat.message("alice", ROOM, "genuine")
    chat.message("alice", ROOM, "tampered")
    chat.redact("alice", message)
    chat.flush()
    for path in chat.root.rglob("*.jsonl"):
        path.write_text(path.read_text().replace('"tampered"', '"TAMPERED"'))
    db = tmp_path / "cache.duckdb"
    sync_bucket(LocalBucket(chat.root), db, workers=1)
    with open_cache(db, read_only=True) as cache:
        rows = cache.rows(
            "SELECT e.trust, s.trust, s.redacted, e.body FROM event_rows r "
            "JOIN event_state s ON s.seq = r.seq "
            "JOIN events e ON e.room_id = r.room_id AND e.event_hash = r.event_hash "
            "AND e.signature = r.signature"
        )
    assert len(rows) == len(chat.events)
    assert all(view == stored for view, stored, _, _ in rows)
    assert {trust for trust, *_ in rows} == {"tofu", "invalid"}
    assert [body for _, _, redacted, body in rows if redacted] == ["genuine"]


ROW_QUERY = "SELECT * EXCLUDE (version) FROM timeline_rows ORDER BY seq"
STATE_QUERY = "SELECT * FROM event_state ORDER BY seq"


def _snapshot(db: Path) -> tuple[list[Any], list[Any]]:
    with open_cache(db, read_only=True) as cache:
        return (cache.rows(ROW_QUERY),
                cache.rows(STATE_QUERY))


def _rebuilt(db: Path, scratch: Path) -> tuple[list[Any], list[Any]]:
    import shutil

    copy = scratch / f"rebuilt-{db.stat().st_mtime_ns}.duckdb"
    shutil.copy(db, copy)
    with open_cache(copy) as cache:
        query_state.refresh(cache, full=True)
    return _snapshot(copy)


@pytest.mark.parametrize("seed", range(12))
def test_the_append_path_equals_a_whole_recompute(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random syncs of messages, replies, edits, redactions and reactions (some out of
    order, some by the wrong sender): after each, the rows equal a from-scratch rebuild."""
    import random

    from bucketchat.projections.timeline import append as query_append

    used: list[bool] = []
    original = query_append.append_room

    def counting(*args: Any, **kwargs: Any) -> int | None:
        result = original(*args, **kwargs)
        used.append(result is not None)
        return result

    monkeypatch.setattr(query_append, "append_room", counting)
    rng = random.Random(seed)
    chat = ChatBuilder(tmp_path / "bucket")
    db = tmp_path / "cache.duckdb"
    people = ["alice", "bob", "carol"]
    messages: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for _round in range(5):
        for _ in range(rng.randint(3, 14)):
            who = rng.choice(people)
            roll = rng.random()
            if roll < 0.4 or not messages:
                reply = messages and rng.random() < 0.4
                parent = rng.choice(messages)["event_id"] if reply else None
                if rng.random() < 0.05:  # a reply to an event that comes later, or never
                    parent = f"{ROOM}::20260101T000500.000Z::{rng.randint(0, 3):08d}-late"
                event_id = None
                if rng.random() < 0.05:
                    event_id = f"{ROOM}::20260101T000500.000Z::{rng.randint(0, 3):08d}-late"
                at = chat.clock - 5_000 if rng.random() < 0.05 else None
                messages.append(chat.message(who, ROOM, f"text {rng.random():.6f}", parent=parent,
                                             at=at, event_id=event_id))
            elif roll < 0.45:
                chat.leave(who, ROOM) if rng.random() < 0.5 else chat.join(who, ROOM)
            elif roll < 0.55:
                target = rng.choice(messages)
                owner = target["sender_id"] if rng.random() < 0.8 else who
                others.append(chat.edit(owner, target, f"edit {rng.random():.6f}"))
            elif roll < 0.75:
                others.append(chat.react(who, rng.choice(messages), rng.choice(["👍", "🎉"])))
            else:
                target = rng.choice(messages + others)
                owner = target["sender_id"] if rng.random() < 0.85 else who
                chat.redact(owner, target)
        chat.flush()
        sync_bucket(LocalBucket(chat.root), db, workers=1)
        got, want = _snapshot(db), _rebuilt(db, tmp_path)
        if got != want:
            diff_rows = [(a, b) for a, b in zip(got[0], want[0], strict=False) if a != b]
            diff_state = [(a, b) for a, b in zip(got[1], want[1], strict=False) if a != b]
            raise AssertionError(
                f"seed {seed}, round {_round}: rows {len(got[0])}/{len(want[0])} "
                f"{diff_rows[:2]}; state {diff_state[:2]}"
            )
    assert used, "no sync after the first"


def test_a_live_room_takes_the_append_path(
    chat: ChatBuilder, sync: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bucketchat.projections.timeline import append as query_append

    outcomes: list[int | None] = []
    original = query_append.append_room

    def recording(*args: Any, **kwargs: Any) -> int | None:
        outcomes.append(original(*args, **kwargs))
        return outcomes[-1]

    monkeypatch.setattr(query_append, "append_room", recording)
    root = chat.message("alice", ROOM, "root")
    older = chat.message("bob", ROOM, "older")
    db = sync()
    reply = chat.message("bob", ROOM, "reply", parent=root["event_id"])
    chat.message("carol", ROOM, "deeper", parent=reply["event_id"])
    chat.react("carol", root, "👍")
    chat.edit("bob", older, "older, edited")
    db = sync()
    chat.redact("bob", older)
    chat.message("alice", ROOM, "later")
    db = sync()
    assert outcomes and all(outcome is not None for outcome in outcomes)
    assert _snapshot(db) == _rebuilt(db, tmp_path)
    assert item(db, root["event_id"])["reply_count"] == 2
    assert item(db, older["event_id"])["body"] is None

"""Files in the bucket: mutation and deletion after ingest, files still being written,
misfiled and unexpected files, and the event findings a crafted bucket must produce."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from test_sync_support import (
    ALICE,
    BASE_MS,
    BOB,
    Author,
    events_set,
    findings_list,
    line_of,
    log_key,
    query,
    write_events,
)

from bucketchat.session import sync_bucket
from bucketchat.storage import LocalBucket


def sync(root: Path, cache: Path) -> Any:
    return sync_bucket(LocalBucket(root), cache, workers=1)


def findings_of(cache: Path, kind: str) -> list[tuple[Any, ...]]:
    return query(
        cache,
        "SELECT severity, room_id, sender_id, event_id, file, line, reason FROM findings "
        "WHERE kind = ? ORDER BY file, line, event_id",
        [kind],
    )


def kinds(cache: Path) -> dict[str, int]:
    return dict(query(cache, "SELECT kind, count(*) FROM findings GROUP BY kind"))


def rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


# ------------------------------------------------------------ mutated and deleted files


@pytest.fixture
def synced_room(tmp_path: Path) -> tuple[Path, Path, dict[str, Path]]:
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    alice, bob = Author.of(ALICE), Author.of(BOB)
    at = BASE_MS
    files = {}
    for name, author in (("a1", alice), ("b1", bob)):
        events = [author.join("room", at := at + 100)]
        events += [author.message("room", at := at + 100, f"{name} says {i}") for i in range(3)]
        files[name] = write_events(root, "room", events, author.client_id)
    for name, author in (("a2", alice), ("b2", bob)):
        events = [author.message("room", at := at + 100, f"{name} says {i}") for i in range(3)]
        files[name] = write_events(root, "room", events, author.client_id)
    report = sync(root, cache)
    assert report.files_ingested == 4
    assert report.events_ingested == 14
    assert kinds(cache) == {}
    return root, cache, files


def test_changed_and_deleted_files_are_reported_and_their_events_stay(
    synced_room: tuple[Path, Path, dict[str, Path]],
):
    root, cache, files = synced_room
    before = events_set(cache)

    same_size = files["a1"].read_bytes().replace(b"a1 says 1", b"a1 says 9")
    assert len(same_size) == files["a1"].stat().st_size
    files["a1"].write_bytes(same_size)  # same size, new content, new mtime
    with files["b1"].open("ab") as handle:  # grows
        handle.write(b'{"not": "an event"}\n')
    files["b2"].unlink()
    stamp = time.time() - 30
    os.utime(files["a2"], (stamp, stamp))  # only the mtime changes: no finding

    report = sync(root, cache)
    assert report.files_ingested == 0
    assert report.events_ingested == 0
    assert report.findings == {"file_mutated": 2, "file_deleted": 1}
    mutated = findings_of(cache, "file_mutated")
    assert {row[4] for row in mutated} == {rel(files["a1"], root), rel(files["b1"], root)}
    assert all(row[0] == "error" and row[1] == "room" for row in mutated)
    deleted = findings_of(cache, "file_deleted")
    assert [(row[0], row[4]) for row in deleted] == [("error", rel(files["b2"], root))]
    assert kinds(cache) == {"file_mutated": 2, "file_deleted": 1}
    assert events_set(cache) == before  # no finding ever drops a valid event
    trusts = query(cache, "SELECT DISTINCT trust FROM events")
    assert trusts == [("tofu",)]

    again = sync(root, cache)  # reported once, not again on every sync
    assert again.findings == {}
    assert kinds(cache) == {"file_mutated": 2, "file_deleted": 1}
    assert events_set(cache) == before


def test_a_touched_file_with_unchanged_content_is_no_finding(
    synced_room: tuple[Path, Path, dict[str, Path]],
):
    root, cache, files = synced_room
    before = events_set(cache)
    for path in files.values():
        data = path.read_bytes()
        path.write_bytes(data)  # rewritten byte for byte: a new mtime only
        stamp = time.time() - 10
        os.utime(path, (stamp, stamp))
    report = sync(root, cache)
    assert report.files_ingested == 0
    assert report.findings == {}
    assert kinds(cache) == {}
    assert events_set(cache) == before
    # and a real change after that is still caught
    files["a2"].write_bytes(files["a2"].read_bytes().replace(b"a2 says 0", b"a2 says X"))
    assert sync(root, cache).findings == {"file_mutated": 1}


# ------------------------------------------------------------ files still being written


def test_an_unterminated_file_changed_in_the_last_2_seconds_waits_for_the_next_sync(
    tmp_path: Path,
):
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    author = Author.of(ALICE, chained=False)
    events = [author.join("room", BASE_MS), author.message("room", BASE_MS + 1, "first")]
    key = log_key("room", BASE_MS, BASE_MS + 2, "upstream")
    path = root / key
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\n".join(line_of(e).encode() for e in events))  # no trailing \n, now

    report = sync(root, cache)
    assert report.files_ingested == 0
    assert report.events_ingested == 0
    assert events_set(cache) == set()
    assert query(cache, "SELECT count(*) FROM rejected_lines") == [(0,)]

    last = author.message("room", BASE_MS + 2, "last")
    with path.open("ab") as handle:  # the writer finishes the file
        handle.write(b"\n" + line_of(last).encode() + b"\n")
    report = sync(root, cache)
    assert report.files_ingested == 1
    assert report.events_ingested == 3
    assert report.events_rejected == 0
    assert kinds(cache) == {"unchained": 1}


def test_a_file_left_for_the_next_sync_has_no_finding_yet(tmp_path: Path):
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    author = Author.of(ALICE, chained=False)
    events = [author.join("room", BASE_MS), author.message("room", BASE_MS + 1, "first")]
    path = root / log_key("room", BASE_MS, BASE_MS + 2, "upstream")  # bounds of the whole file
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\n".join(line_of(e).encode() for e in events))
    report = sync(root, cache)
    assert report.files_ingested == 0
    assert report.findings == {}
    assert kinds(cache) == {}


def test_an_old_unterminated_file_is_read_at_once(tmp_path: Path):
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    author = Author.of(ALICE)
    events = [author.join("room", BASE_MS), author.message("room", BASE_MS + 1, "only")]
    path = root / log_key("room", BASE_MS, BASE_MS + 1, author.client_id)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\n".join(line_of(e).encode() for e in events))
    stamp = time.time() - 5
    os.utime(path, (stamp, stamp))
    report = sync(root, cache)
    assert report.files_ingested == 1
    assert report.events_ingested == 2
    assert kinds(cache) == {}


def test_a_terminated_file_written_just_now_is_read_at_once(tmp_path: Path):
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    author = Author.of(ALICE)
    events = [author.join("room", BASE_MS), author.message("room", BASE_MS + 1, "only")]
    write_events(root, "room", events, author.client_id, mtime=time.time())
    report = sync(root, cache)
    assert (report.files_ingested, report.events_ingested) == (1, 2)


# ------------------------------------------------------------ misfiled and unexpected


def test_misfiled_files_are_reported_and_still_read(tmp_path: Path):
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    alice, bob = Author.of(ALICE), Author.of(BOB)
    good = [alice.join("room", BASE_MS + 10), alice.message("room", BASE_MS + 20, "ok")]
    good_path = write_events(root, "room", good, alice.client_id)
    wrong_bounds = [bob.join("room", BASE_MS + 30), bob.message("room", BASE_MS + 90, "late")]
    bounds_path = write_events(
        root,
        "room",
        wrong_bounds,
        bob.client_id,
        name=log_key("room", BASE_MS + 30, BASE_MS + 40, bob.client_id),
    )
    wrong_day = [alice.message("room", BASE_MS + 100, "wrong folder")]
    day_key = f"rooms/room/logs/2026-01-02/messages_{BASE_MS + 100}_{BASE_MS + 100}_x.jsonl"
    day_path = write_events(root, "room", wrong_day, "x", name=day_key)

    report = sync(root, cache)
    assert report.files_ingested == 3
    assert report.events_ingested == 5
    misfiled = findings_of(cache, "misfiled")
    assert [(row[0], row[4]) for row in misfiled] == sorted(
        [("warning", rel(bounds_path, root)), ("warning", rel(day_path, root))],
        key=lambda item: item[1],
    )
    assert rel(good_path, root) not in {row[4] for row in misfiled}
    assert kinds(cache) == {"misfiled": 2}


def test_unexpected_files_are_reported_and_never_read(tmp_path: Path):
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    alice = Author.of(ALICE, chained=False)
    at = BASE_MS + 1000
    real = write_events(root, "room", [alice.join("room", at)], alice.client_id)
    payload = line_of(alice.message("room", at + 1, "hidden")).encode() + b"\n"
    day = "2026-01-01"
    strays = [
        f"rooms/room/logs/{day}/notes.txt",
        f"rooms/room/logs/{day}/messages_{at}_{at}.jsonl",  # no client id
        f"rooms/room/logs/{day}/messages_{at}_{at}_bad-client.jsonl",
        f"rooms/room/logs/2026-1-1/messages_{at}_{at}_x.jsonl",  # not YYYY-MM-DD
        f"rooms/room/logs/messages_{at}_{at}_x.jsonl",  # no day folder
        "rooms/room/stray.json",
        "rooms/README.txt",
        f"rooms/-bad/logs/{day}/messages_{at}_{at}_x.jsonl",  # invalid room id folder
        f"rooms/bad room/logs/{day}/messages_{at}_{at}_x.jsonl",
    ]
    for key in strays:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        os.utime(path, (time.time() - 60, time.time() - 60))

    report = sync(root, cache)
    assert report.files_scanned == 1
    assert report.files_ingested == 1
    assert report.events_ingested == 1
    found = findings_of(cache, "unexpected_file")
    assert sorted(row[4] for row in found) == sorted(strays)
    assert {row[0] for row in found} == {"info"}
    assert query(cache, "SELECT DISTINCT file FROM events") == [(rel(real, root),)]
    assert query(cache, "SELECT count(*) FROM rejected_lines") == [(0,)]
    assert kinds(cache) == {"unexpected_file": len(strays)}
    # a second sync neither reads them nor reports them twice
    again = sync(root, cache)
    assert again.events_ingested == 0 and again.findings == {}
    assert kinds(cache) == {"unexpected_file": len(strays)}


# ------------------------------------------------------------ event findings


def test_future_timestamp(tmp_path: Path):
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    alice = Author.of(ALICE)
    now = int(time.time() * 1000)
    join = alice.join("room", now - 60_000)
    soon = alice.message("room", now + 10 * 60_000, "ten minutes ahead: fine")
    late = alice.message("room", now + 60 * 60_000, "an hour ahead")
    write_events(root, "room", [join, soon, late], alice.client_id)
    report = sync(root, cache)
    assert report.events_ingested == 3
    assert report.findings == {"future_timestamp": 1}
    rows = findings_of(cache, "future_timestamp")
    assert [(r[0], r[2], r[3]) for r in rows] == [("warning", ALICE, late["event_id"])]
    assert len(events_set(cache)) == 3


def test_event_id_conflict(tmp_path: Path):
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    alice, bob = Author.of(ALICE), Author.of(BOB)
    shared_id = "room::20260101T000001.000Z::0b3510b0-0000-4000-8000-000000000001"
    a = [
        alice.join("room", BASE_MS),
        alice.message("room", BASE_MS + 1000, "mine", event_id=shared_id),
    ]
    b = [
        bob.join("room", BASE_MS + 5),
        bob.message("room", BASE_MS + 1000, "no, mine", event_id=shared_id),
    ]
    write_events(root, "room", a, alice.client_id)
    write_events(root, "room", b, bob.client_id)
    sync(root, cache)
    rows = findings_of(cache, "event_id_conflict")
    assert sorted((r[0], r[2], r[3]) for r in rows) == [
        ("error", ALICE, shared_id),
        ("error", BOB, shared_id),
    ]
    assert query(cache, "SELECT count(*) FROM events WHERE event_id = ?", [shared_id]) == [(2,)]
    assert kinds(cache) == {"event_id_conflict": 2}


def test_an_invalid_event_never_makes_an_event_id_conflict(tmp_path: Path):
    """Only valid events conflict: a forged copy under a taken event_id is a bad_signature,
    and the event it copies the id of stays clean unless a valid event shares the id."""
    from test_sync_support import MALLORY, seed_of, sign

    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    alice, bob = Author.of(ALICE), Author.of(BOB)
    lone_id = "room::20260101T000002.000Z::0b3510b0-0000-4000-8000-000000000002"
    shared_id = "room::20260101T000003.000Z::0b3510b0-0000-4000-8000-000000000003"
    a = [
        alice.join("room", BASE_MS),
        alice.message("room", BASE_MS + 1000, "only valid one", event_id=lone_id),
        alice.message("room", BASE_MS + 2000, "mine", event_id=shared_id),
    ]
    b = [
        bob.join("room", BASE_MS + 5),
        bob.message("room", BASE_MS + 2000, "no, mine", event_id=shared_id),
    ]
    forged = bob.message("room", BASE_MS + 1000, "forged", event_id=lone_id, prev=None)
    unsigned = {key: value for key, value in forged.items() if key != "signature"}
    b.append(sign(unsigned, seed_of(MALLORY)))  # bob's name, not bob's key
    write_events(root, "room", a, alice.client_id)
    write_events(root, "room", b, bob.client_id)
    sync(root, cache)
    rows = findings_of(cache, "event_id_conflict")
    assert sorted((r[2], r[3]) for r in rows) == [(ALICE, shared_id), (BOB, shared_id)]
    assert kinds(cache).get("bad_signature") == 1


def test_unauthorized_relation(tmp_path: Path):
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    alice, bob = Author.of(ALICE), Author.of(BOB)
    at = BASE_MS
    a = [alice.join("room", at)]
    target = alice.message("room", at + 10, "alice's words")
    a.append(target)
    own_edit = alice.event(
        "room",
        at + 20,
        "m.room.edit",
        {"replaces": target["event_id"], "new_content": {"body": "edited", "msgtype": "m.text"}},
    )
    a.append(own_edit)
    b = [bob.join("room", at + 5)]
    bad_edit = bob.event(
        "room",
        at + 30,
        "m.room.edit",
        {"replaces": target["event_id"], "new_content": {"body": "forged", "msgtype": "m.text"}},
    )
    bad_redaction = bob.event("room", at + 40, "m.room.redaction", {"redacts": target["event_id"]})
    reaction = bob.event(
        "room", at + 50, "m.room.reaction", {"relates_to": target["event_id"], "reaction": "+1"}
    )
    b += [bad_edit, bad_redaction, reaction]
    write_events(root, "room", a, alice.client_id)
    write_events(root, "room", b, bob.client_id)
    sync(root, cache)
    rows = findings_of(cache, "unauthorized_relation")
    assert sorted((r[0], r[2], r[3]) for r in rows) == sorted(
        [("warning", BOB, bad_edit["event_id"]), ("warning", BOB, bad_redaction["event_id"])]
    )
    assert kinds(cache) == {"unauthorized_relation": 2}
    assert findings_list(cache)  # the list view agrees


def test_many_changed_and_deleted_files_at_once(tmp_path: Path):
    """Many files changed and deleted in one re-sync: the listing's diff against the files
    table (in DuckDB) finds every one of them."""
    from test_sync_support import generated_bucket

    FEW_FILES = 50  # each kind of change, to so many files

    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    files = generated_bucket(root, files=3 * FEW_FILES, events_per_file=2)
    first = sync(root, cache)
    assert first.files_ingested == 3 * FEW_FILES
    before = events_set(cache)
    gone, grown = files[:FEW_FILES], files[FEW_FILES : 2 * FEW_FILES + 1]
    for path in gone:
        path.unlink()
    for path in grown:
        with path.open("ab") as handle:
            handle.write(b'{"not": "an event"}\n')

    report = sync(root, cache)
    assert report.files_scanned == 2 * FEW_FILES
    assert report.findings == {"file_deleted": FEW_FILES, "file_mutated": FEW_FILES + 1}
    assert events_set(cache) == before
    assert sync(root, cache).findings == {}


def test_a_local_sync_commits_by_events_and_time_not_by_files(tmp_path: Path, monkeypatch):
    """Small local files share transactions (each costs a commit and a close); a batch
    still ends at BATCH_FILES files, and a transaction at COMMIT_ROWS events."""
    from test_sync_support import generated_bucket

    from bucketchat.sync import pull as pull_module
    from bucketchat.sync import store as store_module

    commits: list[int] = []
    real_commit = store_module._commit_and_close

    def counting_commit(cache: Any) -> None:
        commits.append(1)
        real_commit(cache)

    monkeypatch.setattr(store_module, "_commit_and_close", counting_commit)
    monkeypatch.setattr(pull_module, "BATCH_FILES", 40)
    root = tmp_path / "bucket"
    generated_bucket(root, files=150, events_per_file=3)

    report = sync(root, tmp_path / "one.duckdb")
    assert report.files_ingested == 150
    assert len(commits) == 1  # four batches, one transaction

    commits.clear()
    monkeypatch.setattr(store_module, "COMMIT_ROWS", 200)  # 40 files of 3 events: 120 a batch
    report = sync(root, tmp_path / "two.duckdb")
    assert report.files_ingested == 150
    assert len(commits) == 2  # batches 1-2 (240 events), then 3-4
    assert events_set(tmp_path / "one.duckdb") == events_set(tmp_path / "two.duckdb")


def test_copies_of_an_event_are_stored_once_in_one_batch_and_across_syncs(tmp_path: Path):
    """A copy is a line whose (hash, signature) is already stored or came earlier in key
    order (§4): within one batch it is found by numbering the batch's copies, against
    earlier syncs by the stored events; either way it is kept in duplicate_lines only."""
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    alice = Author.of(ALICE)
    joined = alice.join("copies", BASE_MS)
    first = alice.message("copies", BASE_MS + 1_000, "said once")
    second = alice.message("copies", BASE_MS + 2_000, "said twice")
    write_events(root, "copies", [joined, first, second, first], alice.client_id)
    report = sync(root, cache)
    assert (report.events_ingested, report.duplicates) == (3, 1)

    write_events(root, "copies", [second, alice.message("copies", BASE_MS + 3_000, "new")], "x")
    report = sync(root, cache)
    assert (report.events_ingested, report.duplicates) == (1, 1)
    bodies = query(cache, "SELECT body FROM event_rows WHERE room_id = 'copies' ORDER BY seq")
    assert bodies == [(None,), ("said once",), ("said twice",), ("new",)]
    copies = query(cache, "SELECT line FROM duplicate_lines WHERE room_id = 'copies' ORDER BY 1")
    assert copies == [(1,), (4,)]
    assert len(findings_of(cache, "duplicate_event")) == 2

"""The writer's outbox: a failed upload keeps the events for the next command; a name clash
picks a new name and never overwrites; an upload that already happened is not repeated."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from test_sync_support import BASE_MS, bucketchat, error_lines, query, seed_of
from test_writer_layout import ALICE, check_chains, client, spec_client_id, verify_room

from bucketchat.cache import open_cache
from bucketchat.compose import compose, join_content, message_content
from bucketchat.errors import UploadFailed
from bucketchat.protocol.signing import SigningKey
from bucketchat.storage import LocalBucket
from bucketchat.sync.push import push

T = BASE_MS + 3_600_000  # a fixed clock: every event of these tests has this timestamp
DAY = "2026-01-01"


def clash_name(suffix: str = "") -> str:
    cid = spec_client_id(ALICE, SigningKey(seed_of(ALICE)).public_key)
    return f"messages_{T}_{T}_{cid}{suffix}.jsonl"


def pending(db: Path) -> list[tuple[str, str | None]]:
    return query(db, "SELECT event_id, last_error FROM outbox WHERE uploaded_at IS NULL")


def put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (time.time() - 60, time.time() - 60))


# ---------------------------------------------------------------- failed uploads, CLI


@pytest.fixture
def blocked_bucket(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A bucket whose folder cannot be created: its parent is a regular file."""
    assert bucketchat("keys", "init", "--user", ALICE).code == 0
    blocker = tmp_path / "mount"
    blocker.write_text("not a folder")
    return blocker, blocker / "bucket", tmp_path / "cache.duckdb"


def test_a_failed_send_keeps_the_event_and_the_next_command_uploads_it(
    blocked_bucket: tuple[Path, Path, Path],
):
    blocker, root, db = blocked_bucket
    common = ["--bucket", str(root), "--db", str(db)]
    ran = bucketchat("send", "yard", "stuck for a while", *common)
    assert ran.code != 0
    assert ran.out == ""
    assert len(error_lines(ran.err)) == 1, ran.err
    assert "Traceback" not in ran.err
    stuck = pending(db)
    assert len(stuck) == 2  # the join that publishes the key, and the message
    assert not root.exists()

    blocker.unlink()  # the bucket works again
    ran = bucketchat("send", "yard", "and now this", *common)
    assert ran.code == 0, ran.err
    assert pending(db) == []
    ran = bucketchat("keys", "show", "--json")
    keys = {ALICE: [json.loads(ran.out)["public_key"]]}
    verified = verify_room(root, "yard", keys)
    (walk,) = check_chains(verified).values()
    assert [i.event["content"].get("body") for i in walk] == [
        None,
        "stuck for a while",
        "and now this",
    ]
    assert {i.event["event_id"] for i in walk} >= {event_id for event_id, _ in stuck}


def test_a_failed_send_exits_3_with_one_line_about_the_outbox(
    blocked_bucket: tuple[Path, Path, Path],
):
    _, root, db = blocked_bucket
    ran = bucketchat("send", "yard", "stuck", "--bucket", str(root), "--db", str(db))
    assert ran.code == 3, ran.err
    (line,) = error_lines(ran.err)
    assert "outbox" in line
    assert "unexpected" not in line


def test_a_sync_uploads_the_waiting_events_then_ingests_them_in_the_same_run(
    blocked_bucket: tuple[Path, Path, Path],
):
    """sync reads the outbox in the same open of the cache as its plan; when events wait,
    it uploads them and lists the bucket again, so they are ingested at once."""
    blocker, root, db = blocked_bucket
    common = ["--bucket", str(root), "--db", str(db)]
    assert bucketchat("send", "yard", "stuck for a while", *common).code == 3
    ran = bucketchat("sync", *common)
    assert ran.code == 3, ran.err  # still blocked: the upload's error, about the outbox
    (line,) = error_lines(ran.err)
    assert "outbox" in line
    assert len(pending(db)) == 2

    blocker.unlink()
    ran = bucketchat("sync", "--json", *common)
    assert ran.code == 0, ran.err
    assert json.loads(ran.out)["events_ingested"] == 2
    assert pending(db) == []
    bodies = query(db, "SELECT body FROM events WHERE type = 'm.room.message'")
    assert bodies == [("stuck for a while",)]


# ---------------------------------------------------------------- failed uploads, Client


def test_no_free_name_is_an_upload_failure_and_the_events_wait_in_the_outbox(tmp_path: Path):
    root, db = tmp_path / "bucket", tmp_path / "alice.duckdb"
    folder = root / "rooms" / "yard" / "logs" / DAY
    junk = b'{"someone else": "was here"}\n'
    taken = [clash_name()] + [clash_name(f"_{n}") for n in range(1, 50)]
    for name in taken:
        put(folder / name, junk)
    alice = client(root, db, ALICE, lambda: T)

    with pytest.raises(UploadFailed, match="outbox") as caught:
        alice.write("yard", "m.room.message", message_content("nowhere to go"))
    assert caught.value.exit_code == 3
    stuck = pending(db)
    assert len(stuck) == 2
    assert all(error for _, error in stuck)
    assert all((folder / name).read_bytes() == junk for name in taken)  # nothing overwritten

    (folder / clash_name("_7")).unlink()  # a name frees up
    ran = bucketchat("sync", "--bucket", str(root), "--db", str(db))  # the next command
    assert ran.code == 0, ran.err
    assert pending(db) == []
    lines = (folder / clash_name("_7")).read_text().splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == [e for e, _ in stuck]
    assert all(
        (folder / name).read_bytes() == junk for name in taken if not name.endswith("_7.jsonl")
    )


# ---------------------------------------------------------------- name clashes


def test_a_name_clash_picks_a_new_name_and_never_overwrites(tmp_path: Path):
    root, db = tmp_path / "bucket", tmp_path / "alice.duckdb"
    folder = root / "rooms" / "yard" / "logs" / DAY
    theirs = b'{"event_id": "yard::x::y", "note": "different bytes under our name"}\n'
    put(folder / clash_name(), theirs)
    alice = client(root, db, ALICE, lambda: T)

    joined = alice.join("yard")
    said = alice.write("yard", "m.room.message", message_content("hello"))
    assert (folder / clash_name()).read_bytes() == theirs
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [clash_name(), clash_name("_1"), clash_name("_2")]
    )
    assert (folder / clash_name("_1")).read_text() == joined.line + "\n"
    assert (folder / clash_name("_2")).read_text() == said.line + "\n"
    assert pending(db) == []

    (folder / clash_name()).unlink()  # set the stranger's file aside and check our own
    verified = verify_room(root, "yard", {ALICE: [alice.key.public_key]}, clash_suffix_ok=True)  # type: ignore[union-attr]
    (walk,) = check_chains(verified).values()
    assert [i.event["event_id"] for i in walk] == [joined.event_id, said.event_id]


def test_an_upload_that_already_happened_is_not_repeated(tmp_path: Path):
    """A crash after the create but before the outbox learned of it: the object there is
    byte for byte ours, so push records it and writes no second copy."""
    root, db = tmp_path / "bucket", tmp_path / "alice.duckdb"
    key = SigningKey(seed_of(ALICE))
    with open_cache(db) as cache:
        composed = compose(
            cache, key, ALICE, "yard", "m.room.member", join_content(key), clock=lambda: T
        )
    folder = root / "rooms" / "yard" / "logs" / DAY
    put(folder / clash_name(), composed.line.encode("utf-8") + b"\n")

    written = push(LocalBucket(root), db)
    assert written == [f"rooms/yard/logs/{DAY}/{clash_name()}"]
    assert [p.name for p in folder.iterdir()] == [clash_name()]
    assert query(db, "SELECT file FROM outbox WHERE uploaded_at IS NOT NULL") == [(written[0],)]

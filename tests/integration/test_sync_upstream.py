"""Events of the upstream reference client: no keys in the log, no chains, one event per
file, local-time event ids. With the senders' keys pinned (``keys trust``) they verify as
attested and show ``unchained``; without pins they are unverified (unknown_key)."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from test_sync_support import (
    ALICE,
    BASE_MS,
    BOB,
    Author,
    bucketchat,
    line_of,
    public_of,
)

ROOM = "upstream-room"
PLUS_TWO = timezone(timedelta(hours=2))


def local_event_id(at: int) -> str:
    stamp = datetime.fromtimestamp(at / 1000, tz=PLUS_TWO).isoformat(timespec="seconds")
    return f"{ROOM}::{stamp}::{uuid.uuid4()}"  # e.g. room::2026-01-01T02:00:05+02:00::uuid


def upstream_bucket(root: Path) -> dict[str, list[str]]:
    """Write the room the way the upstream client does; returns sender → event ids."""
    alice, bob = Author.of(ALICE, chained=False), Author.of(BOB, chained=False)
    ids: dict[str, list[str]] = {ALICE: [], BOB: []}
    plan = [
        (alice, "m.room.member", {"membership": "join", "displayname": "Alice"}),
        (alice, "m.room.message", {"body": "hello from upstream", "msgtype": "m.text"}),
        (bob, "m.room.message", {"body": "hi alice", "msgtype": "m.text"}),
        (alice, "m.room.message", {"body": "no chains here", "msgtype": "m.text"}),
        (bob, "m.room.message", {"body": "nor keys", "msgtype": "m.text"}),
        (bob, "m.room.message", {"body": "bye", "msgtype": "m.text"}),
    ]
    (root / "rooms" / ROOM).mkdir(parents=True)
    (root / "rooms" / ROOM / "metadata.json").write_text(
        json.dumps(
            {
                "room_id": ROOM,
                "created_at": "2026-01-01T00:00:00Z",
                "version": "1.0",
                "protocol": "bucket-chat-v1",
            }
        )
    )
    for index, (author, event_type, content) in enumerate(plan):
        at = BASE_MS + 5_000 * (index + 1)
        event = author.event(ROOM, at, event_type, content, event_id=local_event_id(at), prev=None)
        assert event["prev_event_hash"] is None
        ids[author.sender].append(event["event_id"])
        name = author.sender.split("@")[0]
        day = datetime.fromtimestamp(at / 1000, tz=UTC).strftime("%Y-%m-%d")
        path = root / "rooms" / ROOM / "logs" / day / f"messages_{at}_{at}_{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        ending = "\n" if index % 2 else ""  # written in place: sometimes no final newline
        path.write_text(line_of(event) + ending, encoding="utf-8")
        os.utime(path, (time.time() - 600, time.time() - 600))
    return ids


def audit(db: Path) -> dict:
    ran = bucketchat("audit", "--db", str(db), "--format", "json", "--fail-on", "never")
    assert ran.code == 0, ran.err
    return json.loads(ran.out)


def test_upstream_events_verify_with_pinned_keys_as_attested_and_unchained(tmp_path: Path):
    root, db = tmp_path / "bucket", tmp_path / "cache.duckdb"
    ids = upstream_bucket(root)
    for sender in (ALICE, BOB):
        ran = bucketchat("keys", "trust", sender, public_of(sender))
        assert ran.code == 0, ran.err

    ran = bucketchat("sync", "--bucket", str(root), "--db", str(db), "--json")
    assert ran.code == 0, ran.err
    report = json.loads(ran.out)
    assert report["files_ingested"] == 6
    assert report["events_ingested"] == 6
    assert report["events_rejected"] == 0

    ran = bucketchat(
        "sql", "--db", str(db), "--format", "json",
        "SELECT sender_id, trust, count(*) AS n FROM events GROUP BY ALL ORDER BY sender_id",
    )  # fmt: skip
    assert ran.code == 0, ran.err
    assert json.loads(ran.out) == [
        {"sender_id": ALICE, "trust": "attested", "n": 3},
        {"sender_id": BOB, "trust": "attested", "n": 3},
    ]

    report = audit(db)
    findings = [(f["kind"], f["severity"], f["sender_id"]) for f in report["findings"]]
    assert sorted(findings) == [("unchained", "warning", ALICE), ("unchained", "warning", BOB)]
    unchained_ids = {f["event_id"] for f in report["findings"]}
    assert unchained_ids <= set(ids[ALICE]) | set(ids[BOB])
    senders = {(s["sender_id"], s["public_key"]): s for s in report["senders"]}
    assert set(senders) == {(ALICE, public_of(ALICE)), (BOB, public_of(BOB))}
    for entry in senders.values():
        assert entry["trust"] == "attested"
        assert entry["chain"] == ["unchained"]
        assert entry["events"] == 3
    assert report["summary"]["error"] == 0


def test_upstream_events_without_pins_are_unverified(tmp_path: Path):
    root, db = tmp_path / "bucket", tmp_path / "cache.duckdb"
    ids = upstream_bucket(root)
    ran = bucketchat("sync", "--bucket", str(root), "--db", str(db), "--json")
    assert ran.code == 0, ran.err
    assert json.loads(ran.out)["events_ingested"] == 6

    report = audit(db)
    findings = sorted((f["kind"], f["severity"], f["event_id"]) for f in report["findings"])
    expected = sorted(("unknown_key", "warning", event_id) for event_id in ids[ALICE] + ids[BOB])
    assert findings == expected
    assert {s["trust"] for s in report["senders"]} == {"unverified"}
    assert all(room["events"] == 6 for room in report["rooms"])  # unverified is not invalid


@pytest.mark.parametrize("pin", [ALICE, BOB])
def test_pinning_one_sender_later_verifies_only_that_sender(pin: str, tmp_path: Path):
    root, db = tmp_path / "bucket", tmp_path / "cache.duckdb"
    upstream_bucket(root)
    assert bucketchat("sync", "--bucket", str(root), "--db", str(db)).code == 0
    assert bucketchat("keys", "trust", pin, public_of(pin)).code == 0
    ran = bucketchat("sync", "--bucket", str(root), "--db", str(db), "--json")
    assert ran.code == 0, ran.err
    assert json.loads(ran.out)["files_ingested"] == 0
    other = BOB if pin == ALICE else ALICE
    trusts = {s["sender_id"]: s["trust"] for s in audit(db)["senders"]}
    assert trusts == {pin: "attested", other: "unverified"}

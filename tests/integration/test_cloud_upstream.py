"""A bucket written the way the upstream reference client writes, on moto's S3 server
(issue 5 with the upstream compatibility of PROTOCOL.md): one event per object, no member
events carrying keys, ``prev_event_hash`` null, event ids with a local-time middle part,
objects put in place (no create-only condition), some without a final newline.

With the senders' keys pinned (``keys trust SENDER PUBKEY``) a sync shows their events
``attested`` and the audit says ``unchained``; the same objects in a local folder give the
same room digest.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cloud_support import User, site_for
from test_sync_support import ALICE, BOB, public_of
from test_sync_upstream import ROOM, upstream_bucket

IN_PROGRESS_SECONDS = 2.0  # sync/store.py: an unterminated object younger than this waits


def test_upstream_objects_on_s3_verify_as_attested_and_unchained(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    folder = tmp_path / "upstream"
    ids = upstream_bucket(folder)  # the upstream layout, as files
    moto = site_for("moto", request, tmp_path)
    name = moto.new_bucket()
    objects = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in objects:
        moto.put(name, str(path.relative_to(folder)), path.read_bytes())
    uploaded = time.monotonic()
    keys = moto.keys(name)
    assert len(keys) == 7  # metadata.json and six one-event objects
    assert sum(key.endswith(".jsonl") for key in keys) == 6

    reader = User.make("reader@example.com", tmp_path, moto.url(name), moto)
    for sender in (ALICE, BOB):
        reader.ok("keys", "trust", sender, public_of(sender))
    # Every object is complete (S3 objects are immutable), but bucketchat cannot tell an
    # unterminated one from a local file still being written until it is a little older.
    time.sleep(max(0.0, IN_PROGRESS_SECONDS + 0.5 - (time.monotonic() - uploaded)))
    report = reader.json("sync", "--json")
    assert (report["files_ingested"], report["events_ingested"]) == (6, 6)
    assert report["events_rejected"] == 0

    rows = reader.sql(
        "SELECT event_id, sender_id, trust, prev_event_hash FROM events ORDER BY timestamp_ms"
    )
    assert {row["event_id"] for row in rows} == set(ids[ALICE]) | set(ids[BOB])
    assert {row["trust"] for row in rows} == {"attested"}
    assert {row["prev_event_hash"] for row in rows} == {None}

    audit = reader.audit()
    findings = sorted((f["kind"], f["severity"], f["sender_id"]) for f in audit["findings"])
    assert sorted(set(findings)) == [("unchained", "warning", ALICE), ("unchained", "warning", BOB)]
    assert audit["summary"]["error"] == 0
    senders = {s["sender_id"]: s for s in audit["senders"]}
    assert set(senders) == {ALICE, BOB}
    for sender, entry in senders.items():
        assert entry["public_key"] == public_of(sender)
        assert entry["trust"] == "attested"
        assert entry["chain"] == ["unchained"]

    # The same objects read from a local folder: the same room, to the bit.
    local = User.make(
        "local@example.com", tmp_path, str(folder), site_for("local", request, tmp_path)
    )
    for sender in (ALICE, BOB):
        local.ok("keys", "trust", sender, public_of(sender))
    local.ok("sync")
    assert local.audit()["rooms"] == audit["rooms"]
    assert [r["room_id"] for r in audit["rooms"]] == [ROOM]

    again = reader.json("sync", "--json")
    assert (again["files_ingested"], again["events_ingested"]) == (0, 0)

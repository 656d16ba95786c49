"""Two people chatting through each backend with the real CLI (issue 5, "end-to-end").

alice and bob each have their own BUCKETCHAT_HOME (keystore, pinned keys, config file)
and their own cache file, and reach the bucket the way a user of that cloud would: moto
through AWS_ENDPOINT_URL, Ceph radosgw through the config file's [s3] table,
fake-gcs-server through STORAGE_EMULATOR_HOST, azurite through
AZURE_STORAGE_CONNECTION_STRING; a local folder is the yardstick. Every step is a
``python -m bucketchat`` subprocess: room create, send, send --reply-to, edit, react,
redact, sync, log, sql, audit.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cloud_support import Site, User, site_for

ALICE, BOB = "alice@example.com", "bob@example.com"
ROOM = "lobby"
LOG_KEY = re.compile(
    r"rooms/lobby/logs/\d{4}-\d{2}-\d{2}/messages_\d+_\d+_(alice|bob)_[0-9a-f]{6}\.jsonl"
)

BACKENDS = [
    pytest.param("local", id="local"),
    pytest.param("moto", id="moto"),
    pytest.param("ceph", id="ceph", marks=pytest.mark.slow),
    pytest.param("gcs", id="gcs"),
    pytest.param("azurite", id="azurite"),
]


@pytest.fixture(params=BACKENDS)
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Site:
    return site_for(request.param, request, tmp_path)


def test_two_users_chat_through_the_bucket(site: Site, tmp_path: Path) -> None:
    name = site.new_bucket()
    alice = User.make(ALICE, tmp_path, site.url(name), site)
    bob = User.make(BOB, tmp_path, site.url(name), site)
    alice_key = alice.keys_init()
    bob.keys_init()
    bob.ok("keys", "trust", ALICE, alice_key)  # bob met alice; alice trusts bob on first use

    assert alice.ok("room", "create", ROOM, "--name", "The lobby").strip() == ROOM
    hello = alice.event("send", ROOM, "hello bob")
    reply = bob.event("send", ROOM, "hi alice", "--reply-to", hello)
    edit = alice.event("edit", hello, "hello bob, edited")
    reaction = bob.event("react", hello, "👍")
    oops = alice.event("send", ROOM, "oops, wrong room")
    redaction = alice.event("redact", oops, "--reason", "typo")

    alice_sync = alice.json("sync", "--json")
    bob_sync = bob.json("sync", "--json")
    for report in (alice_sync, bob_sync):
        assert report["events_rejected"] == 0, report
        assert not report.get("errors"), report

    # What is in the bucket, listed with the cloud's own SDK: the room's metadata and one
    # file per upload, named as PROTOCOL.md §1 says.
    keys = site.keys(name)
    assert "rooms/lobby/metadata.json" in keys
    logs = [key for key in keys if key != "rooms/lobby/metadata.json"]
    assert logs and all(LOG_KEY.fullmatch(key) for key in logs), keys
    assert {LOG_KEY.fullmatch(key).group(1) for key in logs} == {"alice", "bob"}  # type: ignore[union-attr]

    ours = {hello, edit, oops, redaction}
    theirs = {reply, reaction}
    query = "SELECT event_id, sender_id, type, trust FROM events ORDER BY timestamp_ms, event_id"
    for user, trust_of_other in ((alice, "tofu"), (bob, "attested")):
        rows = user.sql(query)
        ids = {row["event_id"] for row in rows}
        assert ours | theirs <= ids
        assert [row["type"] for row in rows].count("m.room.member") == 2  # both published keys
        assert {row["trust"] for row in rows} <= {"tofu", "attested"}
        other = BOB if user is alice else ALICE
        assert {row["trust"] for row in rows if row["sender_id"] == other} == {trust_of_other}

    # The timeline each of them sees: the edit applied, the reaction counted, the reply
    # threaded under hello, the redacted text gone.
    for user in (alice, bob):
        timeline = {item["event_id"]: item for item in user.json("log", ROOM, "--json")}
        assert timeline[hello]["body"] == "hello bob, edited"
        assert timeline[hello]["edited"] is True
        assert timeline[hello]["reactions"] == {"👍": 1}
        assert timeline[hello]["reply_count"] == 1
        assert timeline[reply]["parent_event_id"] == hello
        assert timeline[reply]["sender_id"] == BOB
        assert timeline[reply]["body"] == "hi alice"
        shown = [item.get("body") for item in timeline.values()]
        assert "oops, wrong room" not in shown
        assert oops not in timeline or timeline[oops]["redacted"] is True

    # Both audits are clean and both caches hold the same room, to the bit.
    audits = [alice.audit(), bob.audit()]
    for report in audits:
        assert report["summary"]["error"] == 0, report["findings"]
        assert report["findings"] == [], report["findings"]
        assert {s["sender_id"] for s in report["senders"]} == {ALICE, BOB}
        assert all(s["chain"] == [] for s in report["senders"]), report["senders"]
    digests = [{r["room_id"]: (r["events"], r["digest"]) for r in a["rooms"]} for a in audits]
    assert digests[0] == digests[1]
    assert digests[0][ROOM][0] == 8  # two joins, three messages, an edit, a reaction, a redaction

    # A sync with nothing new reads nothing.
    again = bob.json("sync", "--json")
    assert again["files_ingested"] == 0
    assert again["events_ingested"] == 0

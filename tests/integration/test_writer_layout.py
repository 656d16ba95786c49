"""A room written by join/send/edit/react/redact verifies, chains and is laid out exactly as
PROTOCOL.md §1-4 say, checked by an independent verifier written here from the spec
(hashlib, json and PyNaCl directly; nothing of the package)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import pytest
from test_sync_support import BASE_MS, bucketchat, error_lines, query, seed_of

from bucketchat.compose import (
    edit_content,
    message_content,
    reaction_content,
    redaction_content,
)
from bucketchat.protocol.signing import SigningKey
from bucketchat.session import Session, sync_bucket
from bucketchat.storage import LocalBucket

ALICE, BOB = "alice@example.com", "bob@example.com"

# ---------------------------------------------------------------- the independent verifier

NINE = {
    "event_id": (str,),
    "room_id": (str,),
    "timestamp_ms": (int,),
    "sender_id": (str,),
    "type": (str,),
    "parent_event_id": (str, type(None)),
    "prev_event_hash": (str, type(None)),
    "signature": (str,),
    "content": (dict,),
}
FILE_NAME = re.compile(r"messages_([0-9]+)_([0-9]+)_([A-Za-z0-9_]{1,64})\.jsonl")
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@dataclass
class Verified:
    event: dict[str, Any]
    line: bytes
    file: str
    key: str
    hash: str


def _no_float(text: str) -> Any:
    raise AssertionError(f"a writer wrote a non-integer number {text}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys {keys}"
    return dict(pairs)


def spec_signing_bytes(event: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in event.items() if k != "signature"}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def spec_hash(event: dict[str, Any]) -> str:
    return base64.b64encode(hashlib.sha256(spec_signing_bytes(event)).digest()).decode()


def spec_client_id(sender: str, public_key: str) -> str:
    local = sender.split("@", 1)[0] if "@" in sender else sender
    local = re.sub(r"[^A-Za-z0-9_]", "_", local)[:48]
    return f"{local}_{hashlib.sha256(base64.b64decode(public_key)).hexdigest()[:6]}"


def _utc_day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def _signer(event: dict[str, Any], keys: list[str]) -> str | None:
    signature = base64.b64decode(event["signature"], validate=True)
    assert len(signature) == 64
    assert base64.b64encode(signature).decode() == event["signature"]  # canonical, padded
    message = spec_signing_bytes(event)
    for key in keys:
        try:
            nacl.signing.VerifyKey(base64.b64decode(key)).verify(message, signature)
        except nacl.exceptions.BadSignatureError:
            continue
        return key
    return None


def verify_room(
    root: Path, room: str, keys: dict[str, list[str]], *, clash_suffix_ok: bool = False
) -> list[Verified]:
    """Every log file of ``room``: layout, lines, signatures, then every device's chain."""
    logs = root / "rooms" / room / "logs"
    verified: list[Verified] = []
    for day_folder in sorted(logs.iterdir()):
        assert day_folder.is_dir() and DAY.fullmatch(day_folder.name), day_folder
        for path in sorted(day_folder.iterdir()):
            match = FILE_NAME.fullmatch(path.name)
            assert match, path.name
            data = path.read_bytes()
            assert data.endswith(b"\n"), f"{path.name} does not end with a newline"
            assert not data.startswith(b"\xef\xbb\xbf")
            in_file = []
            for raw in data[:-1].split(b"\n"):
                assert raw.strip() and not raw.endswith(b"\r")
                event = json.loads(
                    raw.decode("utf-8"),
                    parse_float=_no_float,
                    parse_constant=_no_float,
                    object_pairs_hook=_no_duplicates,
                )
                assert set(event) == set(NINE), sorted(event)
                for name, types in NINE.items():
                    assert isinstance(event[name], types) and not isinstance(event[name], bool)
                parts = event["event_id"].split("::")
                assert len(parts) == 3 and parts[0] == room == event["room_id"]
                assert re.fullmatch(r"[0-9]{8}T[0-9]{6}\.[0-9]{3}Z", parts[1])
                assert (
                    datetime.strptime(parts[1], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC).timestamp()
                    * 1000
                    == event["timestamp_ms"]
                )
                assert UUID4.fullmatch(parts[2]), parts[2]
                signer = _signer(event, keys[event["sender_id"]])
                assert signer is not None, f"{event['event_id']} does not verify"
                relative = path.relative_to(root).as_posix()
                in_file.append(Verified(event, raw, relative, signer, spec_hash(event)))
            stamps = [item.event["timestamp_ms"] for item in in_file]
            assert (int(match[1]), int(match[2])) == (min(stamps), max(stamps)), path.name
            assert day_folder.name == _utc_day(min(stamps))
            devices = {(item.event["sender_id"], item.key) for item in in_file}
            assert len(devices) == 1, "one file holds one device's events"
            ((sender, key),) = devices
            expected_client = spec_client_id(sender, key)
            if clash_suffix_ok and match[3] != expected_client:
                assert match[3].startswith(expected_client + "_")
            else:
                assert match[3] == expected_client
            verified += in_file
    check_chains(verified)
    return verified


def check_chains(verified: list[Verified]) -> dict[tuple[str, str], list[Verified]]:
    """One chain per (sender, key): one first event, no fork, no gap, time never back."""
    chains: dict[tuple[str, str], list[Verified]] = defaultdict(list)
    for item in verified:
        chains[(item.event["sender_id"], item.key)].append(item)
    ordered = {}
    for device, items in chains.items():
        firsts = [i for i in items if i.event["prev_event_hash"] is None]
        assert len(firsts) == 1, f"{device[0]} has {len(firsts)} first events"
        successors = Counter(i.event["prev_event_hash"] for i in items)
        assert max(successors.values()) == 1, f"{device[0]}'s chain forks"
        after = {i.event["prev_event_hash"]: i for i in items if i.event["prev_event_hash"]}
        walk = [firsts[0]]
        while walk[-1].hash in after:
            walk.append(after[walk[-1].hash])
        assert len(walk) == len(items), f"{device[0]}'s chain has a gap"
        stamps = [i.event["timestamp_ms"] for i in walk]
        assert stamps == sorted(stamps)
        ordered[device] = walk
    return ordered


# ---------------------------------------------------------------- rooms written by Client


def client(root: Path, cache: Path, user: str, clock: Any = None) -> Session:
    kwargs = {"clock": clock} if clock else {}
    return Session(LocalBucket(root), cache, user=user, key=SigningKey(seed_of(user)), **kwargs)


@pytest.mark.slow
def test_a_room_written_by_the_client_verifies_chains_and_is_laid_out_as_specified(
    tmp_path: Path,
):
    root = tmp_path / "bucket"
    ticks = itertools.count(BASE_MS + 86_400_000 - 3_000, 1_000)  # crosses midnight UTC
    clock = lambda: next(ticks)  # noqa: E731
    alice = client(root, tmp_path / "alice.duckdb", ALICE, clock)
    bob = client(root, tmp_path / "bob.duckdb", BOB, clock)

    assert alice.create_room("garden", name="Garden", topic="plants")
    bob.join("garden")
    hello = alice.write("garden", "m.room.message", message_content("héllo 👋 <b>&</b>"))
    reply = bob.write("garden", "m.room.message", message_content("hi!"), hello.event_id)
    edit = alice.write("garden", "m.room.edit", edit_content(hello.event_id, "hello, edited"))
    react = bob.write("garden", "m.room.reaction", reaction_content(hello.event_id, "👍"))
    oops = alice.write("garden", "m.room.message", message_content("oops"))
    redact = alice.write("garden", "m.room.redaction", redaction_content(oops.event_id, "typo"))
    leave = bob.write("garden", "m.room.member", {"membership": "leave"})

    keys = {ALICE: [alice.key.public_key], BOB: [bob.key.public_key]}  # type: ignore[union-attr]
    verified = verify_room(root, "garden", keys)
    by_id = {item.event["event_id"]: item for item in verified}
    written = [hello, reply, edit, react, oops, redact, leave]
    assert {c.event_id for c in written} <= set(by_id)
    assert len(verified) == len(written) + 2  # and the two joins
    for composed in written:  # the file holds the very line the writer signed
        assert by_id[composed.event_id].line == composed.line.encode("utf-8")
        assert by_id[composed.event_id].hash == composed.event_hash
    assert by_id[reply.event_id].event["parent_event_id"] == hello.event_id
    assert by_id[redact.event_id].event["content"] == {"redacts": oops.event_id, "reason": "typo"}
    assert by_id[hello.event_id].event["content"]["body"] == "héllo 👋 <b>&</b>"
    days = {Path(item.file).parts[3] for item in verified}
    assert len(days) == 2  # files on both sides of midnight, each in its own UTC day

    joins = [i.event for i in verified if i.event["type"] == "m.room.member"]
    assert [(j["sender_id"], j["content"].get("public_key")) for j in joins] == [
        (ALICE, alice.key.public_key),  # type: ignore[union-attr]
        (BOB, bob.key.public_key),  # type: ignore[union-attr]
        (BOB, None),
    ]
    chains = check_chains(verified)
    first_of = {device[0]: walk[0].event for device, walk in chains.items()}
    assert first_of[ALICE]["type"] == first_of[BOB]["type"] == "m.room.member"

    metadata = json.loads((root / "rooms" / "garden" / "metadata.json").read_text())
    assert metadata["room_id"] == "garden"
    assert metadata["version"] == "1.0"
    assert metadata["protocol"] == "bucket-chat-v1"
    assert (metadata["name"], metadata["topic"]) == ("Garden", "plants")

    reader = tmp_path / "reader.duckdb"
    report = sync_bucket(LocalBucket(root), reader)
    assert report.events_ingested == len(verified)
    assert query(reader, "SELECT DISTINCT trust FROM events") == [("tofu",)]
    assert query(reader, "SELECT kind FROM findings") == []


@pytest.mark.slow
def test_a_reinstall_continues_the_chain(tmp_path: Path):
    root = tmp_path / "bucket"
    first = client(root, tmp_path / "before.duckdb", ALICE)
    first.join("porch")
    for text in ("one", "two"):
        first.write("porch", "m.room.message", message_content(text))

    again = client(root, tmp_path / "after-reinstall.duckdb", ALICE)  # same key, no cache
    third = again.write("porch", "m.room.message", message_content("three"))
    again.write("porch", "m.room.message", message_content("four"))

    verified = verify_room(root, "porch", {ALICE: [first.key.public_key]})  # type: ignore[union-attr]
    (walk,) = check_chains(verified).values()
    bodies = [item.event["content"].get("body") for item in walk]
    assert bodies == [None, "one", "two", "three", "four"]
    assert sum(1 for item in walk if item.event["type"] == "m.room.member") == 1
    third_event = next(i for i in walk if i.event["event_id"] == third.event_id)
    assert third_event.event["prev_event_hash"] == walk[2].hash


def test_an_older_install_of_the_same_key_continues_after_the_newer_one(tmp_path: Path):
    root = tmp_path / "bucket"
    old = client(root, tmp_path / "old.duckdb", ALICE)
    old.join("porch")
    old.write("porch", "m.room.message", message_content("one"))
    new = client(root, tmp_path / "new.duckdb", ALICE)  # e.g. the key imported elsewhere
    new.write("porch", "m.room.message", message_content("two"))
    client(root, tmp_path / "old.duckdb", ALICE).write(
        "porch", "m.room.message", message_content("three")
    )
    verified = verify_room(root, "porch", {ALICE: [old.key.public_key]})  # type: ignore[union-attr]
    (walk,) = check_chains(verified).values()
    assert [i.event["content"].get("body") for i in walk] == [None, "one", "two", "three"]


# ---------------------------------------------------------------- the same through the CLI


@pytest.mark.slow
def test_a_room_written_through_the_cli_verifies_and_chains(tmp_path: Path):
    root, db = tmp_path / "bucket", tmp_path / "cli.duckdb"
    common = ["--bucket", str(root), "--db", str(db)]
    assert bucketchat("keys", "init", "--user", ALICE).code == 0
    shown = bucketchat("keys", "show", "--json")
    assert shown.code == 0, shown.err
    public_key = json.loads(shown.out)["public_key"]

    def run(*args: str) -> str:
        ran = bucketchat(*args, *common)
        assert ran.code == 0, (args, ran.err)
        assert len(error_lines(ran.err)) <= 1  # at most a notice, never a traceback
        return ran.out.strip()

    assert run("room", "create", "den", "--name", "Den") == "den"
    hello = run("send", "den", "hello from the cli")
    reply = run("send", "den", "a reply", "--reply-to", hello)
    edit = run("edit", hello, "hello, edited")
    react = run("react", hello, "🎉")
    redact = run("redact", reply, "--reason", "never mind")
    leave = run("leave", "den")
    ids = [hello, reply, edit, react, redact, leave]
    assert all(re.fullmatch(r"den::[0-9T.]+Z::[0-9a-f-]{36}", i) for i in ids), ids

    verified = verify_room(root, "den", {ALICE: [public_key]})
    by_id = {item.event["event_id"]: item.event for item in verified}
    assert set(ids) <= set(by_id)
    assert len(verified) == len(ids) + 1  # the join of room create
    assert by_id[reply]["parent_event_id"] == hello
    assert by_id[edit]["content"]["replaces"] == hello
    assert by_id[react]["content"] == {"relates_to": hello, "reaction": "🎉"}
    assert by_id[redact]["content"]["redacts"] == reply
    assert by_id[leave]["content"]["membership"] == "leave"
    assert query(db, "SELECT count(*) FROM outbox WHERE uploaded_at IS NULL") == [(0,)]

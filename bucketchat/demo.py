"""The demo bucket: three senders, three rooms, threads, edits, reactions, a redaction and
one tampered file, all written through the real writer (compose → outbox → push).

Identities are throwaway keys kept in a plaintext key file beside the bucket, never in
the user's keyring, so the demo needs no prompt, no network and no login.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from bucketchat.cache import open_cache
from bucketchat.compose import (
    compose,
    edit_content,
    join_content,
    message_content,
    reaction_content,
    redaction_content,
)
from bucketchat.errors import UsageError
from bucketchat.keystore import FileKeystore
from bucketchat.protocol.signing import SigningKey
from bucketchat.session import sync_bucket
from bucketchat.storage import LocalBucket
from bucketchat.sync.push import push
from bucketchat.sync.report import SyncReport
from bucketchat.timeutil import now_ms

MARKER = "bucketchat-demo.json"
PEOPLE = {
    "alice@example.com": "Alice",
    "bob@example.com": "Bob",
    "carol@example.com": "Carol",
}
ROOMS = {
    "general": ("General", "Everything and nothing"),
    "design": ("Design", "How bucketchat should look and feel"),
    "random": ("Random", "Off topic"),
}
TAMPERED_ROOM = "random"
ORIGINAL_TEXT = "I owe Alice 10 coins for lunch"
FORGED_TEXT = "I owe Alice 1000 coins for lunch"


@dataclass
class DemoResult:
    directory: Path
    bucket: Path
    cache: Path
    rooms: list[str]
    events_written: int
    tampered_file: str
    report: SyncReport


class _Writer:
    """Composes events of the three demo people into one outbox, on a simulated clock."""

    def __init__(self, cache_path: Path, keys: dict[str, SigningKey], start_ms: int) -> None:
        self.cache_path = cache_path
        self.keys = keys
        self.clock_ms = start_ms
        self.count = 0

    def tick(self, minutes: float) -> None:
        self.clock_ms += int(minutes * 60_000)

    def __call__(
        self,
        sender: str,
        room: str,
        event_type: str,
        content: dict[str, object],
        parent: str | None = None,
        minutes: float = 3,
    ) -> str:
        self.tick(minutes)
        with open_cache(self.cache_path) as cache:
            composed = compose(
                cache,
                self.keys[sender],
                sender,
                room,
                event_type,
                dict(content),
                parent,
                clock=lambda: self.clock_ms,
            )
        self.count += 1
        return composed.event_id


def build_demo(directory: Path, force: bool = False) -> DemoResult:
    directory = directory.expanduser().resolve()
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise UsageError(f"{directory} exists and is not a bucketchat demo: pick another --dir")
        if not force:
            raise UsageError(f"{directory} already holds a demo: pass --force to make it anew")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text(json.dumps({"made_by": "bucketchat demo"}) + "\n")
    bucket_dir = directory / "bucket"
    bucket = LocalBucket(bucket_dir)
    bucket_dir.mkdir()
    store = FileKeystore(directory / "identities.json", None)
    keys = {}
    for person in PEOPLE:
        keys[person] = SigningKey.generate()
        store.set_seed(person, keys[person].seed)
    writer_cache = directory / "outbox.duckdb"
    start = (now_ms() // 86_400_000 - 3) * 86_400_000 + 9 * 3_600_000  # 09:00 UTC, 3 days ago
    say = _Writer(writer_cache, keys, start)
    _introduce(bucket, say, keys)
    _general(say)
    push(bucket, writer_cache)
    say.tick(60 * 20)  # the next morning
    _design(say)
    push(bucket, writer_cache)
    say.tick(60 * 20)
    _random(say)
    push(bucket, writer_cache)

    tampered = _tamper(bucket_dir, TAMPERED_ROOM)
    writer_cache.unlink()
    cache_path = directory / "cache.duckdb"
    report = sync_bucket(bucket, cache_path, upload_outbox=False)
    return DemoResult(directory, bucket_dir, cache_path, list(ROOMS), say.count, tampered, report)


def _introduce(bucket: LocalBucket, say: _Writer, keys: dict[str, SigningKey]) -> None:
    """Every room's metadata, and every person joining it with their key."""
    for room, (name, topic) in ROOMS.items():
        metadata = {
            "room_id": room,
            "created_at": "2026-01-01T00:00:00Z",
            "version": "1.0",
            "protocol": "bucket-chat-v1",
            "name": name,
            "topic": topic,
        }
        bucket.create(f"rooms/{room}/metadata.json", json.dumps(metadata, indent=2).encode())
        for person, displayname in PEOPLE.items():
            say(person, room, "m.room.member", join_content(keys[person], displayname), minutes=1)


def _general(say: _Writer) -> None:
    """A welcome with reactions, a thread of three, an edited typo."""
    alice, bob, carol = PEOPLE
    hello = say(
        alice,
        "general",
        "m.room.message",
        message_content(
            "Welcome to bucketchat! Everything here lives in a bucket as signed JSONL."
        ),
    )
    say(bob, "general", "m.room.reaction", reaction_content(hello, "👋"))
    say(carol, "general", "m.room.reaction", reaction_content(hello, "👋"))
    question = say(
        bob,
        "general",
        "m.room.message",
        message_content("How do we know nobody rewrote the history?"),
        minutes=12,
    )
    answer = say(
        alice,
        "general",
        "m.room.message",
        message_content(
            "Every event is signed with Ed25519 and chained to the sender's previous one."
        ),
        parent=question,
    )
    say(
        carol,
        "general",
        "m.room.message",
        message_content("And `bucketchat audit` reports gaps, forks and tampering."),
        parent=answer,
    )
    say(bob, "general", "m.room.reaction", reaction_content(answer, "👍"))
    typo = say(
        carol,
        "general",
        "m.room.message",
        message_content("Lunch at noon? I'll bring the cofee."),
        minutes=95,
    )
    say(
        carol, "general", "m.room.edit", edit_content(typo, "Lunch at noon? I'll bring the coffee.")
    )
    say(alice, "general", "m.room.reaction", reaction_content(typo, "☕"))


def _design(say: _Writer) -> None:
    """A thread about the design, a redacted mistake, text to search in several scripts."""
    alice, bob, carol = PEOPLE
    mockup = say(
        carol,
        "design",
        "m.room.message",
        message_content("New timeline mock-up: day separators, sender colours, trust badges."),
    )
    say(
        alice,
        "design",
        "m.room.message",
        message_content("Love it. Can edited messages show a small mark?"),
        parent=mockup,
    )
    say(
        carol,
        "design",
        "m.room.message",
        message_content("Yes: (edited), and redacted ones keep their place with no text."),
        parent=mockup,
    )
    oops = say(
        bob,
        "design",
        "m.room.message",
        message_content("my password is hunter2 (wrong window!)"),
        minutes=7,
    )
    say(bob, "design", "m.room.redaction", redaction_content(oops, "posted by mistake"), minutes=1)
    say(alice, "design", "m.room.reaction", reaction_content(mockup, "🎨"))
    say(
        bob,
        "design",
        "m.room.message",
        message_content("Search should find «café» when I type cafe, and Ελληνικά and 日本語 too."),
        minutes=30,
    )


def _random(say: _Writer) -> None:
    """Small talk, and the line that is tampered with afterwards."""
    alice, bob, carol = PEOPLE
    say(alice, "random", "m.room.message", message_content("Anyone up for a walk later?"))
    say(bob, "random", "m.room.message", message_content(ORIGINAL_TEXT), minutes=5)
    say(carol, "random", "m.room.message", message_content("Count me in for the walk."))


def _tamper(bucket_dir: Path, room: str) -> str:
    """Change one signed line after the fact, as an attacker with bucket access would."""
    for path in sorted((bucket_dir / "rooms" / room / "logs").rglob("*.jsonl")):
        text = path.read_text("utf-8")
        if ORIGINAL_TEXT in text:
            path.write_text(text.replace(ORIGINAL_TEXT, FORGED_TEXT), "utf-8")
            return path.relative_to(bucket_dir).as_posix()
    raise RuntimeError("the demo lost the line it meant to tamper with")

"""Write a large, realistic, fully signed bucket for benchmarks.

    python benchmarks/generate_bucket.py --events 1000000 --files 2000 --out /tmp/bench-bucket

Rooms x senders chains, each signed by its own Ed25519 key and hash-chained (§4, §7);
every sender joins every room first (publishing its key, so a reader trusts it on first
use), then posts messages, threaded replies, edits and redactions of its own messages,
and reactions. Everything is a pure function of (room, slot) so worker processes can
generate chains independently yet point at each other's events: slot k of a room belongs
to sender k % senders, happens at a fixed time, and has a fixed event id and type.

The vocabulary is Zipf-like, with the rare word "zyzzyva" in about 1 message in 10,000
and the common word "deploy" in about 1 in 12, for search benchmarks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bucketchat.protocol.canonical import event_hash, signing_bytes
from bucketchat.protocol.naming import (
    client_id_for,
    event_time,
    log_file_path,
)
from bucketchat.protocol.signing import SigningKey, fingerprint

START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
STEP_MS = 30_000  # one slot of a room every 30 s
_WORDS_TEXT = (
    "the a to and of is in it you that we for on this be with are have not but deploy "
    "meeting lunch today tomorrow release build test review please thanks ok sure yes no "
    "looks good ship merge branch bug fix issue ticket coffee later morning afternoon "
    "cache bucket sync search index query parquet thread reply edit reaction room key "
    "café naïve résumé Привет мир καλημέρα 東京 会議 데이터 schema latency budget "
    "customer invoice budget roadmap incident postmortem oncall pager alert dashboard"
)
WORDS = _WORDS_TEXT.split()
RARE = "zyzzyva"


def slot_type(room: int, slot: int, senders: int) -> str:
    """The event type of a slot: a pure function so every worker agrees."""
    if slot < senders:
        return "m.room.member"
    roll = (slot * 2654435761 + room * 40503) % 1000
    if roll < 700:
        return "m.room.message"
    if roll < 850:
        return "reply"
    if roll < 920:
        return "m.room.reaction"
    if roll < 970:
        return "m.room.edit"
    return "m.room.redaction"


def slot_time(room: int, slot: int) -> int:
    return START_MS + slot * STEP_MS + room  # unique per room, increasing per slot


def slot_id(room_id: str, room: int, slot: int) -> str:
    unique = uuid.UUID(bytes=hashlib.md5(f"{room}:{slot}".encode()).digest(), version=4)
    return f"{room_id}::{event_time(slot_time(room, slot))}::{unique}"


def room_name(room: int) -> str:
    return f"room-{room:03d}"


def sender_name(sender: int) -> str:
    return f"user{sender:04d}@example.com"


def sender_key(sender: int, seed: int) -> SigningKey:
    return SigningKey(hashlib.sha256(f"bench:{seed}:{sender}".encode()).digest())


def _earlier_message(room: int, slot: int, senders: int, rng: random.Random,
                     same_sender: bool) -> int | None:
    """An earlier slot holding a message (optionally of the same sender), or None."""
    for _ in range(8):
        own = rng.randint(1, 20) * senders  # a multiple of senders: the same sender's slot
        back = own if same_sender else int(rng.expovariate(1 / 40)) + 1
        candidate = slot - back
        if candidate < senders:
            return None
        if slot_type(room, candidate, senders) in ("m.room.message", "reply"):
            return candidate
    return None


def _body(rng: random.Random) -> str:
    count = rng.randint(3, 18)
    words = [WORDS[min(int(rng.paretovariate(1.2)) - 1, len(WORDS) - 1)] for _ in range(count)]
    if rng.random() < 0.08:
        words.insert(rng.randrange(len(words) + 1), "deploy")
    if rng.random() < 0.0001:
        words.insert(rng.randrange(len(words) + 1), RARE)
    return " ".join(words)


def chain(task: tuple[int, int, int, int, int, int, str]) -> tuple[int, int]:
    """Generate and write the events of one (room, sender) chain; (events, files)."""
    room, sender, rooms_total, senders, slots, files_per_chain, out = task
    del rooms_total
    seed = int.from_bytes(hashlib.sha256(f"{room}:{sender}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    key = sender_key(sender, 0)
    public_key = key.public_key
    sender_id = sender_name(sender)
    room_id = room_name(room)
    client = client_id_for(sender_id, fingerprint(public_key))
    prev: str | None = None
    events: list[dict[str, Any]] = []
    for slot in range(sender, slots, senders):
        kind = slot_type(room, slot, senders)
        parent = None
        content: dict[str, Any]
        event_type = kind
        if kind == "m.room.member":
            content = {"membership": "join", "public_key": public_key,
                       "displayname": f"User {sender}"}
        elif kind == "m.room.message":
            content = {"body": _body(rng), "msgtype": "m.text"}
        elif kind == "reply":
            event_type = "m.room.message"
            target = _earlier_message(room, slot, senders, rng, same_sender=False)
            parent = slot_id(room_id, room, target) if target is not None else None
            content = {"body": _body(rng), "msgtype": "m.text"}
        elif kind == "m.room.reaction":
            target = _earlier_message(room, slot, senders, rng, same_sender=False)
            if target is None:
                event_type = "m.room.message"
                content = {"body": _body(rng), "msgtype": "m.text"}
            else:
                content = {"relates_to": slot_id(room_id, room, target),
                           "reaction": rng.choice(["👍", "🎉", "❤️", "😂", "👀"])}
        else:
            target = _earlier_message(room, slot, senders, rng, same_sender=True)
            if target is None:
                event_type = "m.room.message"
                content = {"body": _body(rng), "msgtype": "m.text"}
            elif kind == "m.room.edit":
                content = {"replaces": slot_id(room_id, room, target),
                           "new_content": {"body": _body(rng), "msgtype": "m.text"}}
            else:
                content = {"redacts": slot_id(room_id, room, target)}
        event = {
            "event_id": slot_id(room_id, room, slot),
            "room_id": room_id,
            "timestamp_ms": slot_time(room, slot),
            "sender_id": sender_id,
            "type": event_type,
            "parent_event_id": parent,
            "prev_event_hash": prev,
            "content": content,
        }
        event["signature"] = key.sign(signing_bytes(event))
        prev = event_hash(event)
        events.append(event)
    if not events:
        return 0, 0
    per_file = math.ceil(len(events) / max(1, files_per_chain))
    root = Path(out)
    written = 0
    for start in range(0, len(events), per_file):
        chunk = events[start : start + per_file]
        path = root / log_file_path(
            room_id, chunk[0]["timestamp_ms"], chunk[-1]["timestamp_ms"], client
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(e) + "\n" for e in chunk), encoding="utf-8")
        written += 1
    return len(events), written


def generate(events: int, files: int, out: Path, rooms: int, senders: int,
             workers: int) -> tuple[int, int]:
    slots = math.ceil(events / rooms)
    chains = rooms * senders
    files_per_chain = max(1, round(files / chains))
    for room in range(rooms):
        meta = out / "rooms" / room_name(room) / "metadata.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({
            "room_id": room_name(room), "created_at": "2025-01-01T00:00:00Z", "version": "1.0",
            "protocol": "bucket-chat-v1", "name": f"Room {room}",
        }))
    tasks = [
        (room, sender, rooms, senders, slots, files_per_chain, str(out))
        for room in range(rooms)
        for sender in range(senders)
    ]
    total_events = total_files = 0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for made, written in pool.map(chain, tasks, chunksize=4):
            total_events += made
            total_files += written
    return total_events, total_files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in total")
    parser.add_argument("--files", type=int, default=2_000, help="log files in total (about)")
    parser.add_argument("--out", type=Path, required=True, help="the bucket folder to create")
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--senders", type=int, default=50, help="senders (each in every room)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} exists and is not empty")
    started = time.perf_counter()
    made, written = generate(args.events, args.files, args.out, args.rooms, args.senders,
                             args.workers)
    seconds = time.perf_counter() - started
    print(json.dumps({"events": made, "files": written, "rooms": args.rooms,
                      "senders": args.senders, "seconds": round(seconds, 1),
                      "out": str(args.out)}))


if __name__ == "__main__":
    main()

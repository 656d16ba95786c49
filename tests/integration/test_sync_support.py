"""Helpers shared by the sync and writer tests (this module holds no tests itself).

Everything here is written from PROTOCOL.md, not by calling the package: events are
signed with PyNaCl over ``json.dumps(sort_keys, separators, ensure_ascii)`` bytes, files
are named and placed as §1 says, and the cache is inspected with plain DuckDB queries over
its documented views (``events``, ``findings``, ``files``, ``rejected_lines``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import nacl.signing

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
KEYS: dict[str, dict[str, str]] = json.loads((FIXTURES / "keys.json").read_text())
ALICE, BOB, MALLORY = "alice@example.com", "bob@example.com", "mallory@example.com"
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PROJECT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ §4, independently


def signing_bytes(event: dict[str, Any]) -> bytes:
    body = {k: v for k, v in event.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii"
    )


def event_hash(event: dict[str, Any]) -> str:
    return base64.b64encode(hashlib.sha256(signing_bytes(event)).digest()).decode("ascii")


def seed_of(sender: str) -> bytes:
    return bytes.fromhex(KEYS[sender]["seed_hex"])


def public_of(sender: str) -> str:
    return KEYS[sender]["public_key"]


def nacl_key(seed: bytes) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(seed)


def public_b64(seed: bytes) -> str:
    return base64.b64encode(bytes(nacl_key(seed).verify_key)).decode("ascii")


def sign(event: dict[str, Any], seed: bytes) -> dict[str, Any]:
    signature = nacl_key(seed).sign(signing_bytes(event)).signature
    return {**event, "signature": base64.b64encode(signature).decode("ascii")}


def utc_day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def event_time(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y%m%dT%H%M%S.") + f"{ms % 1000:03d}Z"


def client_id(sender: str, public_key: str) -> str:
    local = sender.split("@", 1)[0]
    local = "".join(c if (c.isascii() and (c.isalnum() or c == "_")) else "_" for c in local)
    digest = hashlib.sha256(base64.b64decode(public_key)).hexdigest()
    return f"{local[:48]}_{digest[:6]}"


def log_key(room: str, start: int, end: int, client: str) -> str:
    return f"rooms/{room}/logs/{utc_day(start)}/messages_{start}_{end}_{client}.jsonl"


def line_of(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False)


# ------------------------------------------------------------------ writing buckets


@dataclass
class Author:
    """One device of one sender: signs and chains its events per room (§3, §4, §7)."""

    sender: str
    seed: bytes
    chained: bool = True
    heads: dict[str, str | None] = field(default_factory=dict)
    counter: int = 0

    @classmethod
    def of(cls, sender: str, chained: bool = True) -> Author:
        return cls(sender, seed_of(sender), chained)

    @property
    def public_key(self) -> str:
        return public_b64(self.seed)

    @property
    def client_id(self) -> str:
        return client_id(self.sender, self.public_key)

    def event(
        self,
        room: str,
        at: int,
        event_type: str = "m.room.message",
        content: dict[str, Any] | None = None,
        *,
        parent: str | None = None,
        event_id: str | None = None,
        room_id: str | None = None,
        prev: str | bool | None = True,
    ) -> dict[str, Any]:
        self.counter += 1
        if content is None:
            content = {"body": f"{self.sender} says {self.counter}", "msgtype": "m.text"}
        if prev is True:
            prev_hash = self.heads.get(room) if self.chained else None
        else:
            prev_hash = prev or None
        unsigned = {
            "event_id": event_id or f"{room}::{event_time(at)}::{uuid.uuid4()}",
            "room_id": room_id or room,
            "timestamp_ms": at,
            "sender_id": self.sender,
            "type": event_type,
            "parent_event_id": parent,
            "prev_event_hash": prev_hash,
            "content": content,
        }
        signed = sign(unsigned, self.seed)
        if self.chained:
            self.heads[room] = event_hash(signed)
        return signed

    def join(self, room: str, at: int, publish: bool = True) -> dict[str, Any]:
        content: dict[str, Any] = {"membership": "join", "displayname": self.sender}
        if publish:
            content["public_key"] = self.public_key
        return self.event(room, at, "m.room.member", content)

    def message(self, room: str, at: int, body: str, **kw: Any) -> dict[str, Any]:
        return self.event(room, at, "m.room.message", {"body": body, "msgtype": "m.text"}, **kw)


def write_events(
    root: Path,
    room: str,
    events: list[dict[str, Any]],
    client: str,
    *,
    name: str | None = None,
    extra_lines: list[tuple[int, bytes]] | None = None,
    mtime: float | None = None,
) -> Path:
    """Write one log file named from its events' bounds (§1); ``extra_lines`` are raw bytes
    inserted at the given positions (for malformed lines)."""
    stamps = [e["timestamp_ms"] for e in events] or [BASE_MS]
    key = name or log_key(room, min(stamps), max(stamps), client)
    lines = [line_of(e).encode("utf-8") for e in events]
    for position, raw in sorted(extra_lines or [], key=lambda item: item[0]):
        lines.insert(position, raw)
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise FileExistsError(key)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    if mtime is None:
        mtime = time.time() - 60  # an old, finished file (not "in progress", §1)
    os.utime(path, (mtime, mtime))
    return path


def generated_bucket(
    root: Path,
    *,
    files: int = 300,
    events_per_file: int = 20,
    rooms: tuple[str, ...] = ("alpha", "beta", "gamma"),
    seed: int = 7,
    body_bytes: int = 300,
) -> list[Path]:
    """A bucket of ``files`` files of chained events by alice, bob and mallory (keys.json),
    each sender publishing its key in each room first."""
    rng = random.Random(seed)
    authors = [Author.of(ALICE), Author.of(BOB), Author.of(MALLORY)]
    clock = BASE_MS
    written = []
    joined: set[tuple[str, str]] = set()
    for index in range(files):
        author = authors[index % len(authors)]
        room = rooms[(index // len(authors)) % len(rooms)]
        batch = []
        for _ in range(events_per_file):
            clock += rng.randint(1, 2_000)
            if (author.sender, room) not in joined:
                joined.add((author.sender, room))
                batch.append(author.join(room, clock))
                continue
            filler = "".join(rng.choice("abcdefghij klmnop") for _ in range(body_bytes))
            batch.append(author.message(room, clock, f"{index}: {filler}"))
        written.append(write_events(root, room, batch, author.client_id))
    return written


# ------------------------------------------------------------------ reading the cache


def connect(cache: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(
        str(cache),
        read_only=True,
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "extension_directory": str(cache.parent / ".duckdb-extensions"),
        },
    )


def query(cache: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = connect(cache)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def events_set(cache: Path) -> set[tuple[str, str, str, str]]:
    rows = query(cache, "SELECT event_hash, signature, event_id, room_id FROM events")
    result = set(rows)
    assert len(result) == len(rows), "an event is stored twice"
    return result  # type: ignore[return-value]


def trust_map(cache: Path) -> dict[tuple[str, str], str]:
    rows = query(cache, "SELECT event_hash, signature, trust FROM events")
    return {(h, s): t for h, s, t in rows}


def findings_list(cache: Path, *, with_location: bool = True) -> list[tuple[Any, ...]]:
    columns = "kind, severity, room_id, sender_id, event_id, reason"
    if with_location:
        columns += ", file, line"
    rows = query(cache, f"SELECT {columns} FROM findings")  # noqa: S608 - fixed columns
    return sorted(rows, key=repr)


# ------------------------------------------------------------------ running bucketchat


@dataclass
class Ran:
    code: int
    out: str
    err: str


def bucketchat(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Ran:
    """``python -m bucketchat ARGS`` in a subprocess with the test's environment."""
    done = subprocess.run(
        [sys.executable, "-m", "bucketchat", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        cwd=PROJECT,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def error_lines(text: str) -> list[str]:
    """The non-empty stderr lines, minus the keystore's one-time notice."""
    return [
        line
        for line in text.splitlines()
        if line.strip() and not line.startswith("bucketchat: keys are kept in")
    ]

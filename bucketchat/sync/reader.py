"""Reading one log file: split, parse, check the room, hash and verify every line.

This is the CPU-heavy step of a sync (Ed25519 verification is ~55 µs an event, everything
else a few), so it runs in worker processes over whole files and returns plain columns
that the main process bulk-inserts. Verification here is a crypto fact only — which of
the sender's candidate keys verifies the line; whether that key is trusted is decided
later from the room's key events (PROTOCOL.md §5), in timeline order.
"""

from __future__ import annotations

import gc
import itertools
import os
from binascii import b2a_base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

import orjson
import pyarrow as pa

from bucketchat.protocol.canonical import signing_bytes
from bucketchat.protocol.lines import (
    ParsedEvent,
    Rejection,
    kept_text,
    parse_line,
    split_lines,
)
from bucketchat.protocol.models import content_problem
from bucketchat.protocol.naming import event_id_room
from bucketchat.protocol.signing import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    public_key_problem,
    strict_b64decode,
    verify_raw,
)

EVENT_COLUMNS = (
    "event_hash",
    "signature",
    "event_id",
    "room_id",
    "timestamp_ms",
    "sender_id",
    "type",
    "parent_event_id",
    "prev_event_hash",
    "content",
    "raw",
    "line",
    "signer_key",
    "content_problem",
    "body",
    "msgtype",
    "relates_to",
    "reaction_key",
    "membership",
    "public_key",
    "keys_tried",
)

SIGNER_INDEX = EVENT_COLUMNS.index("signer_key")
SENDER_INDEX = EVENT_COLUMNS.index("sender_id")
SIGNATURE_INDEX = EVENT_COLUMNS.index("signature")
_NUMBER_TYPES = {"timestamp_ms": pa.int64(), "line": pa.int32(), "keys_tried": pa.int32()}
EVENT_TYPES = {name: _NUMBER_TYPES.get(name, pa.string()) for name in EVENT_COLUMNS}

RELATION_FIELD = {
    "m.room.edit": "replaces",
    "m.room.redaction": "redacts",
    "m.room.reaction": "relates_to",
}


@dataclass
class RejectedLine:
    line: int
    reason: str
    detail: str
    raw: str
    event_id: str | None = None
    sender_id: str | None = None


@dataclass
class FileResult:
    """One file's outcome. ``events`` is an Arrow table (cheap to send between processes)."""

    key: str
    size: int
    sha256: str
    ends_with_newline: bool
    events: Any = None  # pyarrow.Table with EVENT_COLUMNS + "file" (from a worker)
    rows: list[list[Any]] | None = None  # or the rows in EVENT_COLUMNS order (read here)
    rejected: list[RejectedLine] = field(default_factory=list)
    lines_start_ts: int | None = None
    lines_end_ts: int | None = None
    error: str | None = None
    published_keys: list[tuple[str, str]] = field(default_factory=list)
    events_file: str | None = None  # the events, spooled by a worker (read_files)

    @property
    def event_count(self) -> int:
        if self.rows is not None:
            return len(self.rows)
        return 0 if self.events is None else int(self.events.num_rows)


#: Public key → its raw bytes, or None when weak: each key's point check (~33 µs) runs once
#: per process, not once per file for every candidate key of the room.
_DECODED_KEYS: dict[str, bytes | None] = {}


def _decoded_key(key: str) -> bytes | None:
    if key not in _DECODED_KEYS:
        if len(_DECODED_KEYS) >= 100_000:
            _DECODED_KEYS.clear()
        usable = public_key_problem(key) is None
        _DECODED_KEYS[key] = strict_b64decode(key, PUBLIC_KEY_BYTES) if usable else None
    return _DECODED_KEYS[key]


class KeyRing:
    """Candidate keys per sender, decoded once, weak ones left out."""

    def __init__(self, candidates: Mapping[str, Sequence[str]]) -> None:
        self._raw: dict[str, bytes] = {}
        self._by_sender: dict[str, list[str]] = {}
        for sender, keys in candidates.items():
            for key in keys:
                self.add(sender, key)

    def add(self, sender: str, key: str) -> None:
        keys = self._by_sender.setdefault(sender, [])
        if key in keys:
            return
        if key not in self._raw:
            raw = _decoded_key(key)
            if raw is None:
                return
            self._raw[key] = raw
        keys.append(key)

    def count(self, sender: str) -> int:
        return len(self._by_sender.get(sender, ()))

    def find_signer(self, sender: str, signature: str, message: bytes) -> str | None:
        keys = self._by_sender.get(sender)
        if not keys:
            return None
        raw_sig = strict_b64decode(signature, SIGNATURE_BYTES)
        if raw_sig is None:
            return None
        for index, key in enumerate(keys):
            if verify_raw(self._raw[key], raw_sig, message):
                if index:  # the key that verified last is the likeliest next time
                    keys.insert(0, keys.pop(index))
                return key
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def derived_fields(event_type: str, content: dict[str, Any]) -> tuple[Any, ...]:
    """(body, msgtype, relates_to, reaction_key, membership, public_key) for the columns."""
    body = msgtype = relates_to = reaction = membership = public_key = None
    if event_type == "m.room.message":
        body, msgtype = _text(content.get("body")), _text(content.get("msgtype"))
    elif event_type == "m.room.edit":
        new = content.get("new_content")
        if isinstance(new, dict):
            body, msgtype = _text(new.get("body")), _text(new.get("msgtype"))
    elif event_type == "m.room.member":
        membership, public_key = _text(content.get("membership")), _text(content.get("public_key"))
    if event_type in RELATION_FIELD:
        relates_to = _text(content.get(RELATION_FIELD[event_type]))
    if event_type == "m.room.reaction":
        reaction = _text(content.get("reaction"))
    return body, msgtype, relates_to, reaction, membership, public_key


def read_file(
    key: str,
    room_id: str,
    data: bytes | None = None,
    path: str | None = None,
    candidates: Mapping[str, Sequence[str]] | None = None,
) -> FileResult:
    """Parse and verify one file's bytes (given, or read from a local ``path``)."""
    if data is None:
        if path is None:
            raise ValueError("read_file needs data or a path")
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            return FileResult(key, 0, "", True, error=f"cannot read {key}: {exc.strerror}")
    result = FileResult(
        key=key,
        size=len(data),
        sha256=sha256(data).hexdigest(),
        ends_with_newline=data.endswith(b"\n"),
    )
    parsed: list[tuple[int, ParsedEvent]] = []
    for number, raw in split_lines(data):
        outcome = parse_line(raw)
        if isinstance(outcome, Rejection):
            result.rejected.append(
                RejectedLine(number, outcome.reason, outcome.detail, outcome.raw_kept)
            )
            continue
        parsed.append((number, outcome))

    ring = KeyRing(candidates or {})
    for _, event in parsed:  # keys published in this file can verify its other lines
        if event.type == "m.room.member" and event.room_id == room_id:
            published = event.content.get("public_key")
            if isinstance(published, str):
                ring.add(event.sender_id, published)
                result.published_keys.append((event.sender_id, published))

    starts = []
    rows: list[list[Any]] = []
    signed: list[tuple[list[Any], bytes]] = []  # each row and its signing bytes
    for number, event in parsed:
        data_ = event.data
        event_room, event_id = data_["room_id"], data_["event_id"]
        starts.append(data_["timestamp_ms"])
        if event_room != room_id or event_id_room(event_id) != event_room:
            result.rejected.append(
                RejectedLine(
                    number,
                    "room_mismatch",
                    f"event of room {event_room!r} (id {event_id!r}) in the folder of {room_id!r}",
                    kept_text(event.raw),
                    event_id,
                    data_["sender_id"],
                )
            )
            continue
        message = signing_bytes(data_)
        sender, event_type, content = data_["sender_id"], data_["type"], data_["content"]
        row = [
            b2a_base64(sha256(message).digest(), newline=False).decode("ascii"),
            data_["signature"],
            event_id,
            event_room,
            data_["timestamp_ms"],
            sender,
            event_type,
            data_["parent_event_id"],
            data_["prev_event_hash"],
            orjson.dumps(content).decode("utf-8"),
            event.raw.decode("utf-8"),
            number,
            None,  # signer_key, found below
            content_problem(event_type, content),
            *derived_fields(event_type, content),
            ring.count(sender),
        ]
        rows.append(row)
        signed.append((row, message))
    # Ed25519 runs in a loop of its own once the lines are parsed: between the parser's
    # steps each check cost ~25% more (~63 µs against ~50), its code and tables pushed out
    # of the CPU's caches by the interpreter's.
    find_signer = ring.find_signer
    for row, message in signed:
        row[SIGNER_INDEX] = find_signer(row[SENDER_INDEX], row[SIGNATURE_INDEX], message)
    if starts:
        result.lines_start_ts, result.lines_end_ts = min(starts), max(starts)
    # Rows stay Python lists here: a batch of small files becomes one Arrow table when it
    # is stored (events_table), where a table per file cost more than reading the file.
    result.rows = rows
    return result


def events_table(files: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> pa.Table:
    """One Arrow table of the rows (in EVENT_COLUMNS order) of each ``(file key, rows)``."""
    rows = [row for _, file_rows in files for row in file_rows]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in EVENT_COLUMNS]
    arrays = {
        name: pa.array(column, type=EVENT_TYPES[name])
        for name, column in zip(EVENT_COLUMNS, columns, strict=True)
    }
    # the file key as a dictionary, not repeated on every row: the table is sent between
    # processes and held in memory until its batch is stored
    indices = [index for index, (_, file_rows) in enumerate(files) for _ in file_rows]
    arrays["file"] = pa.DictionaryArray.from_arrays(
        pa.array(indices, type=pa.int32()), pa.array([key for key, _ in files], type=pa.string())
    )
    return pa.table(arrays)


_SPOOLED = itertools.count()
# Fewer rows than this go back through the pipe as tuples: writing, mapping and removing a
# file costs more than pickling a few rows, and the batch builds one table of them all.
SPOOL_ROWS = 64


def read_files(
    spool: str | None,
    room_id: str,
    candidates: Mapping[str, Sequence[str]],
    files: Sequence[tuple[str, bytes | None, str | None]],
) -> list[FileResult]:
    """``read_file`` over some files of one room, ``(key, data, path)`` each, in a worker.

    Small files go to a worker several at a time, so the pipe, the pickling and the task
    bookkeeping are paid once per group: a backlog of one-event files is verified on
    every core too. A key a file publishes is a candidate for the group's later files.
    With a ``spool`` folder, a file's events of SPOOL_ROWS rows or more are left there in
    an Arrow file, which the main process maps (``load_spooled``) instead of receiving a
    pickled copy: a large sync moves about a kilobyte per event, and reading, unpickling
    and pickling it cost the main process and the workers more than writing and mapping.
    """
    known = {sender: list(keys) for sender, keys in candidates.items()}
    results = []
    # Parsing makes tens of thousands of dicts, freed by reference counting; the cycle
    # collector's passes over them were ~7% of a worker's time outside Ed25519.
    gc.disable()
    try:
        for key, data, path in files:
            result = read_file(key, room_id, data, path, known)
            for sender, published in result.published_keys:
                keys = known.setdefault(sender, [])
                if published not in keys:
                    keys.append(published)
            results.append(result)
    finally:
        gc.enable()
    if spool is not None:
        for result in results:
            if result.rows and len(result.rows) >= SPOOL_ROWS:
                events = events_table([(result.key, result.rows)])
                target = os.path.join(spool, f"{os.getpid()}-{next(_SPOOLED)}.arrow")
                with pa.OSFile(target, "wb") as sink, pa.ipc.new_file(sink, events.schema) as out:
                    out.write_table(events)
                result.rows, result.events_file = None, target
    return results


def load_spooled(result: FileResult) -> FileResult:
    """Map a spooled result's events back in; the file's name goes at once (the mapping
    keeps its pages until the table is dropped)."""
    if result.events_file is not None:
        result.events = pa.ipc.open_file(pa.memory_map(result.events_file)).read_all()
        os.unlink(result.events_file)
        result.events_file = None
    return result


def verify_again(
    rows: Sequence[tuple[str, str, str]], candidates: Mapping[str, Sequence[str]]
) -> list[tuple[str, str, str | None, int]]:
    """(raw line, sender, event_hash) → (event_hash, signature, signer or None, keys tried).

    The signature names the copy: copies of one event share its hash (§4)."""
    ring = KeyRing(candidates)
    out = []
    for raw, sender, digest in rows:
        parsed = parse_line(raw.encode("utf-8"))
        if isinstance(parsed, Rejection):
            continue
        signature = parsed.data["signature"]
        signer = ring.find_signer(sender, signature, signing_bytes(parsed.data))
        out.append((digest, signature, signer, ring.count(sender)))
    return out

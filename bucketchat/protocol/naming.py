"""Names in a bucket: room ids, event ids, client ids and log file paths (PROTOCOL.md §1, §3)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from bucketchat.errors import BadIdentifier

# \Z, not $: "$" also matches before a trailing "\n"; [0-9], not \d: \d takes any Unicode digit
ROOM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
CLIENT_ID = re.compile(r"^[A-Za-z0-9_]{1,64}\Z")
LOG_FILE = re.compile(r"^messages_([0-9]{1,16})_([0-9]{1,16})_([A-Za-z0-9_]{1,64})\.jsonl\Z")
DAY_FOLDER = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_NOT_CLIENT_CHAR = re.compile(r"[^A-Za-z0-9_]")


def is_room_id(room_id: str) -> bool:
    return bool(ROOM_ID.match(room_id)) and room_id not in (".", "..")


def check_room_id(room_id: str) -> str:
    if not is_room_id(room_id):
        raise BadIdentifier(
            f"{room_id!r} is not a room id (letters, digits, '.', '_' and '-', up to 128, "
            "starting with a letter or digit)"
        )
    return room_id


def event_time(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return moment.strftime("%Y%m%dT%H%M%S.") + f"{timestamp_ms % 1000:03d}Z"


def new_event_id(room_id: str, timestamp_ms: int) -> str:
    return f"{room_id}::{event_time(timestamp_ms)}::{uuid.uuid4()}"


def event_id_room(event_id: str) -> str:
    return event_id.split("::", 1)[0]


def client_id_for(sender_id: str, key_fingerprint: str) -> str:
    if "@" in sender_id and not sender_id.startswith("@"):
        local = sender_id.split("@", 1)[0]
    elif ":" in sender_id:  # "@bob:matrix.org": nothing before "@", so after the last ":"
        local = sender_id.rsplit(":", 1)[1]
    else:
        local = sender_id
    local = _NOT_CLIENT_CHAR.sub("_", local)[:48] or "_"
    return f"{local}_{key_fingerprint[:6]}"


def utc_day(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def log_file_path(room_id: str, start_ts: int, end_ts: int, client_id: str) -> str:
    """The key of a log file relative to the bucket base."""
    if not CLIENT_ID.match(client_id):
        raise BadIdentifier(f"{client_id!r} is not a client id")
    name = f"messages_{start_ts}_{end_ts}_{client_id}.jsonl"
    return f"rooms/{room_id}/logs/{utc_day(start_ts)}/{name}"


def metadata_path(room_id: str) -> str:
    return f"rooms/{room_id}/metadata.json"


@dataclass(frozen=True)
class LogFileName:
    room_id: str
    day: str
    start_ts: int
    end_ts: int
    client_id: str


def parse_bucket_key(key: str) -> LogFileName | str:
    """A log file's parts from its key, or why the key is an ``unexpected_file``."""
    parts = key.split("/")
    if len(parts) < 2 or parts[0] != "rooms":
        return "outside rooms/"
    room_id = parts[1]
    if not is_room_id(room_id):
        return f"room folder {room_id!r} is not a valid room id"
    if len(parts) == 3 and parts[2] == "metadata.json":
        return "metadata"
    if len(parts) != 5 or parts[2] != "logs":
        return "not rooms/<room>/logs/<day>/<file>"
    day, name = parts[3], parts[4]
    if not DAY_FOLDER.match(day):
        return f"day folder {day!r} is not YYYY-MM-DD"
    match = LOG_FILE.match(name)
    if not match:
        return f"file name {name!r} is not messages_<start>_<end>_<client>.jsonl"
    return LogFileName(room_id, day, int(match[1]), int(match[2]), match[3])

"""What every export shares: the options, the rooms, the progress ticker, reading items.

Only events whose trust is not ``invalid`` are exported: a forged or conflicting line is
not an event of the room (the audit in a bundle still names it). Redacted text never
leaves: ``event_state.redacted`` (timeline.refresh) marks every line that carries it.
Long exports report progress through a callback, so no export imports a UI library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.errors import UsageError
from bucketchat.present import member_verb, strip_controls

if TYPE_CHECKING:
    from bucketchat.cache import Cache

Progress = Callable[[int, int], None]  # done, total

LINE_COUNT = """
SELECT count(*) FROM event_rows r
WHERE r.room_id IN (SELECT room_id FROM export_rooms)
  AND ($since IS NULL OR r.timestamp_ms >= $since)
  AND ($until IS NULL OR r.timestamp_ms <= $until)
"""
ITEMS = """
SELECT room_id, event_id, event_hash, timestamp_ms, sender_id, type, msgtype, body,
       original_body, edited, redacted, reactions, parent_event_id, thread_root, thread_seq,
       depth, reply_count, membership, displayname, trust, seq
FROM timeline_rows
WHERE room_id = $room AND trust <> 'invalid'
  AND ($since IS NULL OR timestamp_ms >= $since)
  AND ($until IS NULL OR timestamp_ms <= $until)
ORDER BY timestamp_ms, event_id, event_hash
"""
ITEM_COUNT = """
SELECT count(*) FROM timeline_rows
WHERE room_id IN (SELECT room_id FROM export_rooms) AND trust <> 'invalid'
  AND ($since IS NULL OR timestamp_ms >= $since)
  AND ($until IS NULL OR timestamp_ms <= $until)
"""
KNOWN_ROOMS = "SELECT DISTINCT room_id FROM event_rows ORDER BY room_id"
ROOM_NAME = "SELECT name FROM room_meta WHERE room_id = ?"
@dataclass
class ExportOptions:
    rooms: list[str]
    include_redacted: bool = False
    since_ms: int | None = None
    until_ms: int | None = None
    all_rooms: bool = False

    def params(self, room: str) -> dict[str, Any]:
        return {"room": room, "since": self.since_ms, "until": self.until_ms}


@dataclass
class ExportResult:
    format: str
    output: Path
    rooms: list[str]
    events: int
    files: int


def resolve_rooms(cache: Cache, room: str | None, all_rooms: bool) -> list[str]:
    known = [row[0] for row in cache.rows(KNOWN_ROOMS)]
    if all_rooms:
        if room:
            raise UsageError("give a ROOM or --all, not both")
        return known
    if not room:
        raise UsageError("give a ROOM to export, or --all")
    if room not in known:
        raise UsageError(f"no room {room!r} in the cache: run `bucketchat sync` first?")
    return [room]


def count_rows(cache: Cache, sql: str, options: ExportOptions) -> int:
    import pyarrow as pa

    cache.register("export_rooms", pa.table({"room_id": pa.array(options.rooms, pa.string())}))
    try:
        found = cache.one(sql, {"since": options.since_ms, "until": options.until_ms})
    finally:
        cache.unregister("export_rooms")
    return int(found[0]) if found else 0


class Ticker:
    """Calls ``progress`` at most every ``step`` items, and once at the end."""

    def __init__(self, progress: Progress | None, total: int, step: int = 2000) -> None:
        self.progress, self.total, self.step, self.done = progress, total, step, 0
        if progress:
            progress(0, total)

    def tick(self, count: int = 1) -> None:
        before = self.done
        self.done += count
        if self.progress and (self.done // self.step != before // self.step):
            self.progress(min(self.done, self.total), self.total)

    def finish(self) -> None:
        if self.progress:
            self.progress(self.total, self.total)


def prepare_file(output: Path) -> None:
    if output.is_dir():
        raise UsageError(f"{output} is a folder; --output names the file to write")
    output.parent.mkdir(parents=True, exist_ok=True)


def iso_time(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{timestamp_ms % 1000:03d}Z"


def items(cache: Cache, room: str, options: ExportOptions) -> list[dict[str, Any]]:
    """A room's timeline items (not invalid) in timeline order; redacted text only if asked."""
    rows = cache.records(ITEMS, options.params(room))
    if options.include_redacted:
        for row in rows:
            if row["redacted"]:
                row["body"] = row["original_body"]
    return rows


def thread_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items in timeline order with each thread's replies right under its root."""
    replies: dict[int, list[dict[str, Any]]] = {}
    top: list[dict[str, Any]] = []
    for row in rows:
        thread_seq = row["thread_seq"]
        if thread_seq is not None and thread_seq != row["seq"]:
            replies.setdefault(thread_seq, []).append(row)
        else:
            top.append(row)
    present = {row["seq"] for row in top}
    ordered: list[dict[str, Any]] = []
    for row in top:
        ordered.append(row)
        ordered.extend(replies.pop(row["seq"], []))
    for thread_seq, orphans in replies.items():  # root outside --since/--until
        if thread_seq not in present:
            ordered.extend(orphans)
    return ordered


def clean_text(text: str) -> str:
    """Text without control characters (terminal escapes, bidi overrides), newlines kept."""
    return strip_controls(text)


def describe_member(item: dict[str, Any]) -> str:
    return member_verb(item.get("membership"))


def reaction_text(reactions: dict[str, int] | None) -> str:
    if not reactions:
        return ""
    return " ".join(f"{clean_text(key)} {count}" for key, count in sorted(reactions.items()))

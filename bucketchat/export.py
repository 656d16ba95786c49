"""Exports (CLI.md): jsonl, parquet, csv, markdown, html and bundle, from the cache.

    jsonl · bundle   the original signed lines (re-verifiable); a redacted event's line
                     becomes a stub that keeps its chain checkable
    parquet · csv    columns for analysis; redacted content is null
    markdown · html  current text for people, threads indented (html in ``export_html``)

Only events whose trust is not ``invalid`` are exported: a forged or conflicting line is
not an event of the room (the audit in a bundle still names it). Redacted text never
leaves: ``event_state.redacted`` (query_state) marks every line that carries it. Long exports
report progress through a callback, so this module never imports a UI library.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.errors import UsageError

if TYPE_CHECKING:
    from bucketchat.cache import Cache

FORMATS = ("jsonl", "parquet", "csv", "markdown", "html", "bundle")
Progress = Callable[[int, int], None]  # done, total

# The signed lines of the chosen rooms, in timeline order, with what the stub needs.
EXPORT_LINES = """
SELECT r.room_id, r.event_id, r.event_hash, r.prev_event_hash, r.sender_id, r.timestamp_ms,
       r.raw, s.redacted AS hidden
FROM event_rows r
JOIN event_state s ON s.seq = r.seq
WHERE r.room_id = $room AND s.trust <> 'invalid'
  AND ($since IS NULL OR r.timestamp_ms >= $since)
  AND ($until IS NULL OR r.timestamp_ms <= $until)
ORDER BY r.timestamp_ms, r.event_id, r.event_hash
"""
LINE_COUNT = """
SELECT count(*) FROM event_rows r
WHERE r.room_id IN (SELECT room_id FROM export_rooms)
  AND ($since IS NULL OR r.timestamp_ms >= $since)
  AND ($until IS NULL OR r.timestamp_ms <= $until)
"""
# Parquet: the protocol's fields plus trust and current text; content null when redacted.
PARQUET_QUERY = """
SELECT r.room_id, strftime(make_timestamp(r.timestamp_ms * 1000), '%Y-%m-%d') AS day,
       r.event_id, r.timestamp_ms, r.sender_id, r.type, r.parent_event_id,
       r.prev_event_hash, r.event_hash, r.signature,
       CASE WHEN NOT s.redacted OR $include_redacted THEN r.content::VARCHAR END AS content,
       CASE WHEN $include_redacted AND t.redacted THEN t.original_body ELSE t.body END AS body,
       coalesce(t.edited, false) AS edited,
       s.redacted,
       s.trust
FROM event_rows r
JOIN event_state s ON s.seq = r.seq
LEFT JOIN timeline_rows t ON t.seq = r.seq
WHERE ($room IS NULL OR r.room_id = $room) AND list_contains($rooms, r.room_id)
  AND s.trust <> 'invalid'
  AND ($since IS NULL OR r.timestamp_ms >= $since)
  AND ($until IS NULL OR r.timestamp_ms <= $until)
ORDER BY r.timestamp_ms, r.event_id, r.event_hash
"""
ORDER_CLAUSE = "ORDER BY r.timestamp_ms, r.event_id, r.event_hash"
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
CSV_COLUMNS = (
    "room_id",
    "event_id",
    "timestamp_ms",
    "time",
    "sender_id",
    "type",
    "msgtype",
    "body",
    "edited",
    "redacted",
    "reactions",
    "parent_event_id",
    "thread_root",
    "reply_count",
    "membership",
    "trust",
)


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
    known = [row[0] for row in cache.con.execute(KNOWN_ROOMS).fetchall()]
    if all_rooms:
        if room:
            raise UsageError("give a ROOM or --all, not both")
        return known
    if not room:
        raise UsageError("give a ROOM to export, or --all")
    if room not in known:
        raise UsageError(f"no room {room!r} in the cache: run `bucketchat sync` first?")
    return [room]


def export(
    cache: Cache,
    fmt: str,
    output: Path,
    options: ExportOptions,
    progress: Progress | None = None,
) -> ExportResult:
    """Write ``options.rooms`` of ``cache`` to ``output`` in ``fmt``."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    if fmt == "bundle":
        from bucketchat.bundle import write_bundle

        return write_bundle(cache, output, options, progress)
    if fmt == "parquet":
        return export_parquet(cache, output, options, progress)
    if fmt == "jsonl":
        return export_jsonl(cache, output, options, progress)
    if fmt == "csv":
        return export_csv(cache, output, options, progress)
    if fmt == "markdown":
        return export_markdown(cache, output, options, progress)
    from bucketchat.export_html import export_html

    return export_html(cache, output, options, progress)


def _count(cache: Cache, sql: str, options: ExportOptions) -> int:
    import pyarrow as pa

    cache.con.register("export_rooms", pa.table({"room_id": pa.array(options.rooms, pa.string())}))
    try:
        row = cache.con.execute(sql, {"since": options.since_ms, "until": options.until_ms})
        found = row.fetchone()
    finally:
        cache.con.unregister("export_rooms")
    return int(found[0]) if found else 0


class _Ticker:
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


def stub_line(event_id: str, event_hash: str, prev: str | None, sender: str, ts: int) -> str:
    stub = {
        "redacted": {
            "event_id": event_id,
            "event_hash": event_hash,
            "prev_event_hash": prev,
            "sender_id": sender,
            "timestamp_ms": ts,
        }
    }
    return json.dumps(stub, ensure_ascii=False, separators=(",", ":"))


def signed_lines(
    cache: Cache, room: str, options: ExportOptions
) -> Iterator[tuple[str, int, bool, str]]:
    """(line, timestamp_ms, is_stub, event_hash) of a room's exported events."""
    result = cache.con.execute(EXPORT_LINES, options.params(room))
    while True:
        rows = result.fetchmany(10_000)
        if not rows:
            return
        for _room, event_id, digest, prev, sender, ts, raw, hidden in rows:
            if hidden and not options.include_redacted:
                yield stub_line(event_id, digest, prev, sender, ts), ts, True, digest
            else:
                yield raw, ts, False, digest


def _prepare_file(output: Path) -> None:
    if output.is_dir():
        raise UsageError(f"{output} is a folder; --output names the file to write")
    output.parent.mkdir(parents=True, exist_ok=True)


def export_jsonl(
    cache: Cache, output: Path, options: ExportOptions, progress: Progress | None = None
) -> ExportResult:
    _prepare_file(output)
    ticker = _Ticker(progress, _count(cache, LINE_COUNT, options))
    events = 0
    with output.open("w", encoding="utf-8", newline="\n") as handle:
        for room in options.rooms:
            for line, _ts, _stub, _hash in signed_lines(cache, room, options):
                handle.write(line)
                handle.write("\n")
                events += 1
                ticker.tick()
    ticker.finish()
    return ExportResult("jsonl", output, options.rooms, events, 1)


def export_parquet(
    cache: Cache, output: Path, options: ExportOptions, progress: Progress | None = None
) -> ExportResult:
    """One zstd Parquet file, or with --all a hive-partitioned folder (room_id=…/day=…/)."""
    partitioned = options.all_rooms
    if partitioned:
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            raise UsageError(f"{output} exists and is not an empty folder")
        output.mkdir(parents=True, exist_ok=True)
    else:
        _prepare_file(output)
    if progress:
        progress(0, 1)
    params = {
        "room": None if partitioned else options.rooms[0],
        "rooms": options.rooms,
        "since": options.since_ms,
        "until": options.until_ms,
        "include_redacted": options.include_redacted,
    }
    target = str(output).replace("'", "''")
    if partitioned:
        # one pass over every room; rows keep arrival order within a partition (sorting a
        # million rows first costs more than the whole write)
        query = PARQUET_QUERY.replace(ORDER_CLAUSE, "")
        copy = (
            f"COPY ({query}) TO '{target}' (FORMAT parquet, COMPRESSION zstd, "
            "PARTITION_BY (room_id, day))"
        )
    else:
        if len(options.rooms) > 1:
            raise UsageError("a single Parquet file holds one room; use --all for more")
        copy = f"COPY ({PARQUET_QUERY}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
    written = cache.con.execute(copy, params).fetchone()
    events = int(written[0]) if written else 0
    if progress:
        progress(1, 1)
    files = sum(1 for _ in output.rglob("*.parquet")) if partitioned else 1
    return ExportResult("parquet", output, options.rooms, events, files)


def iso_time(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{timestamp_ms % 1000:03d}Z"


def items(cache: Cache, room: str, options: ExportOptions) -> list[dict[str, Any]]:
    """A room's timeline items (not invalid) in timeline order; redacted text only if asked."""
    result = cache.con.execute(ITEMS, options.params(room))
    columns = [d[0] for d in result.description or []]
    rows = [dict(zip(columns, row, strict=True)) for row in result.fetchall()]
    if options.include_redacted:
        for row in rows:
            if row["redacted"]:
                row["body"] = row["original_body"]
    return rows


def export_csv(
    cache: Cache, output: Path, options: ExportOptions, progress: Progress | None = None
) -> ExportResult:
    _prepare_file(output)
    ticker = _Ticker(progress, _count(cache, ITEM_COUNT, options))
    count = 0
    with output.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for room in options.rooms:
            for item in items(cache, room, options):
                writer.writerow(
                    [
                        item["room_id"],
                        item["event_id"],
                        item["timestamp_ms"],
                        iso_time(item["timestamp_ms"]),
                        item["sender_id"],
                        item["type"],
                        item["msgtype"],
                        item["body"],
                        item["edited"],
                        item["redacted"],
                        json.dumps(item["reactions"] or {}, ensure_ascii=False),
                        item["parent_event_id"],
                        item["thread_root"],
                        item["reply_count"],
                        item["membership"],
                        item["trust"],
                    ]
                )
                count += 1
                ticker.tick()
    ticker.finish()
    return ExportResult("csv", output, options.rooms, count, 1)


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


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_{}[]<>()#+-.!|~"})


def md_escape(text: str) -> str:
    return clean_text(text).translate(_MD_SPECIAL)


def clean_text(text: str) -> str:
    """Text without control characters (terminal escapes, bidi overrides), newlines kept."""
    from bucketchat.textsafe import strip_controls

    return strip_controls(text)


def describe_member(item: dict[str, Any]) -> str:
    membership = item.get("membership") or "changed membership"
    verbs = {
        "join": "joined",
        "leave": "left",
        "invite": "invited someone",
        "ban": "banned someone",
        "kick": "removed someone",
    }
    return verbs.get(membership, membership)


def reaction_text(reactions: dict[str, int] | None) -> str:
    if not reactions:
        return ""
    return " ".join(f"{clean_text(key)} {count}" for key, count in sorted(reactions.items()))


def export_markdown(
    cache: Cache, output: Path, options: ExportOptions, progress: Progress | None = None
) -> ExportResult:
    _prepare_file(output)
    ticker = _Ticker(progress, _count(cache, ITEM_COUNT, options))
    out = io.StringIO()
    count = 0
    for room in options.rooms:
        name_row = cache.con.execute(ROOM_NAME, [room]).fetchone()
        title = md_escape(room)
        if name_row and name_row[0]:
            title += f" — {md_escape(name_row[0])}"
        out.write(f"# {title}\n")
        day = None
        for item in thread_order(items(cache, room, options)):
            depth = item["depth"] or 0
            this_day = iso_time(item["timestamp_ms"])[:10]
            if depth == 0 and this_day != day:
                day = this_day
                out.write(f"\n## {day}\n\n")
            indent = "  " * depth
            out.write(indent + "- " + _md_item(item, indent) + "\n")
            count += 1
            ticker.tick()
        out.write("\n")
    output.write_text(out.getvalue(), encoding="utf-8")
    ticker.finish()
    return ExportResult("markdown", output, options.rooms, count, 1)


def _md_item(item: dict[str, Any], indent: str) -> str:
    when = iso_time(item["timestamp_ms"])[11:16]
    sender = md_escape(item["sender_id"])
    badge = f"`{item['trust']}`"
    if item["type"] == "m.room.member":
        return f"_{sender} {describe_member(item)}_ · {when} · {badge}"
    if item["redacted"] and item["body"] is None:
        text = "_(message deleted)_"
    else:
        lines = md_escape(item["body"] or "").split("\n")
        text = ("  \n" + indent + "  ").join(lines)
        if item["edited"]:
            text += " _(edited)_"
        if item["redacted"]:
            text += " _(deleted, kept by --include-redacted)_"
    head = f"**{sender}** · {when} · {badge}"
    extra = []
    if item["reactions"]:
        extra.append(reaction_text(item["reactions"]))
    if item["reply_count"]:
        extra.append(f"{item['reply_count']} {'reply' if item['reply_count'] == 1 else 'replies'}")
    tail = (" · " + " · ".join(extra)) if extra else ""
    return f"{head} — {text}{tail}"

"""The JSONL export: the original signed lines, so anyone can re-verify them.

A redacted event's line becomes a stub that keeps its chain checkable (CLI.md), unless
``--include-redacted`` keeps the original.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bucketchat.export.common import (
    LINE_COUNT,
    ExportOptions,
    ExportResult,
    Progress,
    Ticker,
    count_rows,
    prepare_file,
)

if TYPE_CHECKING:
    from bucketchat.cache import Cache

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
    for rows in cache.batches(EXPORT_LINES, options.params(room)):
        for _room, event_id, digest, prev, sender, ts, raw, hidden in rows:
            if hidden and not options.include_redacted:
                yield stub_line(event_id, digest, prev, sender, ts), ts, True, digest
            else:
                yield raw, ts, False, digest


def export_jsonl(
    cache: Cache, output: Path, options: ExportOptions, progress: Progress | None = None
) -> ExportResult:
    prepare_file(output)
    ticker = Ticker(progress, count_rows(cache, LINE_COUNT, options))
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

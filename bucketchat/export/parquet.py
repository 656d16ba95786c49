"""The Parquet export (zstd): the protocol's fields plus trust and current text, one file
for a room, or with ``--all`` a folder partitioned ``room_id=…/day=…/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bucketchat.errors import UsageError
from bucketchat.export.common import ExportOptions, ExportResult, Progress, prepare_file

if TYPE_CHECKING:
    from bucketchat.cache import Cache

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
        prepare_file(output)
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
    written = cache.one(copy, params)
    events = int(written[0]) if written else 0
    if progress:
        progress(1, 1)
    files = sum(1 for _ in output.rglob("*.parquet")) if partitioned else 1
    return ExportResult("parquet", output, options.rooms, events, files)

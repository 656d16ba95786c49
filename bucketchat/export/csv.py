"""The CSV export: one row per timeline item, current text, for spreadsheets."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

from bucketchat.export.common import (
    ITEM_COUNT,
    ExportOptions,
    ExportResult,
    Progress,
    Ticker,
    count_rows,
    iso_time,
    items,
    prepare_file,
)

if TYPE_CHECKING:
    from bucketchat.cache import Cache

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


def export_csv(
    cache: Cache, output: Path, options: ExportOptions, progress: Progress | None = None
) -> ExportResult:
    prepare_file(output)
    ticker = Ticker(progress, count_rows(cache, ITEM_COUNT, options))
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

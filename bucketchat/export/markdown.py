"""The Markdown export: current text for people, threads indented under their roots."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.export.common import (
    ITEM_COUNT,
    ROOM_NAME,
    ExportOptions,
    ExportResult,
    Progress,
    Ticker,
    clean_text,
    count_rows,
    describe_member,
    iso_time,
    items,
    prepare_file,
    reaction_text,
    thread_order,
)

if TYPE_CHECKING:
    from bucketchat.cache import Cache

_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_{}[]<>()#+-.!|~"})


def md_escape(text: str) -> str:
    return clean_text(text).translate(_MD_SPECIAL)


def export_markdown(
    cache: Cache, output: Path, options: ExportOptions, progress: Progress | None = None
) -> ExportResult:
    prepare_file(output)
    ticker = Ticker(progress, count_rows(cache, ITEM_COUNT, options))
    out = io.StringIO()
    count = 0
    for room in options.rooms:
        name_row = cache.one(ROOM_NAME, [room])
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

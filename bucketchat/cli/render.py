"""The CLI's Rich renderer: timeline items, search hits, audit and verify reports.

Data goes to Rich only as ``Text`` built piece by piece (never as markup), after
``present`` has removed control characters, so nothing in a message can style, move the
cursor or otherwise reach the terminal as anything but literal text. The words, badges
and colours come from ``bucketchat.present``, shared with the chat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bucketchat.cli.context import out
from bucketchat.present import (
    clock,
    day,
    member_text,
    one_line,
    replies_text,
    sender_style,
    short_id,
    strip_controls,
    trust_badge,
)

if TYPE_CHECKING:
    from bucketchat.projections.search.searcher import Hit

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def render_item(
    item: dict[str, Any], *, indent: int = 0, show_thread: bool = True, width: int | None = None
) -> Text:
    """One timeline item as literal Rich text."""
    line = Text(no_wrap=False)
    line.append("  " * indent)
    line.append(clock(item["timestamp_ms"]) + " ", style="dim")
    is_reply = item.get("thread_root") not in (None, item["event_id"])
    if is_reply and show_thread:
        line.append("↳ ", style="dim")
    line.append(one_line(item["sender_id"]), style=sender_style(item["sender_id"]))
    badge = trust_badge(item["trust"])
    line.append(f" [{badge.label}]", style=badge.style)
    line.append("  ")
    if item["type"] == "m.room.member":
        line.append(member_text(item), style="italic dim")
    elif item["body"] is None:
        line.append("message deleted", style="italic dim")
    else:
        body = strip_controls(item["body"])
        pad = "\n" + "  " * indent + "      "
        style = "italic" if item.get("msgtype") == "m.emote" else ""
        line.append(body.replace("\n", pad), style=style)
        if item["edited"]:
            line.append(" (edited)", style="dim")
    if item.get("redacted") and item["body"] is not None:
        line.append(" (deleted)", style="dim red")
    meta = Text()
    if item.get("reactions"):
        for key, count in sorted(item["reactions"].items()):
            meta.append(f" {one_line(key)} {count} ", style="on grey23")
            meta.append(" ")
    if show_thread and item.get("reply_count"):
        meta.append(f" 🧵 {replies_text(item['reply_count'])}", style="cyan")
        meta.append(f" (thread {short_id(item['event_id'])})", style="dim")
    if meta:
        from rich.cells import cell_len

        last_line = line.plain.rsplit("\n", 1)[-1]
        if width is not None and cell_len(last_line) + 2 + meta.cell_len > width:
            line.append("\n" + "  " * indent + "      ")  # reactions and replies below
        else:
            line.append("  ")
        line.append_text(meta)
    return line


def print_timeline(items: list[dict[str, Any]]) -> None:
    """Timeline items for people: day rules, then one line per item, in one pass."""
    from rich.console import Group
    from rich.rule import Rule

    console = out()
    this_day = None
    lines: list[Any] = []
    for item in items:
        item_day = day(item["timestamp_ms"])
        if item_day != this_day:
            this_day = item_day
            lines.append(Rule(Text(item_day, style="bold"), style="dim"))
        lines.append(render_item(item, width=console.width))
    if lines:
        console.print(Group(*lines))  # one print: a page renders in one pass


def print_thread(found: dict[str, Any]) -> None:
    console = out()
    title = Text("thread ", style="bold")
    title.append(one_line(found["root"]), style="dim")
    console.print(title)
    for item in found["events"]:
        console.print(
            render_item(item, indent=item["depth"] or 0, show_thread=False, width=console.width)
        )


def print_hits(hits: list[Hit]) -> None:
    from datetime import UTC, datetime

    console = out()
    for hit in hits:
        head = Text()
        head.append(one_line(hit.room_id), style="bold")
        head.append(" · ")
        head.append(one_line(hit.sender_id), style=sender_style(hit.sender_id))
        head.append(" · " + datetime.fromtimestamp(hit.timestamp_ms / 1000, tz=UTC).strftime(
            "%Y-%m-%d %H:%M"), style="dim")
        badge = trust_badge(hit.trust)
        head.append(f" [{badge.label}]", style=badge.style)
        console.print(head)
        body = Text("  ")
        position = 0
        snippet = hit.snippet
        for start, end in hit.highlights:
            body.append(one_line(snippet[position:start]))
            body.append(one_line(snippet[start:end]), style="bold black on yellow")
            position = end
        body.append(one_line(snippet[position:]))
        console.print(body)
        console.print(Text("  " + one_line(hit.event_id), style="dim"))


def print_verify(report: dict[str, Any]) -> None:
    console = out()
    table = Table(title="rooms", title_justify="left")
    for column in ("room", "events", "digest", "matches"):
        table.add_column(column)
    for room in report["rooms"]:
        table.add_row(
            Text(one_line(room["room_id"])),
            str(room["events"]),
            Text(room["digest"][:16] + "…"),
            Text("yes", style="green") if room["digest_matches"] else Text("NO", style="bold red"),
        )
    console.print(table)
    for finding in report["findings"]:
        line = Text(f"{finding['severity']:<8} ", style="red" if finding["severity"] == "error"
                    else "yellow")
        line.append(finding["kind"] + " ", style="bold")
        where = finding.get("file") or finding.get("room_id") or ""
        line.append(one_line(str(where)), style="dim")
        if finding.get("line"):
            line.append(f":{finding['line']}", style="dim")
        line.append("  " + one_line(str(finding.get("detail") or "")))
        console.print(line)
    verdict = Text("bundle verified" if report["ok"] else "bundle FAILED verification",
                   style="bold green" if report["ok"] else "bold red")
    console.print(verdict)


def print_audit(report: dict[str, Any]) -> None:
    console = out()
    summary = report["summary"]
    console.print(
        f"[bold]{summary['events']}[/] events from [bold]{summary['senders']}[/] senders: "
        f"[bold red]{summary['error']}[/] errors, [yellow]{summary['warning']}[/] warnings, "
        f"[cyan]{summary['info']}[/] info"
    )
    if report["findings"]:
        table = Table("severity", "kind", "room", "sender", "where", "detail", box=None)
        for finding in report["findings"]:
            where = finding["event_id"] or finding["file"] or ""
            if finding["file"] and finding["line"] is not None:
                where = f"{finding['file']}:{finding['line']}"
            kind = finding["kind"] + (f" ({finding['reason']})" if finding["reason"] else "")
            style = SEVERITY_STYLE[finding["severity"]]
            table.add_row(
                f"[{style}]{finding['severity']}[/]",
                escape(kind),
                escape(finding["room_id"] or ""),
                escape(finding["sender_id"] or ""),
                escape(where),
                escape(finding["detail"] or ""),
            )
        console.print(table)
    senders = Table("room", "sender", "key", "events", "trust", "chain", box=None)
    for sender in report["senders"]:
        key = sender["public_key"] or "—"
        chain = ", ".join(sender["chain"]) or "sound"
        senders.add_row(
            escape(sender["room_id"]),
            escape(sender["sender_id"]),
            escape(key[:12]),
            str(sender["events"]),
            sender["trust"],
            chain,
        )
    console.print(senders)
    rooms_table = Table("room", "events", "digest", box=None)
    rooms_table.columns[2].overflow = "fold"
    for item in report["rooms"]:
        rooms_table.add_row(escape(item["room_id"]), str(item["events"]), item["digest"])
    console.print(rooms_table)

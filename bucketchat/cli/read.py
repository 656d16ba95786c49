"""Reading commands: log, thread, search, export, verify.

Data goes to Rich only as ``Text`` built piece by piece (never as markup), after
``textsafe`` has removed control characters, so nothing in a message can style, move the
cursor or otherwise reach the terminal as anything but literal text. The query modules
(duckdb, pyarrow, tantivy) are imported inside each command to keep start-up fast.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bucketchat.cli.context import err, out, print_json, state
from bucketchat.errors import BucketchatError, UsageError
from bucketchat.textsafe import one_line, strip_controls

if TYPE_CHECKING:
    from rich.text import Text

JSON = typer.Option(False, "--json", help="Print one JSON document.")
SINCE = typer.Option(None, "--since", help="From this ISO 8601 date or time (UTC).",
                     show_default=False)
UNTIL = typer.Option(None, "--until", help="Up to this date (the whole day) or time.",
                     show_default=False)
OUTPUT = typer.Option(..., "--output", "-o", help="The file (or folder) to write.")
BUNDLE = typer.Argument(..., help="A folder made by `export --format bundle`.")
SENDER_COLOURS = (
    "cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan",
    "bright_magenta", "bright_green", "dark_orange", "orchid", "spring_green3",
)
MEMBER_VERBS = {
    "join": "joined",
    "leave": "left",
    "invite": "invited someone",
    "ban": "banned someone",
    "kick": "removed someone",
}
TRUST_BADGES = {
    "attested": ("✔ attested", "bold green"),
    "tofu": ("tofu", "dim cyan"),
    "unverified": ("? unverified", "yellow"),
    "invalid": ("✗ invalid", "bold red"),
}


def register(app: typer.Typer) -> None:
    app.command("log")(log)
    app.command("thread")(thread)
    app.command("search")(search)
    app.command("export")(export)
    app.command("verify")(verify)


def _times(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    from bucketchat.timeutil import parse_time_arg

    return (
        parse_time_arg(since) if since else None,
        parse_time_arg(until, end_of_day=True) if until else None,
    )


def _cache_path(ctx: typer.Context) -> Path:
    return state(ctx).settings.cache_path()


def _open_fresh(path: Path) -> Any:
    """The cache, read-only, after its timeline rows caught up with any unprocessed sync."""
    from bucketchat.query_state import open_fresh

    if not path.exists():
        raise UsageError(f"no cache at {path}: run `bucketchat sync` first")
    return open_fresh(path)


def sender_style(sender_id: str) -> str:
    digest = hashlib.sha256(sender_id.encode("utf-8")).digest()
    return f"bold {SENDER_COLOURS[digest[0] % len(SENDER_COLOURS)]}"


def _clock(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).strftime("%H:%M")


def _day(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).strftime("%A %-d %B %Y")


def short_id(event_id: str) -> str:
    return one_line(event_id.rsplit("::", 1)[-1][:8])


def render_item(
    item: dict[str, Any], *, indent: int = 0, show_thread: bool = True, width: int | None = None
) -> Text:
    """One timeline item as literal Rich text."""
    from rich.text import Text

    line = Text(no_wrap=False)
    line.append("  " * indent)
    line.append(_clock(item["timestamp_ms"]) + " ", style="dim")
    is_reply = item.get("thread_root") not in (None, item["event_id"])
    if is_reply and show_thread:
        line.append("↳ ", style="dim")
    line.append(one_line(item["sender_id"]), style=sender_style(item["sender_id"]))
    badge, badge_style = TRUST_BADGES.get(item["trust"], TRUST_BADGES["invalid"])
    line.append(f" [{badge}]", style=badge_style)
    line.append("  ")
    if item["type"] == "m.room.member":
        text = MEMBER_VERBS.get(item.get("membership") or "", "changed membership")
        name = item.get("displayname")
        if name and item.get("membership") == "join":
            text += f" as {one_line(name)}"
        line.append(text, style="italic dim")
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
        count = item["reply_count"]
        meta.append(f" 🧵 {count} {'reply' if count == 1 else 'replies'}", style="cyan")
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
    from rich.text import Text

    console = out()
    day = None
    lines: list[Any] = []
    for item in items:
        this_day = _day(item["timestamp_ms"])
        if this_day != day:
            day = this_day
            lines.append(Rule(Text(this_day, style="bold"), style="dim"))
        lines.append(render_item(item, width=console.width))
    if lines:
        console.print(Group(*lines))  # one print: a page renders in one pass


def log(
    ctx: typer.Context,
    room: str = typer.Argument(..., help="The room id."),
    limit: int = typer.Option(50, "--limit", "-n", help="How many items, newest last."),
    before: str | None = typer.Option(
        None, "--before", help="Page back: items before this event id.", show_default=False
    ),
    since: str | None = SINCE,
    until: str | None = UNTIL,
    include_invalid: bool = typer.Option(
        False, "--include-invalid", help="Also show events whose signature fails."
    ),
    as_json: bool = JSON,
) -> None:
    """The timeline of ROOM: edits, redactions, reactions and threads resolved."""
    from bucketchat import query

    since_ms, until_ms = _times(since, until)
    with _open_fresh(_cache_path(ctx)) as cache:
        items = query.timeline(
            cache,
            room,
            limit=limit,
            before=before,
            since_ms=since_ms,
            until_ms=until_ms,
            include_invalid=include_invalid,
        )
    if as_json:
        print_json(items)
        return
    from rich.text import Text

    print_timeline(items)
    if not items:
        err().print("no messages")
    elif len(items) == limit:
        hint = Text("older: ", style="dim")
        hint.append(f"bucketchat log {room} --before {one_line(items[0]['event_id'])}")
        err().print(hint)


def thread(
    ctx: typer.Context,
    event_id: str = typer.Argument(..., help="Any event of the thread."),
    as_json: bool = JSON,
) -> None:
    """The whole thread containing EVENT_ID, root first, replies indented by depth."""
    from bucketchat import query

    with _open_fresh(_cache_path(ctx)) as cache:
        found = query.thread(cache, event_id)
    if as_json:
        print_json(found)
        return
    from rich.text import Text

    console = out()
    title = Text("thread ", style="bold")
    title.append(one_line(found["root"]), style="dim")
    console.print(title)
    for item in found["events"]:
        console.print(
            render_item(item, indent=item["depth"] or 0, show_thread=False, width=console.width)
        )


def search(
    ctx: typer.Context,
    query_text: str = typer.Argument(
        ...,
        metavar="QUERY",
        help='Words, "phrases", OR, -word, from:, in:, before:, after:, is:attested, '
        "has:thread.",
    ),
    room: str | None = typer.Option(None, "--room", help="Only this room.", show_default=False),
    sender: str | None = typer.Option(
        None, "--sender", help="Only this sender.", show_default=False
    ),
    since: str | None = SINCE,
    until: str | None = UNTIL,
    limit: int = typer.Option(20, "--limit", "-n", help="How many hits."),
    as_json: bool = JSON,
) -> None:
    """Ranked full-text search over current message text (edits applied, redactions gone)."""
    from bucketchat.fulltext import open_searcher

    if limit < 1:
        raise UsageError("--limit must be at least 1")
    since_ms, until_ms = _times(since, until)
    path = _cache_path(ctx)
    if not path.exists():
        raise UsageError(f"no cache at {path}: run `bucketchat sync` first")
    hits = open_searcher(path).search(
        query_text, room=room, sender=sender, since_ms=since_ms, until_ms=until_ms, limit=limit
    )
    if as_json:
        print_json([hit.as_json() for hit in hits])
        return
    from rich.text import Text

    console = out()
    if not hits:
        err().print("no matches")
    for hit in hits:
        head = Text()
        head.append(one_line(hit.room_id), style="bold")
        head.append(" · ")
        head.append(one_line(hit.sender_id), style=sender_style(hit.sender_id))
        head.append(" · " + datetime.fromtimestamp(hit.timestamp_ms / 1000, tz=UTC).strftime(
            "%Y-%m-%d %H:%M"), style="dim")
        badge, badge_style = TRUST_BADGES.get(hit.trust, TRUST_BADGES["invalid"])
        head.append(f" [{badge}]", style=badge_style)
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


def export(
    ctx: typer.Context,
    room: str | None = typer.Argument(None, help="The room to export (or --all)."),
    all_rooms: bool = typer.Option(False, "--all", help="Every room in the cache."),
    fmt: str = typer.Option(
        ..., "--format", "-f", help="jsonl, parquet, csv, markdown, html or bundle."
    ),
    output: Path = OUTPUT,
    include_redacted: bool = typer.Option(
        False, "--include-redacted", help="Keep redacted events' original lines and text."
    ),
    since: str | None = SINCE,
    until: str | None = UNTIL,
    as_json: bool = JSON,
) -> None:
    """Export ROOM (or --all) as jsonl, parquet, csv, markdown, html or a bundle."""
    from bucketchat.export import FORMATS, ExportOptions, resolve_rooms
    from bucketchat.export import export as run_export

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    since_ms, until_ms = _times(since, until)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn(f"exporting {fmt}"), BarColumn(), MofNCompleteColumn(),
        console=err(), transient=True,
    )
    task: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not task:
            if total < 5000 and fmt != "parquet":
                return
            bar.start()
            task.append(bar.add_task("export", total=total))
        bar.update(task[0], completed=done, total=total)

    with _open_fresh(_cache_path(ctx)) as cache:
        options = ExportOptions(
            rooms=resolve_rooms(cache, room, all_rooms),
            include_redacted=include_redacted,
            since_ms=since_ms,
            until_ms=until_ms,
            all_rooms=all_rooms,
        )
        try:
            result = run_export(cache, fmt, output, options, progress)
        finally:
            bar.stop()
    summary = {
        "format": result.format,
        "output": str(result.output),
        "rooms": result.rooms,
        "events": result.events,
        "files": result.files,
    }
    if as_json:
        print_json(summary)
        return
    err().print(
        f"exported {result.events} item(s) of {len(result.rooms)} room(s) as {fmt} to "
        f"{one_line(str(result.output))}",
        markup=False,
    )


def verify(
    ctx: typer.Context,
    bundle: Path = BUNDLE,
    as_json: bool = JSON,
) -> None:
    """Re-check an exported bundle offline: manifest, signatures, keys, chains, digests."""
    from bucketchat.bundle import verify_bundle

    del ctx
    report = verify_bundle(bundle)
    if as_json:
        print_json(report)
    else:
        _render_verify(report)
    if not report["ok"]:
        # an error, not typer.Exit: run() drops the return code of standalone_mode=False
        raise BucketchatError(f"the bundle {bundle} failed verification")


def _render_verify(report: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

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

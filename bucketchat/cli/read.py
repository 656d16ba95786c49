"""Reading commands: log, thread, search.

Each is a thin call into the session's readers; what they print goes through
``cli.render``. The query modules (duckdb, pyarrow, tantivy) load inside each command,
so start-up stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from bucketchat.cli.context import err, open_session, print_json
from bucketchat.errors import UsageError
from bucketchat.present import one_line

if TYPE_CHECKING:
    from bucketchat.session import Session

JSON = typer.Option(False, "--json", help="Print one JSON document.")
SINCE = typer.Option(None, "--since", help="From this ISO 8601 date or time (UTC).",
                     show_default=False)
UNTIL = typer.Option(None, "--until", help="Up to this date (the whole day) or time.",
                     show_default=False)


def register(app: typer.Typer) -> None:
    app.command("log")(log)
    app.command("thread")(thread)
    app.command("search")(search)


def times(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    """--since and --until as protocol ms (a date alone as --until includes the day)."""
    from bucketchat.timeutil import parse_time_arg

    return (
        parse_time_arg(since) if since else None,
        parse_time_arg(until, end_of_day=True) if until else None,
    )


def reader(ctx: typer.Context) -> Session:
    """A session that only reads the cache: no bucket, no identity."""
    return open_session(ctx, identity=False, bucket=False)


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
    since_ms, until_ms = times(since, until)
    items = reader(ctx).timeline(
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

    from bucketchat.cli.render import print_timeline

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
    found = reader(ctx).thread(event_id)
    if as_json:
        print_json(found)
        return
    from bucketchat.cli.render import print_thread

    print_thread(found)


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
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    since_ms, until_ms = times(since, until)
    hits = reader(ctx).search(
        query_text, room=room, sender=sender, since_ms=since_ms, until_ms=until_ms, limit=limit
    )
    if as_json:
        print_json([hit.as_json() for hit in hits])
        return
    from bucketchat.cli.render import print_hits

    if not hits:
        err().print("no matches")
    print_hits(hits)

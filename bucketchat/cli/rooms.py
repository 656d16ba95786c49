"""``bucketchat rooms``: the rooms of the bucket and the cache, with counts and activity."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from bucketchat.cli.context import open_session, out, print_json, state
from bucketchat.cli.sync import JSON


def register(app: typer.Typer) -> None:
    app.command()(rooms)


def rooms(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Rooms in the bucket and the cache, with counts and last activity."""
    syncing = bool(state(ctx).settings.bucket)
    session = open_session(ctx, identity=False, bucket=syncing)
    if syncing:
        session.sync()
    items = session.rooms()
    if as_json:
        print_json(items)
        return
    from bucketchat.timeutil import format_ms

    table = Table("room", "name", "events", "senders", "last activity", box=None)
    for item in items:
        last = item["last_timestamp_ms"]
        table.add_row(
            escape(item["room_id"]),
            escape(item["name"] or ""),
            str(item["events"]),
            str(item["senders"]),
            format_ms(last) if last is not None else "—",
        )
    out().print(table)

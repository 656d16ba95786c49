"""Writing commands: room create, join, leave, send, edit, redact, react.

Each prints the new event id on stdout (so scripts can chain them) and exits 3 when the
upload failed, with the event kept in the outbox for the next command.
"""

from __future__ import annotations

import typer

from bucketchat.cli.context import open_session

ROOM = typer.Argument(..., help="The room id.", show_default=False)
EVENT = typer.Argument(..., help="The event id to act on.", show_default=False)

room_app = typer.Typer(name="room", help="Create rooms.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(room_app, name="room")
    for command in (join, leave, send, edit, redact, react):
        app.command()(command)


@room_app.command("create")
def room_create(
    ctx: typer.Context,
    room: str = ROOM,
    name: str | None = typer.Option(None, "--name", help="A display name.", show_default=False),
    topic: str | None = typer.Option(None, "--topic", help="A topic.", show_default=False),
    lock_days: int | None = typer.Option(
        None,
        "--lock-days",
        help="First make the bucket keep every object write-once for N days "
        "(S3 Object Lock, GCS retention policy; see docs/clouds.md).",
        show_default=False,
    ),
) -> None:
    """Create a room (its metadata.json) in the bucket and join it."""
    session = open_session(ctx)
    created = session.create_room(room, name=name, topic=topic, lock_days=lock_days)
    from bucketchat.cli.context import err

    if not created:
        err().print(f"room {room} already existed; joined it")
    print(room)


def join(ctx: typer.Context, room: str = ROOM) -> None:
    """Join a room, publishing this device's public key (PROTOCOL.md §5)."""
    print(open_session(ctx).join(room).event_id)


def leave(ctx: typer.Context, room: str = ROOM) -> None:
    """Leave a room."""
    print(open_session(ctx).write(room, "m.room.member", {"membership": "leave"}).event_id)


def send(
    ctx: typer.Context,
    room: str = ROOM,
    text: str = typer.Argument(..., help="The message text.", show_default=False),
    reply_to: str | None = typer.Option(
        None,
        "--reply-to",
        help="Reply to this event id (starts or continues a thread).",
        show_default=False,
    ),
) -> None:
    """Send a message; prints its event id."""
    from bucketchat.compose import message_content

    print(open_session(ctx).write(room, "m.room.message", message_content(text), reply_to).event_id)


def edit(
    ctx: typer.Context,
    event_id: str = EVENT,
    text: str = typer.Argument(..., help="The new text.", show_default=False),
) -> None:
    """Edit one of your messages; prints the edit's event id."""
    from bucketchat.compose import edit_content, room_of_event

    session = open_session(ctx)
    print(
        session.write(room_of_event(event_id), "m.room.edit", edit_content(event_id, text)).event_id
    )


def redact(
    ctx: typer.Context,
    event_id: str = EVENT,
    reason: str | None = typer.Option(None, "--reason", help="Why.", show_default=False),
) -> None:
    """Redact one of your events: its text disappears from every output."""
    from bucketchat.compose import redaction_content, room_of_event

    session = open_session(ctx)
    content = redaction_content(event_id, reason)
    print(session.write(room_of_event(event_id), "m.room.redaction", content).event_id)


def react(
    ctx: typer.Context,
    event_id: str = EVENT,
    key: str = typer.Argument(..., help="The reaction, e.g. an emoji.", show_default=False),
) -> None:
    """React to an event."""
    from bucketchat.compose import reaction_content, room_of_event

    session = open_session(ctx)
    print(
        session.write(
            room_of_event(event_id), "m.room.reaction", reaction_content(event_id, key)
        ).event_id
    )

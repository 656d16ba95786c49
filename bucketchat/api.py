"""The Python API for notebooks and scripts: a read-only connection and three readers.

    import bucketchat
    con = bucketchat.connect()                  # DuckDB, read-only, the documented views
    page = bucketchat.timeline("general")      # pyarrow.Table, oldest first
    thread = bucketchat.thread(event_id)        # pyarrow.Table with depth, root first
    hits = bucketchat.search("deploy from:alice")  # list of dicts, best first

``db`` is the cache file; without it the settings decide (``BUCKETCHAT_DB``, or the cache
of ``BUCKETCHAT_BUCKET`` / the config file), exactly as for the CLI. Each call first lets
the timeline rows catch up with anything synced since, then opens the cache read-only, so
a running ``sync`` is never blocked for long. Each is a thin call into ``bucketchat.session``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from bucketchat.cache import Connection
    from bucketchat.session import Session


def _path(db: str | Path | None) -> Path:
    if db is not None:
        return Path(db).expanduser()
    from bucketchat.config import Settings

    return Settings.resolve().cache_path()


def _session(db: str | Path | None) -> Session:
    from bucketchat.session import Session

    return Session(None, _path(db))


def connect(db: str | Path | None = None) -> Connection:
    """A read-only DuckDB connection to the cache, with the views of the README.

    Close it when done: while it is open, no sync can write the cache.
    """
    from bucketchat.cache import read_only_connection

    return read_only_connection(_session(db).open_fresh())


def _time(value: str | int | None, *, end_of_day: bool = False) -> int | None:
    if value is None or isinstance(value, int):
        return value
    from bucketchat.timeutil import parse_time_arg

    return parse_time_arg(value, end_of_day=end_of_day)


def timeline(
    room: str,
    *,
    db: str | Path | None = None,
    limit: int = 50,
    before: str | None = None,
    since: str | int | None = None,
    until: str | int | None = None,
    include_invalid: bool = False,
) -> pa.Table:
    """The newest ``limit`` items of ``room`` (before event ``before``), oldest first.

    ``since``/``until`` are ISO 8601 dates or times (a date alone as ``until`` includes
    the day) or protocol milliseconds. Columns as in ``log --json``.
    """
    return _session(db).timeline_table(
        room,
        limit=limit,
        before=before,
        since_ms=_time(since),
        until_ms=_time(until, end_of_day=True),
        include_invalid=include_invalid,
    )


def thread(event_id: str, *, db: str | Path | None = None) -> pa.Table:
    """The thread containing ``event_id``: root first, every event with its ``depth``."""
    return _session(db).thread_table(event_id)


def search(
    query: str,
    *,
    db: str | Path | None = None,
    room: str | None = None,
    sender: str | None = None,
    since: str | int | None = None,
    until: str | int | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Ranked hits over current message text, as ``search --json`` prints them."""
    hits = _session(db).search(
        query,
        room=room,
        sender=sender,
        since_ms=_time(since),
        until_ms=_time(until, end_of_day=True),
        limit=limit,
    )
    return [hit.as_json() for hit in hits]

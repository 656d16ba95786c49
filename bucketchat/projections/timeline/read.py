"""Reading the timeline and threads: pages and threads from ``timeline_rows``, as plain data.

Pages use keyset pagination on the timeline order (``timestamp_ms``, ``event_id``,
``event_hash``): ``--before EVENT_ID`` continues strictly before that item, so pages never
skip or repeat items while new events arrive. Rows are stored clustered by room and time
(timeline.refresh), so a page or a thread reads only its room's row groups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from bucketchat.errors import BadIdentifier, UsageError

T = TypeVar("T")

if TYPE_CHECKING:
    import pyarrow as pa

    from bucketchat.cache import Cache

ITEM_COLUMNS = (
    "event_id",
    "event_hash",
    "room_id",
    "timestamp_ms",
    "sender_id",
    "type",
    "body",
    "edited",
    "redacted",
    "reactions",
    "parent_event_id",
    "thread_root",
    "reply_count",
    "trust",
    "msgtype",
    "membership",
    "displayname",
)
_SELECT = ", ".join(ITEM_COLUMNS)

FIND_ITEM = """
SELECT seq, position, event_id, event_hash, thread_seq, trust FROM timeline_rows
WHERE room_id = $room AND event_id = $event_id
ORDER BY trust = 'invalid', timestamp_ms, event_hash
"""
# Writers put the event's time in its id (PROTOCOL.md §3); comparing that integer first
# spares comparing long ids on every row of the room (1 ms instead of 5 at 100k a room).
FIND_ITEM_AT = """
SELECT seq, position, event_id, event_hash, thread_seq, trust FROM timeline_rows
WHERE room_id = $room AND timestamp_ms = $at AND event_id = $event_id
ORDER BY trust = 'invalid', timestamp_ms, event_hash
"""
ROOM_ITEMS = "SELECT items FROM timeline_rooms WHERE room_id = ?"
# Positions are dense per room, so the page lies in (high - window, high); zone maps skip
# everything else. A page the window cannot fill (invalid rows hidden, --since/--until)
# is asked again with low = 0.
PAGE = f"""
SELECT {_SELECT} FROM timeline_rows
WHERE room_id = $room AND position < $high AND position > $low
  AND ($include_invalid OR trust <> 'invalid')
  AND ($since IS NULL OR timestamp_ms >= $since)
  AND ($until IS NULL OR timestamp_ms <= $until)
ORDER BY position DESC
LIMIT $limit
"""  # noqa: S608 - constants only
THREAD = f"""
SELECT {_SELECT}, depth FROM timeline_rows
WHERE room_id = $room AND thread_seq = $thread_seq
ORDER BY timestamp_ms, event_id, event_hash
"""  # noqa: S608 - constants only
SINGLE = f"SELECT {_SELECT}, 0 AS depth FROM timeline_rows WHERE seq = $seq"  # noqa: S608
RELATION_TARGET = """
SELECT relates_to FROM event_rows
WHERE room_id = ? AND event_id = ? AND relates_to IS NOT NULL LIMIT 1
"""
ROOM_KNOWN = "SELECT 1 FROM event_rows WHERE room_id = ? LIMIT 1"


def _id_time(event_id: str) -> int | None:
    """The ms of the ``YYYYMMDDTHHMMSS.mmmZ`` part of an event id, if it has one."""
    from datetime import UTC, datetime

    parts = event_id.split("::")
    if len(parts) != 3 or len(parts[1]) != 20 or not parts[1].endswith("Z"):
        return None
    try:
        moment = datetime.strptime(parts[1][:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        millis = int(parts[1][16:19])
    except ValueError:
        return None
    return int(moment.timestamp()) * 1000 + millis


def _find_item(cache: Cache, room: str, event_id: str) -> tuple[Any, ...] | None:
    """(seq, position, event_id, event_hash, thread_seq, trust) of the item ``event_id``."""
    at = _id_time(event_id)
    if at is not None:
        found = cache.one(
            FIND_ITEM_AT, {"room": room, "at": at, "event_id": event_id}
        )
        # an id naming two events (event_id_conflict) finds the valid one at the id's own
        # time first, else the earliest valid one: deterministic either way
        if found is not None and found[5] != "invalid":
            return found
    return cache.one(FIND_ITEM, {"room": room, "event_id": event_id})


def _event_room(event_id: str) -> str:
    """The room part of an event id (PROTOCOL.md §3), without importing the protocol."""
    return event_id.split("::", 1)[0]


def _rows(
    cache: Cache, sql: str, params: dict[str, Any], columns: tuple[str, ...]
) -> list[dict[str, Any]]:
    result = cache.rows(sql, params)
    return [dict(zip(columns, row, strict=True)) for row in result]


def _page_params(
    cache: Cache,
    room: str,
    limit: int,
    before: str | None,
    since_ms: int | None,
    until_ms: int | None,
    include_invalid: bool,
) -> dict[str, Any] | None:
    """The PAGE parameters, or None for a known room with no items yet."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    params: dict[str, Any] = {
        "room": room,
        "include_invalid": include_invalid,
        "since": since_ms,
        "until": until_ms,
        "limit": limit,
    }
    if before is not None:
        if _event_room(before) != room:
            raise BadIdentifier(f"{before!r} is not an event of room {room!r}")
        found = _find_item(cache, room, before)
        if found is None:
            raise BadIdentifier(f"no timeline item {before!r} in room {room!r}")
        high = int(found[1])
    else:
        known = cache.one(ROOM_ITEMS, [room])
        if known is None:
            if cache.one(ROOM_KNOWN, [room]) is None:
                raise UsageError(f"no room {room!r} in the cache: run `bucketchat sync` first?")
            return None
        high = int(known[0]) + 1
    params.update(high=high, low=max(0, high - 2 * limit - 16))
    return params


def _widening(
    params: dict[str, Any],
    limit: int,
    fetch: Callable[[dict[str, Any]], T],
    count: Callable[[T], int],
) -> T:
    """A page from the position window of ``params``, widened to the whole room when the
    window held fewer than ``limit`` items (filters such as --since thin it out)."""
    page = fetch(params)
    if count(page) < limit and params["low"] > 0:
        params["low"] = 0
        page = fetch(params)
    return page


def timeline(
    cache: Cache,
    room: str,
    *,
    limit: int = 50,
    before: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    include_invalid: bool = False,
) -> list[dict[str, Any]]:
    """The newest ``limit`` items of ``room`` (before ``before``), oldest first."""
    params = _page_params(cache, room, limit, before, since_ms, until_ms, include_invalid)
    if params is None:
        return []
    items = _widening(params, limit, lambda p: _rows(cache, PAGE, p, ITEM_COLUMNS), len)
    items.reverse()
    return items


def timeline_arrow(
    cache: Cache,
    room: str,
    *,
    limit: int = 50,
    before: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    include_invalid: bool = False,
) -> pa.Table:
    """``timeline`` as an Arrow table with the cache's column types (reactions a MAP)."""
    params = _page_params(cache, room, limit, before, since_ms, until_ms, include_invalid)
    if params is None:
        params = {
            "room": room,
            "include_invalid": include_invalid,
            "since": since_ms,
            "until": until_ms,
            "limit": limit,
            "high": 0,
            "low": 0,
        }
    table = _widening(
        params, limit, lambda p: cache.arrow(PAGE, p), lambda t: t.num_rows
    )
    return table.take(list(range(table.num_rows - 1, -1, -1)))


def _thread_query(cache: Cache, event_id: str) -> tuple[str, dict[str, Any], str, bool]:
    """(SQL, params, target event id, in a thread) of the thread containing ``event_id``."""
    room = _event_room(event_id)
    target = event_id
    found = _find_item(cache, room, target)
    if found is None:  # an edit, reaction or redaction: the thread of what it acts on
        related = cache.one(RELATION_TARGET, [room, event_id])
        if related is not None:
            target = str(related[0])
            found = _find_item(cache, room, target)
    if found is None:
        raise BadIdentifier(f"no timeline item {event_id!r} in the cache")
    seq, thread_seq = found[0], found[4]
    if thread_seq is None:
        return SINGLE, {"seq": seq}, target, False
    return THREAD, {"room": room, "thread_seq": thread_seq}, target, True


def thread(cache: Cache, event_id: str) -> dict[str, Any]:
    """The whole thread containing ``event_id``: its root and every event with its depth."""
    sql, params, target, threaded = _thread_query(cache, event_id)
    events = _rows(cache, sql, params, (*ITEM_COLUMNS, "depth"))
    root = target
    for item in events:
        if not threaded or item["depth"] == 0:
            root = item["event_id"]
    return {"root": root, "events": events}


def thread_arrow(cache: Cache, event_id: str) -> pa.Table:
    """``thread``'s events as an Arrow table, root first, with ``depth``."""
    sql, params, _target, _threaded = _thread_query(cache, event_id)
    return cache.arrow(sql, params)


# Rooms known from events or metadata, with what `rooms` shows of each; events whose trust
# is invalid are not counted (they are no events of the room).
ROOMS = """
SELECT r.room_id, m.name, count(e.event_hash) AS events, count(DISTINCT e.sender_id) AS senders,
       max(e.timestamp_ms) AS last_timestamp_ms
FROM (SELECT room_id FROM event_rows UNION SELECT room_id FROM room_meta) r
LEFT JOIN room_meta m ON m.room_id = r.room_id
LEFT JOIN events e ON e.room_id = r.room_id AND e.trust <> 'invalid'
GROUP BY r.room_id, m.name ORDER BY r.room_id
"""
MEMBERS = """
SELECT room_id, sender_id, membership, displayname, changed_by, since_ms, event_id, trust
FROM members WHERE room_id = $room
ORDER BY sender_id
"""


def rooms(cache: Cache) -> list[dict[str, Any]]:
    """Every room with its name, counts and last activity (CLI.md ``rooms --json``)."""
    return [
        {"room_id": r[0], "name": r[1], "events": r[2], "senders": r[3], "last_timestamp_ms": r[4]}
        for r in cache.rows(ROOMS)
    ]


def members(cache: Cache, room: str) -> list[dict[str, Any]]:
    """The room's members as their latest member event left them, by sender id."""
    return cache.records(MEMBERS, {"room": room})

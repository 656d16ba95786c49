"""The timeline refresh: ``timeline_rows``, PROTOCOL.md §6 state, kept in step with sync.

    event_rows + key decisions ──refresh(room)──▶ timeline_rows ──version──▶ search index

A room is recomputed whole, set-based in SQL (threads with Arrow, ``timeline.threads``),
or only at its end by the append path (``timeline.append``), whenever it gains events or its key
decisions change. Rows whose content changed get the refresh's ``version``, so the search
index (and any other follower) catches up by reading ``version > its watermark``.

Freshness is checked on every open (``ensure_fresh``): the highest ``event_rows.seq``, the
row count and a fingerprint of the key decisions are compared with what the rows were
computed from. A crash between sync and this refresh, or a ``cache rebuild``, is healed by
the next command that reads.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bucketchat.cache import Cache, open_cache
from bucketchat.projections.timeline.sql import EDITS, ITEM_STATE, REACTIONS, REDACTED, TRUSTED
from bucketchat.projections.timeline.threads import threads_table
from bucketchat.timeutil import utc_now

META_SEQ = "query.seq"
META_ROWS = "query.rows"
META_KEYS = "query.keys"
META_VERSION = "query.version"
META_EPOCH = "query.epoch"
META_LAYOUT = "query.layout"
META_APPENDED = "query.appended."  # + room: rows the append path rewrote since the last whole
APPEND_RECLUSTER = 5_000  # rows appended out of place before the room is rewritten in order
LAYOUT = "3"  # bump when rows need recomputing after a migration (2: position, 3: event_state)

EVENT_WATERMARK = "SELECT coalesce(max(seq), 0), count(*) FROM event_rows"
ROWS_UP_TO = "SELECT count(*) FROM event_rows WHERE seq <= ?"
ROOMS_SINCE = "SELECT DISTINCT room_id FROM event_rows WHERE seq > ?"
ALL_ROOMS = "SELECT DISTINCT room_id FROM event_rows"
KEY_LINES = """
SELECT room_id, 'k|' || sender_id || '|' || public_key || '|' || status || '|'
       || coalesce(trust, '') || '|' || coalesce(revoked_after_ms::VARCHAR, '') AS line
FROM key_state
UNION ALL
SELECT room_id, 'i|' || event_hash FROM invalid_member_events
"""
ALL_KEYS_FINGERPRINT = f"""
SELECT coalesce(md5(string_agg(room_id || '|' || line, ',' ORDER BY room_id, line)), '')
FROM ({KEY_LINES})
"""  # noqa: S608 - a constant
ROOM_KEY_FINGERPRINTS = f"""
SELECT room_id, md5(string_agg(line, ',' ORDER BY line)) FROM ({KEY_LINES}) GROUP BY room_id
"""  # noqa: S608 - a constant
STORED_ROOM_FINGERPRINTS = "SELECT room_id, key_fingerprint FROM timeline_rooms"

# Both kinds of link of the rooms being refreshed in one join (relations, and the parents
# of replies), resolved as RESOLVE does: each source names one id, so one pass over the
# room's events as targets serves both. Thread links are the rows whose source and target
# are items; the rest are what RELATIONS holds on the append path.
LINKS = f"""
CREATE OR REPLACE TEMP TABLE q_rel AS
WITH candidates AS MATERIALIZED (
    SELECT r.seq AS src, t.seq AS target, t.sender_id AS target_sender,
           t.type AS target_type, t.event_id AS target_id, r.type AS src_type,
           r.sender_id AS src_sender, r.timestamp_ms, r.event_id AS src_id,
           r.event_hash AS src_hash, r.body AS src_body, r.msgtype AS src_msgtype,
           r.reaction_key, t.sender_id = r.sender_id AS own
    FROM ({TRUSTED.format(
        columns=", event_id, type, reaction_key, "
        "CASE WHEN type = 'm.room.edit' THEN body END AS body, "
        "CASE WHEN type = 'm.room.edit' THEN msgtype END AS msgtype, "
        "CASE WHEN type IN ('m.room.message', 'm.room.member') THEN parent_event_id "
        "ELSE relates_to END AS ref",
        where="AND content_problem IS NULL "
        "AND (type IN ('m.room.edit', 'm.room.redaction', 'm.room.reaction') "
        "OR (type IN ('m.room.message', 'm.room.member') AND parent_event_id IS NOT NULL))",
    )}) r
    JOIN ({TRUSTED.format(columns=", event_id, type", where="AND content_problem IS NULL")}) t
      ON t.room_id = r.room_id AND t.event_id = r.ref AND t.trust <> 'invalid'
    WHERE r.trust <> 'invalid'
),
-- RESOLVE's QUALIFY as a count per source: a window over every candidate, payload and
-- all, cost most of this statement, where nearly every source has exactly one.
counted AS (
    SELECT src, count(*) AS candidates, count(*) FILTER (WHERE own) AS own_candidates
    FROM candidates GROUP BY src
)
SELECT c.* EXCLUDE (own) FROM candidates c JOIN counted n ON n.src = c.src
WHERE n.candidates = 1 OR (c.own AND n.own_candidates = 1)
"""  # noqa: S608 - built from constants

ROW_COLUMNS = (
    "seq, room_id, event_id, event_hash, timestamp_ms, sender_id, type, msgtype, body, "
    "original_body, edited, edit_event_id, redacted, reactions, parent_event_id, thread_root, "
    "thread_seq, depth, reply_count, membership, displayname, trust"
)
# What the search index reads of the rows being replaced: ``version`` tells it what to
# re-index, so only what it indexes counts (comparing every column, reactions included,
# costs four times as much on a large room). Empty on a full refresh.
OLD_ROWS = """
CREATE OR REPLACE TEMP TABLE q_old AS
SELECT seq, body, trust, redacted, thread_root IS NULL AS unthreaded, version
FROM timeline_rows WHERE room_id IN (SELECT room_id FROM q_rooms)
"""
DELETE_ROOMS = "DELETE FROM timeline_rows WHERE room_id IN (SELECT room_id FROM q_rooms)"
DELETE_STATE = "DELETE FROM event_state WHERE room_id IN (SELECT room_id FROM q_rooms)"
# Each item's place in its room's timeline order, from the narrow sort keys alone: a
# window in INSERT_ROWS materialised and sorted every wide column once more before its
# ORDER BY sorted them again.
POSITIONS = """
CREATE OR REPLACE TEMP TABLE q_pos AS
SELECT seq,
       row_number() OVER (PARTITION BY room_id ORDER BY timestamp_ms, event_id, event_hash)
           AS position
FROM event_rows
WHERE room_id IN (SELECT room_id FROM q_rooms)
  AND type IN ('m.room.message', 'm.room.member') AND content_problem IS NULL
"""
# Straight from event_rows into the table: the rows are wide and written once, and every
# temp table of them (spilled under the writer's memory limit) cost more than the query.
INSERT_ROWS = f"""
INSERT INTO timeline_rows ({ROW_COLUMNS}, version, position)
SELECT {", ".join("n." + column.strip() for column in ROW_COLUMNS.split(","))},
       CASE WHEN o.seq IS NOT NULL
             AND o.body IS NOT DISTINCT FROM n.body AND o.trust = n.trust
             AND o.redacted = n.redacted AND o.unthreaded = (n.thread_root IS NULL)
            THEN o.version ELSE $version END,
       p.position
FROM (
    SELECT {ITEM_STATE}
    FROM ({TRUSTED.format(
        columns=", event_id, type, msgtype, body, parent_event_id, membership, "
        "CASE WHEN type = 'm.room.member' "
        "THEN json_extract_string(content, '$.displayname') END AS displayname",
        where="AND type IN ('m.room.message', 'm.room.member') AND content_problem IS NULL",
    )}) i
    LEFT JOIN q_redacted red ON red.seq = i.seq
    LEFT JOIN q_edit ed ON ed.seq = i.seq
    LEFT JOIN q_react re ON re.seq = i.seq
    LEFT JOIN q_threads th ON th.seq = i.seq
) n
JOIN q_pos p ON p.seq = n.seq
LEFT JOIN q_old o ON o.seq = n.seq
ORDER BY n.room_id, p.position
"""  # noqa: S608 - built from constants
INSERT_STATE = f"""
INSERT INTO event_state (room_id, seq, trust, redacted)
SELECT e.room_id, e.seq, e.trust,
       e.seq IN (SELECT seq FROM q_redacted)
       OR e.seq IN (SELECT src FROM q_rel
                    WHERE src_type = 'm.room.edit' AND src_sender = target_sender
                      AND target IN (SELECT seq FROM q_redacted))
FROM ({TRUSTED.format(columns="", where="")}) e
ORDER BY e.room_id, e.seq
"""  # noqa: S608 - built from constants
ROOM_COUNTS = """
SELECT room_id, count(*), count(*) FILTER (WHERE version = $version) FROM timeline_rows
WHERE room_id IN (SELECT room_id FROM q_rooms) GROUP BY room_id
"""
DROP_TEMPS = (
    "DROP TABLE IF EXISTS q_rel",
    "DROP TABLE IF EXISTS q_redacted",
    "DROP TABLE IF EXISTS q_edit",
    "DROP TABLE IF EXISTS q_react",
    "DROP TABLE IF EXISTS q_old",
    "DROP TABLE IF EXISTS q_pos",
)
UPSERT_ROOMS = """
INSERT OR REPLACE INTO timeline_rooms (room_id, key_fingerprint, refreshed_at, items)
SELECT room_id, key_fingerprint, $now, items FROM q_fingerprints
"""

@dataclass
class RefreshResult:
    rooms: list[str]
    rows_changed: int
    version: int
    full: bool


def _meta_int(cache: Cache, key: str) -> int | None:
    value = cache.meta(key)
    return None if value is None else int(value)


def is_fresh(cache: Cache) -> bool:
    """True when ``timeline_rows`` reflect every stored event and the current key decisions."""
    row = cache.one(EVENT_WATERMARK)
    max_seq, count = (int(row[0]), int(row[1])) if row else (0, 0)
    if _meta_int(cache, META_SEQ) != max_seq or _meta_int(cache, META_ROWS) != count:
        return False
    if cache.meta(META_LAYOUT) != LAYOUT:
        return False
    keys = cache.one(ALL_KEYS_FINGERPRINT)
    return cache.meta(META_KEYS) == (keys[0] if keys else "")


def refresh(cache: Cache, *, full: bool = False) -> RefreshResult:
    """Bring ``timeline_rows`` up to date, recomputing only rooms that changed."""
    row = cache.one(EVENT_WATERMARK)
    max_seq, count = (int(row[0]), int(row[1])) if row else (0, 0)
    seen_seq = _meta_int(cache, META_SEQ)
    seen_rows = _meta_int(cache, META_ROWS)
    version = (_meta_int(cache, META_VERSION) or 0) + 1
    if cache.meta(META_EPOCH) is None or seen_seq is None or seen_rows is None:
        full = True
    if cache.meta(META_LAYOUT) != LAYOUT:
        full = True
    elif not full:
        kept = cache.one(ROWS_UP_TO, [seen_seq])
        if kept is None or int(kept[0]) != seen_rows:
            full = True  # events vanished (cache rebuild): start over
    fingerprints = dict(cache.rows(ROOM_KEY_FINGERPRINTS))
    if full:
        rooms = {r[0] for r in cache.rows(ALL_ROOMS)}
    else:
        rooms = {r[0] for r in cache.rows(ROOMS_SINCE, [seen_seq])}
        stored = dict(cache.rows(STORED_ROOM_FINGERPRINTS))
        for room_id in set(stored) | set(fingerprints):
            if stored.get(room_id, "") != (fingerprints.get(room_id) or ""):
                rooms.add(room_id)
    keys = cache.one(ALL_KEYS_FINGERPRINT)
    if not rooms and not full:
        if cache.meta(META_KEYS) != (keys[0] if keys else "") or seen_seq != max_seq:
            with cache.transaction():
                cache.set_meta(META_SEQ, str(max_seq))
                cache.set_meta(META_ROWS, str(count))
                cache.set_meta(META_KEYS, keys[0] if keys else "")
        return RefreshResult([], 0, version - 1, False)
    changed = 0
    with cache.transaction():
        if full:
            cache.execute("DELETE FROM timeline_rows")
            cache.execute("DELETE FROM event_state")
            cache.execute("DELETE FROM timeline_rooms")
            cache.set_meta(META_EPOCH, uuid.uuid4().hex)
            cache.set_meta(META_LAYOUT, LAYOUT)
        if rooms and not full:
            rooms_whole = set()
            stored = dict(cache.rows(STORED_ROOM_FINGERPRINTS))
            for room_id in sorted(rooms):
                appended = _append(cache, room_id, seen_seq, version, stored, fingerprints)
                if appended is None:
                    rooms_whole.add(room_id)
                else:
                    changed += appended
        else:
            rooms_whole = rooms
        if rooms_whole:
            changed += _refresh_rooms(cache, sorted(rooms_whole), version, fingerprints)
            for room_id in rooms_whole:
                cache.set_meta(META_APPENDED + room_id, "0")
        cache.set_meta(META_SEQ, str(max_seq))
        cache.set_meta(META_ROWS, str(count))
        cache.set_meta(META_KEYS, keys[0] if keys else "")
        cache.set_meta(META_VERSION, str(version))
    return RefreshResult(sorted(rooms), changed, version, full)


def _append(
    cache: Cache,
    room: str,
    seen_seq: int | None,
    version: int,
    stored: dict[str, str],
    fingerprints: dict[str, str],
) -> int | None:
    """The append path for a room whose key decisions did not change (timeline.append), or
    None to recompute it whole; now and then the whole room anyway, to re-cluster it."""
    if seen_seq is None or room not in stored or stored[room] != (fingerprints.get(room) or ""):
        return None
    appended = _meta_int(cache, META_APPENDED + room) or 0
    found = cache.one("SELECT items FROM timeline_rooms WHERE room_id = ?", [room])
    if found is None or appended > max(APPEND_RECLUSTER, int(found[0] or 0) // 10):
        return None
    from bucketchat.projections.timeline.append import append_room

    changed = append_room(cache, room, seen_seq, version)
    if changed is not None:
        cache.set_meta(META_APPENDED + room, str(appended + changed))
    return changed


def _refresh_rooms(
    cache: Cache, rooms: list[str], version: int, fingerprints: dict[str, str]
) -> int:
    import pyarrow as pa

    cache.register("q_rooms", pa.table({"room_id": pa.array(rooms, type=pa.string())}))
    try:
        cache.execute(LINKS)
        cache.execute(REDACTED)
        cache.execute(EDITS)
        cache.execute(REACTIONS)
        cache.execute(POSITIONS)
        cache.execute(OLD_ROWS)
        cache.execute(DELETE_ROOMS)
        cache.register("q_threads", threads_table(cache))
        try:
            cache.execute(INSERT_ROWS, {"version": version})
        finally:
            cache.unregister("q_threads")
        cache.execute(DELETE_STATE)
        cache.execute(INSERT_STATE)
        counts = {
            str(room): (int(items), int(changed))
            for room, items, changed in cache.rows(ROOM_COUNTS, {"version": version})
        }
        prints = pa.table(
            {
                "room_id": pa.array(rooms, type=pa.string()),
                "key_fingerprint": pa.array(
                    [fingerprints.get(room) or "" for room in rooms], type=pa.string()
                ),
                "items": pa.array(
                    [counts.get(room, (0, 0))[0] for room in rooms], type=pa.int64()
                ),
            }
        )
        cache.register("q_fingerprints", prints)
        try:
            cache.execute(UPSERT_ROOMS, {"now": utc_now()})
        finally:
            cache.unregister("q_fingerprints")
    finally:
        cache.unregister("q_rooms")
        for statement in DROP_TEMPS:
            cache.execute(statement)
    return sum(changed for _, changed in counts.values())


def ensure_fresh(path: Path, *, wait_seconds: float | None = None) -> None:
    """Refresh the timeline rows of the cache at ``path`` if they lag behind.

    Opens the cache read-only to check (cheap), and for writing only when there is work.
    """
    kwargs: dict[str, Any] = {} if wait_seconds is None else {"wait_seconds": wait_seconds}
    with open_cache(path, read_only=True, **kwargs) as cache:
        if is_fresh(cache):
            return
    with open_cache(path, **kwargs) as cache:
        if not is_fresh(cache):
            refresh(cache)


def open_fresh(path: Path) -> Cache:
    """The cache at ``path`` opened read-only, its timeline rows caught up first.

    One open when nothing lags (the common case: sync already refreshed); otherwise the
    cache is opened for writing just long enough to refresh.
    """
    cache = open_cache(path, read_only=True)
    try:
        if is_fresh(cache):
            return cache
    except BaseException:
        cache.close()
        raise
    cache.close()
    ensure_fresh(path)
    cache = open_cache(path, read_only=True)
    return cache

"""The materialised timeline (``timeline_rows``): PROTOCOL.md §6 state, kept in step with sync.

    event_rows + key decisions ──refresh(room)──▶ timeline_rows ──version──▶ search index

A room is recomputed whole, set-based in SQL (threads in Python: a parent walk with loop
detection is clearer there than in a recursive CTE), whenever it gains events or its key
decisions change. Rows whose content changed get the refresh's ``version``, so the search
index (and any other follower) catches up by reading ``version > its watermark``.

Freshness is checked on every open (``ensure_fresh``): the highest ``event_rows.seq``, the
row count and a fingerprint of the key decisions are compared with what the rows were
computed from. A crash between sync and this refresh, or a ``cache rebuild``, is healed by
the next command that reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.timeutil import utc_now

if TYPE_CHECKING:
    from bucketchat.cache import Cache

ITEM_TYPES = ("m.room.message", "m.room.member")

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

# The events view's trust verdict (migrations/0001_initial.sql) on event_rows itself, for
# the rooms being refreshed. Joining the view back onto event_rows by hash and signature
# (and casting every content to JSON on the way) cost more than all the rest it fed.
TRUSTED = """
SELECT e.*,
       CASE
           WHEN im.event_hash IS NOT NULL THEN 'invalid'
           WHEN k.trust IS NOT NULL
                AND (k.revoked_after_ms IS NULL OR e.timestamp_ms <= k.revoked_after_ms)
               THEN k.trust
           WHEN s.sender_id IS NOT NULL THEN 'invalid'
           ELSE 'unverified'
       END AS trust
FROM (SELECT seq, room_id, event_hash, sender_id, signer_key, timestamp_ms{columns}
      FROM event_rows
      WHERE room_id IN (SELECT room_id FROM q_rooms) {where}) e
LEFT JOIN invalid_member_events im
       ON im.room_id = e.room_id AND im.event_hash = e.event_hash
LEFT JOIN key_state k
       ON k.room_id = e.room_id AND k.sender_id = e.sender_id
      AND k.public_key = e.signer_key AND k.status = 'accepted'
LEFT JOIN (SELECT DISTINCT room_id, sender_id FROM key_state WHERE status = 'accepted') s
       ON s.room_id = e.room_id AND s.sender_id = e.sender_id
"""

# §6: a relation resolves within the room; an id naming two events resolves, for one of
# their own senders, to that sender's event, for anyone else to nothing.
RESOLVE = """
SELECT r.seq AS src, t.seq AS target, t.sender_id AS target_sender, t.type AS target_type
FROM q_ev r JOIN q_ev t ON t.room_id = r.room_id AND t.event_id = r.{field} AND t.valid
WHERE r.valid AND {where}
QUALIFY count(*) OVER (PARTITION BY r.seq) = 1
     OR (t.sender_id = r.sender_id
         AND sum((t.sender_id = r.sender_id)::INTEGER) OVER (PARTITION BY r.seq) = 1)
"""
RELATIONS = (
    "CREATE OR REPLACE TEMP TABLE q_rel AS "
    "SELECT x.*, r.type AS src_type, r.sender_id AS src_sender, r.timestamp_ms, "
    "r.event_id AS src_id, r.event_hash AS src_hash, r.body AS src_body, "
    "r.msgtype AS src_msgtype, r.reaction_key "
    "FROM ("
    + RESOLVE.format(
        field="relates_to",
        where="r.type IN ('m.room.edit', 'm.room.redaction', 'm.room.reaction')",
    )
    + ") x JOIN q_ev r ON r.seq = x.src"
)
_PARENT_LINKS = RESOLVE.format(
    field="parent_event_id",
    where="r.type IN ('m.room.message', 'm.room.member') AND r.parent_event_id IS NOT NULL",
)
PARENTS = f"""
SELECT src, target FROM ({_PARENT_LINKS})
WHERE target_type IN ('m.room.message', 'm.room.member')
"""  # noqa: S608 - built from constants
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
THREAD_LINKS = """
SELECT src, target, target_id FROM q_rel
WHERE src_type IN ('m.room.message', 'm.room.member')
  AND target_type IN ('m.room.message', 'm.room.member')
"""
REDACTED = """
CREATE OR REPLACE TEMP TABLE q_redacted AS
SELECT DISTINCT target AS seq FROM q_rel
WHERE src_type = 'm.room.redaction' AND src_sender = target_sender
"""
EDITS = """
CREATE OR REPLACE TEMP TABLE q_edit AS
SELECT target AS seq,
       arg_max(src_body, (timestamp_ms, src_id, src_hash)) AS body,
       arg_max(src_msgtype, (timestamp_ms, src_id, src_hash)) AS msgtype,
       arg_max(src_id, (timestamp_ms, src_id, src_hash)) AS edit_event_id
FROM q_rel
WHERE src_type = 'm.room.edit' AND src_sender = target_sender
  AND target_type = 'm.room.message' AND src_body IS NOT NULL
  AND src NOT IN (SELECT seq FROM q_redacted)
GROUP BY target
"""
# Keys are distinct per target, so sorting the (key, count) pairs sorts by key; an
# ordered aggregate cost three times as much.
REACTIONS = """
CREATE OR REPLACE TEMP TABLE q_react AS
SELECT target AS seq,
       map_from_entries(list_sort(list((reaction_key, senders)))) AS reactions
FROM (SELECT target, reaction_key, count(DISTINCT src_sender)::INTEGER AS senders
      FROM q_rel
      WHERE src_type = 'm.room.reaction' AND reaction_key IS NOT NULL
        AND src NOT IN (SELECT seq FROM q_redacted)
      GROUP BY target, reaction_key)
GROUP BY target
"""
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
# An item's row from the item (i) and what acts on it: its redaction (red), latest edit
# (ed), reactions (re) and thread (th). The full refresh and the append path share it.
ITEM_STATE = """
i.seq, i.room_id, i.event_id, i.event_hash, i.timestamp_ms, i.sender_id, i.type,
CASE WHEN red.seq IS NULL THEN coalesce(ed.msgtype, i.msgtype) END AS msgtype,
CASE WHEN red.seq IS NULL THEN coalesce(ed.body, i.body) END AS body,
CASE WHEN red.seq IS NULL THEN i.body END AS original_body,
(red.seq IS NULL AND ed.seq IS NOT NULL) AS edited,
CASE WHEN red.seq IS NULL THEN ed.edit_event_id END AS edit_event_id,
(red.seq IS NOT NULL) AS redacted,
coalesce(re.reactions, MAP {}::MAP(VARCHAR, INTEGER)) AS reactions,
i.parent_event_id, th.thread_root, th.thread_seq, th.depth,
coalesce(th.reply_count, 0)::INTEGER AS reply_count,
i.membership, i.displayname, i.trust
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

# Rooms at or above this share of all events are cheaper to rebuild in one pass together.
FULL_REBUILD_SHARE = 0.5


@dataclass
class RefreshResult:
    rooms: list[str]
    rows_changed: int
    version: int
    full: bool


def thread_roots(
    parents: Iterable[tuple[int, int]],
) -> dict[int, tuple[int, int]]:
    """Map every reply to (root, depth) from (child, parent) links; roots map to themselves.

    A reply whose parent chain loops is its own root with no thread (PROTOCOL.md §6): its
    entry is absent. Roots with at least one reply appear as (root, 0).
    """
    import pyarrow as pa

    parent = dict(parents)
    walk = _walk_threads(
        pa.array(list(parent), type=pa.int64()), pa.array(list(parent.values()), type=pa.int64())
    )
    return {
        int(seq): (int(root), int(depth))
        for seq, root, depth in zip(
            walk["seq"].to_pylist(),
            walk["thread_seq"].to_pylist(),
            walk["depth"].to_pylist(),
            strict=True,
        )
    }


def _walk_threads(children: Any, parents: Any) -> Any:
    """thread_roots on Arrow int64 arrays of distinct children and their parents, as a
    table of (seq, thread_seq, depth, reply_count, link): ``link`` is the index of a link
    whose parent is the row's root. A Python walk over dicts took most of a second at
    150k links.

    Pointer jumping: every node holds an ancestor and its distance, and each round jumps
    to the ancestor's ancestor, so chains of any length settle in log2(nodes) rounds. A
    node ends on a root (a node with no parent) unless its chain loops: a node on or
    leading into a loop ends on a node that has a parent, however many rounds run.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    replies = len(children)
    # Node i is link i's child; the parents that are no link's child come after them.
    tops = pc.unique(pc.filter(parents, pc.invert(pc.is_in(parents, value_set=children))))
    nodes = pa.concat_arrays([children, tops])
    parent_node = pc.cast(pc.index_in(parents, value_set=nodes), pa.int64())
    up = pa.concat_arrays([parent_node, pa.array(range(replies, len(nodes)), type=pa.int64())])
    dist = pa.array([1] * replies + [0] * len(tops), type=pa.int64())
    for _ in range(len(nodes).bit_length() + 1):
        dist = pc.add(dist, pc.take(dist, up))
        jumped = pc.take(up, up)
        if jumped.equals(up):
            break
        up = jumped
    reply_up = up.slice(0, replies)
    resolved = pc.greater_equal(reply_up, replies)  # ends on a node with no parent
    reply_roots = pc.filter(reply_up, resolved)
    counted = pc.value_counts(reply_roots)
    roots = counted.field("values")
    links = pc.index_in(roots, value_set=parent_node)
    threaded = pa.table(
        {
            "seq": pc.filter(children, resolved),
            "thread_seq": pc.take(nodes, reply_roots),
            "depth": pc.cast(pc.filter(dist.slice(0, replies), resolved), pa.int32()),
            "reply_count": pa.array([0] * len(reply_roots), type=pa.int32()),
            "link": pc.take(links, pc.index_in(reply_roots, value_set=roots)),
        }
    )
    root_seqs = pc.take(nodes, roots)
    return pa.concat_tables(
        [
            threaded,
            pa.table(
                {
                    "seq": root_seqs,
                    "thread_seq": root_seqs,
                    "depth": pa.array([0] * len(roots), type=pa.int32()),
                    "reply_count": pc.cast(counted.field("counts"), pa.int32()),
                    "link": links,
                }
            ),
        ]
    )


def _threads_table(cache: Cache) -> Any:
    import pyarrow.compute as pc

    links = cache.con.execute(THREAD_LINKS).to_arrow_table()
    walk = _walk_threads(links["src"].combine_chunks(), links["target"].combine_chunks())
    # a root is always some reply's parent, so a link names it
    root_ids = pc.take(links["target_id"], walk["link"])
    return walk.drop_columns(["link"]).append_column("thread_root", root_ids)


def _meta_int(cache: Cache, key: str) -> int | None:
    value = cache.meta(key)
    return None if value is None else int(value)


def is_fresh(cache: Cache) -> bool:
    """True when ``timeline_rows`` reflect every stored event and the current key decisions."""
    row = cache.con.execute(EVENT_WATERMARK).fetchone()
    max_seq, count = (int(row[0]), int(row[1])) if row else (0, 0)
    if _meta_int(cache, META_SEQ) != max_seq or _meta_int(cache, META_ROWS) != count:
        return False
    if cache.meta(META_LAYOUT) != LAYOUT:
        return False
    keys = cache.con.execute(ALL_KEYS_FINGERPRINT).fetchone()
    return cache.meta(META_KEYS) == (keys[0] if keys else "")


def refresh(cache: Cache, *, full: bool = False) -> RefreshResult:
    """Bring ``timeline_rows`` up to date, recomputing only rooms that changed."""
    con = cache.con
    row = con.execute(EVENT_WATERMARK).fetchone()
    max_seq, count = (int(row[0]), int(row[1])) if row else (0, 0)
    seen_seq = _meta_int(cache, META_SEQ)
    seen_rows = _meta_int(cache, META_ROWS)
    version = (_meta_int(cache, META_VERSION) or 0) + 1
    if cache.meta(META_EPOCH) is None or seen_seq is None or seen_rows is None:
        full = True
    if cache.meta(META_LAYOUT) != LAYOUT:
        full = True
    elif not full:
        kept = con.execute(ROWS_UP_TO, [seen_seq]).fetchone()
        if kept is None or int(kept[0]) != seen_rows:
            full = True  # events vanished (cache rebuild): start over
    fingerprints = dict(con.execute(ROOM_KEY_FINGERPRINTS).fetchall())
    if full:
        rooms = {r[0] for r in con.execute(ALL_ROOMS).fetchall()}
    else:
        rooms = {r[0] for r in con.execute(ROOMS_SINCE, [seen_seq]).fetchall()}
        stored = dict(con.execute(STORED_ROOM_FINGERPRINTS).fetchall())
        for room_id in set(stored) | set(fingerprints):
            if stored.get(room_id, "") != (fingerprints.get(room_id) or ""):
                rooms.add(room_id)
    keys = con.execute(ALL_KEYS_FINGERPRINT).fetchone()
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
            con.execute("DELETE FROM timeline_rows")
            con.execute("DELETE FROM event_state")
            con.execute("DELETE FROM timeline_rooms")
            cache.set_meta(META_EPOCH, uuid.uuid4().hex)
            cache.set_meta(META_LAYOUT, LAYOUT)
        if rooms and not full:
            rooms_whole = set()
            stored = dict(con.execute(STORED_ROOM_FINGERPRINTS).fetchall())
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
    """The append path for a room whose key decisions did not change (query_append), or
    None to recompute it whole; now and then the whole room anyway, to re-cluster it."""
    if seen_seq is None or room not in stored or stored[room] != (fingerprints.get(room) or ""):
        return None
    appended = _meta_int(cache, META_APPENDED + room) or 0
    items = cache.con.execute("SELECT items FROM timeline_rooms WHERE room_id = ?", [room])
    found = items.fetchone()
    if found is None or appended > max(APPEND_RECLUSTER, int(found[0] or 0) // 10):
        return None
    from bucketchat.query_append import append_room

    changed = append_room(cache, room, seen_seq, version)
    if changed is not None:
        cache.set_meta(META_APPENDED + room, str(appended + changed))
    return changed


def _refresh_rooms(
    cache: Cache, rooms: list[str], version: int, fingerprints: dict[str, str]
) -> int:
    import pyarrow as pa

    con = cache.con
    con.register("q_rooms", pa.table({"room_id": pa.array(rooms, type=pa.string())}))
    try:
        con.execute(LINKS)
        con.execute(REDACTED)
        con.execute(EDITS)
        con.execute(REACTIONS)
        con.execute(POSITIONS)
        con.execute(OLD_ROWS)
        con.execute(DELETE_ROOMS)
        con.register("q_threads", _threads_table(cache))
        try:
            con.execute(INSERT_ROWS, {"version": version})
        finally:
            con.unregister("q_threads")
        con.execute(DELETE_STATE)
        con.execute(INSERT_STATE)
        counts = {
            str(room): (int(items), int(changed))
            for room, items, changed in con.execute(ROOM_COUNTS, {"version": version}).fetchall()
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
        con.register("q_fingerprints", prints)
        try:
            con.execute(UPSERT_ROOMS, {"now": utc_now()})
        finally:
            con.unregister("q_fingerprints")
    finally:
        con.unregister("q_rooms")
        for statement in DROP_TEMPS:
            con.execute(statement)
    return sum(changed for _, changed in counts.values())


def ensure_fresh(path: Path, *, wait_seconds: float | None = None) -> None:
    """Refresh the rows (and the search index) of the cache at ``path`` if they lag behind.

    Opens the cache read-only to check (cheap), and for writing only when there is work.
    """
    from bucketchat.cache import open_cache

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
    from bucketchat.cache import open_cache

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

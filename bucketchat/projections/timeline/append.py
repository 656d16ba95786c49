"""The append path of the timeline refresh: a sync that only added events to a room.

A live room grows at its end: new messages come after every item already shown, and new
edits, reactions and redactions act on a handful of items. Recomputing the whole room for
that (timeline.refresh) reads all its events (~1 s at 100k); this path recomputes only what
the new events can touch, with the same SQL over a smaller ``q_ev``:

    A   = ids of the new events, what they relate to, the parents of new replies, and
          the targets of the relations that new redactions redact
    q_ev = events with an id in A (every candidate of those ids: conflicts resolve as in
          the full path), relations of A, and the candidates and redactions of those
          relations (whether an edit or reaction is itself redacted)

Rows of A's items are rewritten in place of the old ones (positions kept), new items are
appended after the room's last position, and thread roots that gained replies are
updated. Anything this reasoning does not cover falls back to the whole room (returns
None): new items that sort before the last one, an id shared with an existing event, a
reply to an event whose own thread is unresolved (an orphan or a loop), or a large batch.
The equivalence with the full path is a test (tests/integration/test_query_rules.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bucketchat.projections.timeline.sql import (
    EDITS,
    ITEM_STATE,
    ITEM_TYPES,
    PARENTS,
    REACTIONS,
    REDACTED,
    RELATIONS,
    TRUSTED,
)

if TYPE_CHECKING:
    from bucketchat.cache import Cache

MAX_NEW_EVENTS = 2_000  # more than this in one room: recompute it whole

NEW_EVENTS = """
SELECT seq, event_id, type, timestamp_ms, event_hash, relates_to, parent_event_id
FROM event_rows WHERE room_id = ? AND seq > ?
ORDER BY timestamp_ms, event_id, event_hash
"""
LAST_ITEM = """
SELECT timestamp_ms, event_id, event_hash, position FROM timeline_rows
WHERE room_id = ? ORDER BY position DESC LIMIT 1
"""
SHARED_IDS = """
SELECT count(*) FROM event_rows
WHERE room_id = ? AND seq <= ?
  AND (event_id IN (SELECT id FROM q_new_ids) OR parent_event_id IN (SELECT id FROM q_new_ids))
"""
REDACTED_RELATIONS = """
SELECT DISTINCT relates_to FROM event_rows
WHERE room_id = ? AND relates_to IS NOT NULL AND event_id IN (SELECT id FROM q_redacts)
"""
PICK = """
CREATE OR REPLACE TEMP TABLE q_pick AS
WITH first AS (
    SELECT seq, event_id, relates_to FROM event_rows
    WHERE room_id = $room
      AND (event_id IN (SELECT id FROM q_ids) OR relates_to IN (SELECT id FROM q_ids))
),
relation_ids AS (
    SELECT DISTINCT event_id AS id FROM first WHERE relates_to IN (SELECT id FROM q_ids)
)
SELECT seq FROM first
UNION
SELECT seq FROM event_rows
WHERE room_id = $room
  AND (event_id IN (SELECT id FROM relation_ids)
       OR (type = 'm.room.redaction' AND relates_to IN (SELECT id FROM relation_ids)))
"""
# event_rows with the events view's trust (timeline.sql.TRUSTED, for the room in q_rooms):
# joining the view back by hash and signature cost five times as much.
LOAD_PICKED = f"""
CREATE OR REPLACE TEMP TABLE q_ev AS
SELECT seq, room_id, event_id, event_hash, timestamp_ms, sender_id, type, parent_event_id,
       trust, content_problem, body, msgtype, relates_to, reaction_key, membership,
       displayname, (trust <> 'invalid' AND content_problem IS NULL) AS valid
FROM ({TRUSTED.format(
    columns=", event_id, type, parent_event_id, content_problem, body, msgtype, "
    "relates_to, reaction_key, membership, "
    "CASE WHEN type = 'm.room.member' "
    "THEN json_extract_string(content, '$.displayname') END AS displayname",
    where="AND seq IN (SELECT seq FROM q_pick)",
)})
"""  # noqa: S608 - built from constants
STORED_THREADS = """
SELECT seq, thread_seq, thread_root, depth, reply_count, parent_event_id, event_id
FROM timeline_rows WHERE seq IN (SELECT seq FROM q_seqs)
"""
# Relation state from q_ev; thread columns from q_threads (stored ones for old items).
ROWS = f"""
CREATE OR REPLACE TEMP TABLE q_new AS
SELECT {ITEM_STATE}, th.position
FROM q_ev i
JOIN q_threads th ON th.seq = i.seq
LEFT JOIN q_redacted red ON red.seq = i.seq
LEFT JOIN q_edit ed ON ed.seq = i.seq
LEFT JOIN q_react re ON re.seq = i.seq
WHERE i.type IN ('m.room.message', 'm.room.member') AND i.content_problem IS NULL
"""  # noqa: S608 - built from constants
OUT = """
CREATE OR REPLACE TEMP TABLE q_out AS
SELECT n.*,
       CASE WHEN o.seq IS NOT NULL
             AND o.body IS NOT DISTINCT FROM n.body AND o.trust = n.trust
             AND o.redacted = n.redacted
             AND (o.thread_root IS NULL) = (n.thread_root IS NULL)
            THEN o.version ELSE $version END AS version
FROM q_new n
LEFT JOIN (SELECT seq, body, trust, redacted, thread_root, version FROM timeline_rows
           WHERE seq IN (SELECT seq FROM q_new)) o ON o.seq = n.seq
"""
DELETE_OLD = "DELETE FROM timeline_rows WHERE seq IN (SELECT seq FROM q_out)"
INSERT_NEW = """
INSERT INTO timeline_rows BY NAME SELECT * FROM q_out ORDER BY position
"""
UPDATE_ROOT = """
UPDATE timeline_rows
SET reply_count = $reply_count, thread_root = event_id, thread_seq = seq, depth = 0,
    version = CASE WHEN thread_root IS NULL THEN $version ELSE version END
WHERE seq = $seq
"""
STATE_SEQS = """
CREATE OR REPLACE TEMP TABLE q_state_seqs AS
SELECT seq FROM q_ev
WHERE event_id IN (SELECT id FROM q_ids) OR relates_to IN (SELECT id FROM q_ids)
"""
DELETE_STATE = "DELETE FROM event_state WHERE seq IN (SELECT seq FROM q_state_seqs)"
INSERT_STATE = """
INSERT INTO event_state (room_id, seq, trust, redacted)
SELECT e.room_id, e.seq, e.trust,
       e.seq IN (SELECT seq FROM q_redacted)
       OR e.seq IN (SELECT src FROM q_rel
                    WHERE src_type = 'm.room.edit' AND src_sender = target_sender
                      AND target IN (SELECT seq FROM q_redacted))
FROM q_ev e WHERE e.seq IN (SELECT seq FROM q_state_seqs)
"""
CHANGED_COUNT = "SELECT count(*) FROM q_out WHERE version = ?"
BUMP_ITEMS = "UPDATE timeline_rooms SET items = items + ? WHERE room_id = ?"
TEMPS = ("q_pick", "q_ev", "q_rel", "q_redacted", "q_edit", "q_react", "q_new", "q_out",
         "q_state_seqs")


def _register(cache: Cache, name: str, column: str, values: list[Any], kind: Any) -> None:
    import pyarrow as pa

    cache.register(name, pa.table({column: pa.array(values, type=kind)}))


def append_room(cache: Cache, room: str, since_seq: int, version: int) -> int | None:
    """Apply the room's events after ``since_seq`` by the append path; rows changed, or
    None when the room must be recomputed whole. Runs inside the caller's transaction."""
    import pyarrow as pa

    new = cache.rows(NEW_EVENTS, [room, since_seq])
    if not new or len(new) > MAX_NEW_EVENTS:
        return None
    last = cache.one(LAST_ITEM, [room])
    if last is None:
        return None
    last_key = (last[0], last[1], last[2])
    new_items = [row for row in new if row[2] in ITEM_TYPES]
    if any((ts, eid, digest) <= last_key for _, eid, _, ts, digest, _, _ in new_items):
        return None  # an item lands inside the timeline: positions shift
    new_ids = [row[1] for row in new]
    if len(set(new_ids)) != len(new_ids):
        return None
    _register(cache, "q_new_ids", "id", new_ids, pa.string())
    try:
        shared = cache.one(SHARED_IDS, [room, since_seq])
    finally:
        cache.unregister("q_new_ids")
    if shared and shared[0]:
        return None  # an id conflict, or an orphan whose parent just arrived

    ids = set(new_ids)
    ids |= {row[5] for row in new if row[5]}
    ids |= {row[6] for row in new_items if row[6]}
    redacts = [row[5] for row in new if row[2] == "m.room.redaction" and row[5]]
    if redacts:
        _register(cache, "q_redacts", "id", redacts, pa.string())
        try:
            ids |= {r[0] for r in cache.rows(REDACTED_RELATIONS, [room])}
        finally:
            cache.unregister("q_redacts")
    _register(cache, "q_ids", "id", sorted(ids), pa.string())
    try:
        cache.execute(PICK, {"room": room})
        _register(cache, "q_rooms", "room_id", [room], pa.string())
        try:
            cache.execute(LOAD_PICKED)
        finally:
            cache.unregister("q_rooms")
        cache.execute(RELATIONS)
        cache.execute(REDACTED)
        cache.execute(EDITS)
        cache.execute(REACTIONS)
        threads = _threads(cache, room, since_seq, int(last[3]), new_items)
        if threads is None:
            return None
        rows, roots = threads
        cache.register("q_threads", pa.Table.from_pylist(rows, schema=_thread_schema()))
        try:
            cache.execute(ROWS)
        finally:
            cache.unregister("q_threads")
        cache.execute(OUT, {"version": version})
        changed_count = int(cache.value(CHANGED_COUNT, [version], 0))
        cache.execute(DELETE_OLD)
        cache.execute(INSERT_NEW)
        for seq, reply_count in roots.items():
            cache.execute(UPDATE_ROOT, {"seq": seq, "reply_count": reply_count,
                                      "version": version})
        cache.execute(STATE_SEQS)
        cache.execute(DELETE_STATE)
        cache.execute(INSERT_STATE)
        added = sum(1 for row in rows if row["seq"] > since_seq)
        cache.execute(BUMP_ITEMS, [added, room])
    finally:
        cache.unregister("q_ids")
        for name in TEMPS:
            cache.execute(f"DROP TABLE IF EXISTS {name}")
    return changed_count + len(roots)


def _thread_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("seq", pa.int64()),
            ("thread_seq", pa.int64()),
            ("thread_root", pa.string()),
            ("depth", pa.int32()),
            ("reply_count", pa.int32()),
            ("position", pa.int64()),
        ]
    )


def _threads(
    cache: Cache, room: str, since_seq: int, last_position: int, new_items: list[Any]
) -> tuple[list[dict[str, Any]], dict[int, int]] | None:
    """Thread columns of every item in q_ev (stored ones for old items), and the new
    reply counts of old roots that gained replies; None to recompute the room whole."""
    import pyarrow as pa

    items = cache.rows(
        "SELECT seq, event_id FROM q_ev WHERE type IN ('m.room.message', 'm.room.member') "
        "AND content_problem IS NULL"
    )
    item_seqs = {int(seq) for seq, _ in items}
    ids = {int(seq): str(eid) for seq, eid in items}
    links = {int(child): int(parent) for child, parent in cache.rows(PARENTS)}
    new_seqs = {int(row[0]) for row in new_items} & item_seqs
    parents_old = {p for c, p in links.items() if c in new_seqs and p <= since_seq}
    wanted = (item_seqs - new_seqs) | parents_old
    _register(cache, "q_seqs", "seq", sorted(wanted), pa.int64())
    try:
        stored = {
            int(r[0]): r for r in cache.rows(STORED_THREADS)
        }  # seq → (seq, thread_seq, thread_root, depth, reply_count, parent, event_id)
    finally:
        cache.unregister("q_seqs")

    placed = _place_new_items(new_seqs, links, stored, ids)
    if placed is None:
        return None
    return _thread_rows(cache, item_seqs, new_seqs, ids, stored, placed, new_items, last_position)


Spot = tuple[int, str, int]  # where an item hangs: root seq, root id, depth


def _place_new_items(
    new_seqs: set[int],
    links: dict[int, int],
    stored: dict[int, Any],
    ids: dict[int, str],
) -> dict[int, Spot | None] | None:
    """Where each new item hangs (None in a loop), or None when a new reply hangs under
    an old event whose own thread is not settled (the whole room decides)."""
    placed: dict[int, Spot | None] = {}

    def place(seq: int) -> Spot | None:
        path: list[int] = []
        node = seq
        while True:
            if node in placed:
                anchor = placed[node]
                break
            if node not in new_seqs:  # an old item: its stored thread
                old = stored.get(node)
                if old is None:
                    return None
                if old[1] is not None:
                    anchor = (int(old[1]), str(old[2]), int(old[3]))
                elif old[5] is not None:
                    raise _Unresolved  # an orphan or loop node: the whole room decides
                else:
                    anchor = (node, str(old[6]), 0)
                break
            if node not in links:  # a new root
                anchor = (node, ids[node], 0)
                break
            if node in path:
                anchor = None
                break
            path.append(node)
            node = links[node]
        for node in reversed(path):
            if anchor is None:
                placed[node] = None
            else:
                anchor = (anchor[0], anchor[1], anchor[2] + 1)
                placed[node] = anchor
        if seq not in placed:  # a new root: it anchors itself
            placed[seq] = anchor
        return placed[seq]

    try:
        for seq in sorted(new_seqs):
            place(seq)
    except _Unresolved:
        return None
    return placed


def _thread_rows(
    cache: Cache,
    item_seqs: set[int],
    new_seqs: set[int],
    ids: dict[int, str],
    stored: dict[int, Any],
    placed: dict[int, Spot | None],
    new_items: list[Any],
    last_position: int,
) -> tuple[list[dict[str, Any]], dict[int, int]] | None:
    """The thread columns of every item, and the reply counts of old roots not among them."""
    import pyarrow as pa

    gained: dict[int, int] = {}
    for seq in new_seqs:
        spot = placed.get(seq)
        if spot is not None and spot[0] != seq:
            gained[spot[0]] = gained.get(spot[0], 0) + 1
    ordered_new = [int(row[0]) for row in new_items if int(row[0]) in new_seqs]
    positions = {seq: last_position + n for n, seq in enumerate(ordered_new, start=1)}
    rows: list[dict[str, Any]] = []
    roots: dict[int, int] = {}
    for seq in item_seqs:
        if seq in new_seqs:
            spot = placed.get(seq)
            is_root = spot is not None and spot[0] == seq and gained.get(seq, 0) > 0
            in_thread = spot is not None and (spot[0] != seq or is_root)
            rows.append(
                {
                    "seq": seq,
                    "thread_seq": spot[0] if in_thread and spot else None,
                    "thread_root": spot[1] if in_thread and spot else None,
                    "depth": spot[2] if in_thread and spot else None,
                    "reply_count": gained.get(seq, 0) if is_root else 0,
                    "position": positions[seq],
                }
            )
        else:
            old = stored[seq]
            rows.append(
                {
                    "seq": seq,
                    "thread_seq": old[1],
                    "thread_root": old[2],
                    "depth": old[3],
                    "reply_count": old[4],
                    "position": None,
                }
            )
    for root, count in gained.items():
        if root in new_seqs:
            continue
        known = stored.get(root)
        if known is None:
            _register(cache, "q_seqs", "seq", [root], pa.int64())
            try:
                known = cache.one(STORED_THREADS)
            finally:
                cache.unregister("q_seqs")
            if known is None:
                return None
        roots[root] = int(known[4] or 0) + count
    # old items rewritten keep their position
    if any(row["position"] is None for row in rows):
        keep = [row["seq"] for row in rows if row["position"] is None]
        _register(cache, "q_seqs", "seq", keep, pa.int64())
        try:
            found_positions = dict(
                cache.rows(
                    "SELECT seq, position FROM timeline_rows WHERE seq IN (SELECT seq FROM q_seqs)"
                )
            )
        finally:
            cache.unregister("q_seqs")
        for row in rows:
            if row["position"] is None:
                row["position"] = found_positions[row["seq"]]
    # a root whose row is rewritten here too: its new count goes in the row itself
    for row in rows:
        if row["seq"] in roots:
            row["reply_count"] = roots[row["seq"]]
            row["thread_seq"] = row["seq"]
            row["thread_root"] = ids[row["seq"]]
            row["depth"] = 0
    return rows, {seq: count for seq, count in roots.items() if seq not in item_seqs}


class _Unresolved(Exception):
    """A new reply hangs under an old event whose own thread is not settled."""

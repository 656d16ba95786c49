"""The SQL the timeline's two paths share: trust on event_rows, relation resolving, and
what an item's row is made of (PROTOCOL.md §6).

``refresh`` recomputes whole rooms with these; ``append`` runs the same statements over a
smaller ``q_ev``, so both paths give the same rows (a test holds them to it).
"""

from __future__ import annotations

ITEM_TYPES = ("m.room.message", "m.room.member")

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

-- The query layer's state (PROTOCOL.md §6): the timeline with edits, redactions, reactions
-- and threads resolved, materialised per room by bucketchat.query_state after each sync.
--
-- Why a table and not only a view: on 1M events a recursive-CTE thread takes ~110 ms and a
-- timeline page ~45 ms on rows in arrival order; a stored thread_root and rows rewritten in
-- (room, time) order bring both to a few ms. The rows are facts derived from event_rows and
-- key_state only, recomputed room by room whenever a room gains events or its key decisions
-- change, so they never disagree with the events for longer than one sync.

CREATE TABLE timeline_rows (
    seq             BIGINT NOT NULL,          -- event_rows.seq of the item
    room_id         VARCHAR NOT NULL,
    event_id        VARCHAR NOT NULL,
    event_hash      VARCHAR NOT NULL,
    timestamp_ms    BIGINT NOT NULL,
    sender_id       VARCHAR NOT NULL,
    type            VARCHAR NOT NULL,         -- m.room.message | m.room.member
    msgtype         VARCHAR,
    body            VARCHAR,                  -- current text: latest valid edit; null when redacted
    original_body   VARCHAR,                  -- as first sent; null when redacted
    edited          BOOLEAN NOT NULL,
    edit_event_id   VARCHAR,                  -- the edit whose text is shown
    redacted        BOOLEAN NOT NULL,
    reactions       MAP(VARCHAR, INTEGER) NOT NULL,
    parent_event_id VARCHAR,
    thread_root     VARCHAR,                  -- the root's event_id, on every event of a thread
    thread_seq      BIGINT,                   -- the root's seq (event ids can clash)
    depth           INTEGER,                  -- in its thread, root 0; null outside threads
    reply_count     INTEGER NOT NULL,         -- on a root: all its descendants
    membership      VARCHAR,
    displayname     VARCHAR,
    trust           VARCHAR NOT NULL,
    version         BIGINT NOT NULL           -- the refresh that last changed this row
);

-- Per room: the key decisions the rows were computed with, to notice when they change.
CREATE TABLE timeline_rooms (
    room_id         VARCHAR PRIMARY KEY,
    key_fingerprint VARCHAR NOT NULL,
    refreshed_at    TIMESTAMP NOT NULL
);

-- Public views (CLI.md "Cache views").

CREATE VIEW timeline AS
SELECT room_id, event_id, event_hash, timestamp_ms, sender_id, type, msgtype, body,
       edited, redacted, reactions, parent_event_id, thread_root, depth, reply_count,
       membership, displayname, trust
FROM timeline_rows;

CREATE VIEW threads AS
SELECT r.room_id, r.event_id AS root_event_id, r.sender_id, r.timestamp_ms, r.body,
       r.reply_count,
       max(t.timestamp_ms) FILTER (WHERE t.seq <> r.seq) AS last_reply_ms,
       count(DISTINCT t.sender_id) AS participants,
       r.trust
FROM timeline_rows r
JOIN timeline_rows t ON t.room_id = r.room_id AND t.thread_seq = r.seq
WHERE r.reply_count > 0
GROUP BY r.room_id, r.event_id, r.sender_id, r.timestamp_ms, r.body, r.reply_count, r.trust;

CREATE VIEW reactions AS
SELECT room_id, event_id, sender_id AS target_sender_id, entry.key AS reaction_key,
       entry.value AS count
FROM (SELECT room_id, event_id, sender_id, unnest(map_entries(reactions)) AS entry
      FROM timeline_rows
      WHERE cardinality(reactions) > 0);

-- Membership state: the latest applicable member event per (room, member), in timeline
-- order. invite/ban/kick name their target in content.user_id; the rest are the sender's.
CREATE VIEW members AS
WITH member_events AS (
    SELECT room_id, event_id, event_hash, timestamp_ms, sender_id, membership, trust,
           json_extract_string(content, '$.displayname') AS displayname,
           CASE WHEN membership IN ('invite', 'ban', 'kick')
                     AND json_extract_string(content, '$.user_id') IS NOT NULL
                THEN json_extract_string(content, '$.user_id')
                ELSE sender_id END AS member_id
    FROM events
    WHERE type = 'm.room.member' AND content_problem IS NULL AND trust <> 'invalid'
)
SELECT room_id, member_id AS sender_id,
       arg_max(membership, (timestamp_ms, event_id, event_hash)) AS membership,
       arg_max(displayname, (displayname IS NOT NULL, timestamp_ms, event_id, event_hash))
           AS displayname,
       arg_max(sender_id, (timestamp_ms, event_id, event_hash)) AS changed_by,
       max(timestamp_ms) AS since_ms,
       arg_max(event_id, (timestamp_ms, event_id, event_hash)) AS event_id,
       arg_max(trust, (timestamp_ms, event_id, event_hash)) AS trust
FROM member_events
GROUP BY room_id, member_id;

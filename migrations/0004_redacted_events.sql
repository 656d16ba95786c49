-- Events whose text must be gone from every output (PROTOCOL.md §6): targets of applied
-- redactions of any type (messages, edits, reactions), and the edits of a redacted message,
-- which carry its text too. Written by bucketchat.query_state with timeline_rows; exports
-- replace these lines by stubs and search never indexes them.

CREATE TABLE redacted_events (
    room_id VARCHAR NOT NULL,
    seq     BIGINT NOT NULL           -- event_rows.seq
);

-- Per stored event, as of its room's last refresh: its trust (the events view's verdict)
-- and whether its text must be gone from every output (PROTOCOL.md §6: the target of an
-- applied redaction of any type, or an edit of a redacted message). Exports join this on
-- the integer seq instead of joining the events view back onto event_rows by hash and
-- signature, which cost most of a million-event Parquet export. It replaces
-- redacted_events, which held the second half of the same fact.

CREATE TABLE event_state (
    room_id  VARCHAR NOT NULL,
    seq      BIGINT NOT NULL,              -- event_rows.seq
    trust    VARCHAR NOT NULL,
    redacted BOOLEAN NOT NULL
);

DROP TABLE redacted_events;

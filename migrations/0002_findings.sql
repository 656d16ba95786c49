-- Findings (PROTOCOL.md §7-8) as one view over the stored facts: every finding names its
-- kind, severity, room, sender, event, file, line, a §2 reason where there is one, and a
-- one-line detail. Being a view, it is always in step with the events, files and keys.

CREATE VIEW chain_events AS
SELECT DISTINCT ON (room_id, sender_id, signer_key, event_hash)
    room_id, sender_id, signer_key, event_hash, prev_event_hash, timestamp_ms, event_id,
    file, line
FROM events
WHERE trust IN ('attested', 'tofu');

CREATE VIEW chain_findings AS
WITH ordered AS (
    SELECT *,
        row_number() OVER (PARTITION BY room_id, sender_id, signer_key, prev_event_hash
                           ORDER BY timestamp_ms, event_id, event_hash) AS nth_successor,
        count(*) OVER (PARTITION BY room_id, sender_id, signer_key) AS chain_events,
        count(prev_event_hash) OVER (PARTITION BY room_id, sender_id, signer_key) AS linked,
        row_number() OVER (PARTITION BY room_id, sender_id, signer_key
                           ORDER BY timestamp_ms, event_id, event_hash) AS position
    FROM chain_events
)
SELECT 'chain_gap' AS kind, c.room_id, c.sender_id, c.signer_key, c.event_id, c.event_hash,
       c.file, c.line,
       'prev_event_hash ' || c.prev_event_hash || ' names no event of this chain' AS detail
FROM ordered c
WHERE c.prev_event_hash IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM chain_events p
                  WHERE p.room_id = c.room_id AND p.sender_id = c.sender_id
                    AND p.signer_key = c.signer_key AND p.event_hash = c.prev_event_hash)
UNION ALL
SELECT 'chain_fork', room_id, sender_id, signer_key, event_id, event_hash, file, line,
       'a second event after ' || prev_event_hash
FROM ordered
WHERE prev_event_hash IS NOT NULL AND nth_successor > 1
UNION ALL
SELECT 'chain_fork', room_id, sender_id, signer_key, event_id, event_hash, file, line,
       'a second first event in a chain whose other events are linked'
FROM ordered
WHERE prev_event_hash IS NULL AND nth_successor > 1 AND linked > 0
UNION ALL
SELECT 'unchained', room_id, sender_id, signer_key, event_id, event_hash, file, line,
       chain_events || ' events with no prev_event_hash (a client without chains)'
FROM ordered
WHERE linked = 0 AND chain_events >= 2 AND position = 1
UNION ALL
SELECT 'timestamp_regression', c.room_id, c.sender_id, c.signer_key, c.event_id,
       c.event_hash, c.file, c.line,
       'timestamp goes back ' || (p.timestamp_ms - c.timestamp_ms) || ' ms from its predecessor'
FROM chain_events c
JOIN chain_events p
  ON p.room_id = c.room_id AND p.sender_id = c.sender_id AND p.signer_key = c.signer_key
 AND p.event_hash = c.prev_event_hash
WHERE c.timestamp_ms < p.timestamp_ms;

CREATE VIEW findings AS
SELECT CASE WHEN reason = 'room_mismatch' THEN 'room_mismatch' ELSE 'malformed' END AS kind,
       'error' AS severity, room_id, sender_id, event_id, file, line,
       CASE WHEN reason = 'room_mismatch' THEN NULL ELSE reason END AS reason, detail
FROM rejected_lines
UNION ALL
SELECT 'duplicate_event', 'info', room_id, sender_id, event_id, file, line, NULL,
       'a second copy of event ' || event_hash
FROM duplicate_lines
UNION ALL
SELECT 'bad_signature', 'error', e.room_id, e.sender_id, e.event_id, e.file, e.line, NULL,
       'no accepted key of the sender verifies this event'
FROM events e
WHERE e.trust = 'invalid'
  AND NOT EXISTS (SELECT 1 FROM key_findings k
                  WHERE k.room_id = e.room_id AND k.event_hash = e.event_hash)
UNION ALL
SELECT 'unknown_key', 'warning', room_id, sender_id, event_id, file, line, NULL,
       'the sender has no known key yet'
FROM events WHERE trust = 'unverified'
UNION ALL
SELECT 'malformed', 'warning', room_id, sender_id, event_id, file, line, 'bad_content',
       content_problem
FROM events WHERE content_problem IS NOT NULL
UNION ALL
SELECT k.kind, CASE WHEN k.kind = 'attestation_invalid' THEN 'warning' ELSE 'error' END,
       k.room_id, k.sender_id, e.event_id, e.file, e.line, NULL, k.detail
FROM key_findings k
LEFT JOIN event_rows e ON e.room_id = k.room_id AND e.event_hash = k.event_hash
UNION ALL
SELECT 'event_id_conflict', 'error', e.room_id, e.sender_id, e.event_id, e.file, e.line, NULL,
       'another event in this room has the same event_id'
FROM events e
WHERE e.trust <> 'invalid'
  AND EXISTS (SELECT 1 FROM events o
              WHERE o.room_id = e.room_id AND o.event_id = e.event_id
                AND o.event_hash <> e.event_hash AND o.trust <> 'invalid')
UNION ALL
SELECT 'future_timestamp', 'warning', e.room_id, e.sender_id, e.event_id, e.file, e.line, NULL,
       'timestamp is ' || ((e.timestamp_ms - epoch_ms(f.first_seen_at)) // 60000)
       || ' minutes after the event was first synced'
FROM event_rows e JOIN files f ON f.path = e.file
WHERE e.timestamp_ms > epoch_ms(f.first_seen_at) + 900000
UNION ALL
SELECT CASE state WHEN 'mutated' THEN 'file_mutated' WHEN 'deleted' THEN 'file_deleted'
       ELSE 'unexpected_file' END,
       CASE state WHEN 'unexpected' THEN 'info' ELSE 'error' END,
       room_id, NULL, NULL, path, NULL, NULL, detail
FROM files WHERE state IN ('mutated', 'deleted', 'unexpected')
UNION ALL
SELECT 'misfiled', 'warning', room_id, NULL, NULL, path, NULL, NULL,
       'the name says ' || name_start_ts || '..' || name_end_ts || ' in ' || name_day
       || '; its lines span ' || lines_start_ts || '..' || lines_end_ts
FROM files
WHERE lines_start_ts IS NOT NULL
  AND (lines_start_ts <> name_start_ts OR lines_end_ts <> name_end_ts
       OR name_day <> strftime(make_timestamp(name_start_ts * 1000), '%Y-%m-%d'))
UNION ALL
SELECT 'unauthorized_relation', 'warning', r.room_id, r.sender_id, r.event_id, r.file, r.line,
       NULL, 'a ' || r.type || ' of another sender''s event ' || r.relates_to
FROM events r
WHERE r.type IN ('m.room.edit', 'm.room.redaction') AND r.trust <> 'invalid'
  AND r.relates_to IS NOT NULL AND r.content_problem IS NULL
  AND EXISTS (SELECT 1 FROM events t WHERE t.room_id = r.room_id AND t.event_id = r.relates_to)
  AND NOT EXISTS (SELECT 1 FROM events t
                  WHERE t.room_id = r.room_id AND t.event_id = r.relates_to
                    AND t.sender_id = r.sender_id)
UNION ALL
SELECT c.kind, CASE WHEN c.kind IN ('chain_gap', 'chain_fork') THEN 'error' ELSE 'warning' END,
       c.room_id, c.sender_id, c.event_id, c.file, c.line, NULL, c.detail
FROM chain_findings c;

-- The findings of some rooms, as fast as their size allows: what a sync reports is the
-- change in the findings of the rooms it touched, counted before and after. The views of
-- 0002/0007 computed every room's chains and event_id conflicts whatever the filter (a
-- materialised CTE and an aggregate take no filter from outside), so counting one room
-- of 100k events in a cache of 1M took ~1.1 s, twice a sync. Both views are now table
-- macros of a room list (NULL: every room) that filter at the source, and the views are
-- those macros over every room: one text for both uses. One room: 1.1 s -> 0.19 s;
-- every room: unchanged (~2.4 s).
--
-- event_id_conflict is found by joining event_rows with itself on (room, event_id) for
-- another hash, instead of an aggregate over all of event_rows: a filter on the room
-- reaches both sides of a join (one room: that branch 0.27 s -> 0.06 s; all: 0.18 s).

CREATE OR REPLACE MACRO chain_findings_in(rooms) AS TABLE
WITH chains AS MATERIALIZED (
    SELECT room_id, sender_id, signer_key, row_number() OVER () AS chain
    FROM (SELECT DISTINCT room_id, sender_id, signer_key FROM events
          WHERE trust IN ('attested', 'tofu')
            AND (rooms IS NULL OR list_contains(rooms, room_id)))
),
links AS MATERIALIZED (
    SELECT k.chain, e.seq, substr(e.event_hash, 1, 12) AS h,
           substr(e.prev_event_hash, 1, 12) AS p, e.timestamp_ms AS ts
    FROM events e JOIN chains k USING (room_id, sender_id, signer_key)
    WHERE e.trust IN ('attested', 'tofu')
      AND (rooms IS NULL OR list_contains(rooms, e.room_id))
),
shape AS MATERIALIZED (
    SELECT chain, count(*) AS events, count(p) AS linked FROM links GROUP BY chain
),
found AS (
    -- a predecessor that is no event of the chain
    SELECT 'chain_gap' AS kind, c.seq, NULL::BIGINT AS amount
    FROM links c ANTI JOIN links q ON q.chain = c.chain AND q.h = c.p
    WHERE c.p IS NOT NULL
    UNION ALL
    -- time going back along a link
    SELECT 'timestamp_regression', c.seq, q.ts - c.ts
    FROM links c JOIN links q ON q.chain = c.chain AND q.h = c.p
    WHERE c.ts < q.ts
    UNION ALL
    -- every event naming a predecessor that another event of the chain names too
    SELECT 'shared_prev', c.seq, NULL FROM links c
    SEMI JOIN (SELECT chain, p FROM links WHERE p IS NOT NULL
               GROUP BY ALL HAVING count(*) > 1) d ON d.chain = c.chain AND d.p = c.p
    UNION ALL
    -- first events of chains with two or more of them
    SELECT CASE WHEN s.linked > 0 THEN 'extra_first' ELSE 'unchained' END, c.seq, s.events
    FROM links c JOIN shape s USING (chain)
    WHERE c.p IS NULL AND s.events - s.linked >= 2
),
ranked AS (
    -- the first in timeline order is the original; every later one is a fork (one per
    -- link), and an unchained chain is reported once, at its first event
    SELECT f.kind, f.amount, e.*,
           row_number() OVER (PARTITION BY f.kind, e.room_id, e.sender_id, e.signer_key,
                                           CASE WHEN f.kind = 'shared_prev'
                                                THEN e.prev_event_hash END
                              ORDER BY e.timestamp_ms, e.event_id, e.event_hash) AS nth
    FROM found f JOIN event_rows e ON e.seq = f.seq
)
SELECT CASE WHEN kind IN ('shared_prev', 'extra_first') THEN 'chain_fork' ELSE kind END
           AS kind,
       room_id, sender_id, signer_key, event_id, event_hash, file, line,
       CASE kind
           WHEN 'chain_gap' THEN 'prev_event_hash ' || prev_event_hash
                                 || ' names no event of this chain'
           WHEN 'timestamp_regression' THEN 'timestamp goes back ' || amount
                                            || ' ms from its predecessor'
           WHEN 'shared_prev' THEN 'a second event after ' || prev_event_hash
           WHEN 'extra_first' THEN 'a second first event in a chain whose other events are linked'
           ELSE amount || ' events with no prev_event_hash (a client without chains)'
       END AS detail
FROM ranked
WHERE (kind IN ('chain_gap', 'timestamp_regression'))
   OR (kind IN ('shared_prev', 'extra_first') AND nth > 1)
   OR (kind = 'unchained' AND nth = 1);

CREATE OR REPLACE VIEW chain_findings AS SELECT * FROM chain_findings_in(NULL::VARCHAR[]);

CREATE OR REPLACE MACRO findings_in(rooms) AS TABLE
SELECT * FROM (
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
    SELECT 'event_id_conflict' AS kind, 'error' AS severity, e.room_id, e.sender_id,
           e.event_id, e.file, e.line, NULL AS reason,
           'another event in this room has the same event_id' AS detail
    FROM events e
    SEMI JOIN event_rows c
           ON c.room_id = e.room_id AND c.event_id = e.event_id AND c.event_hash <> e.event_hash
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
    FROM chain_findings_in(rooms) c
)
WHERE rooms IS NULL OR room_id IS NULL OR list_contains(rooms, room_id);

CREATE OR REPLACE VIEW findings AS SELECT * FROM findings_in(NULL::VARCHAR[]);

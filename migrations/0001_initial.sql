-- The cache's first schema: what sync stores, the outbox, and the public views.
-- Tables hold facts read from the bucket; trust and findings are views over them, so that
-- they can never disagree with the facts and need no recomputation when read.

CREATE TABLE files (
    path            VARCHAR PRIMARY KEY,     -- key relative to the bucket base
    room_id         VARCHAR,
    size            BIGINT NOT NULL,
    version         VARCHAR NOT NULL,        -- local: mtime_ns; clouds: etag or generation
    sha256          VARCHAR,                 -- of the content as ingested
    state           VARCHAR NOT NULL,        -- ingested | pending | unexpected | mutated | deleted
    detail          VARCHAR,                 -- why unexpected / what changed
    name_start_ts   BIGINT,                  -- bounds the file name claims
    name_end_ts     BIGINT,
    name_day        VARCHAR,
    lines_start_ts  BIGINT,                  -- bounds its lines really have (§1)
    lines_end_ts    BIGINT,
    first_seen_at   TIMESTAMP NOT NULL,
    last_seen_at    TIMESTAMP NOT NULL,
    ingested_at     TIMESTAMP
);

CREATE SEQUENCE event_seq;

CREATE TABLE event_rows (
    seq             BIGINT NOT NULL DEFAULT nextval('event_seq'),  -- arrival order, for followers
    event_hash      VARCHAR NOT NULL,
    signature       VARCHAR NOT NULL,
    event_id        VARCHAR NOT NULL,
    room_id         VARCHAR NOT NULL,
    timestamp_ms    BIGINT NOT NULL,
    sender_id       VARCHAR NOT NULL,
    type            VARCHAR NOT NULL,
    parent_event_id VARCHAR,
    prev_event_hash VARCHAR,
    content         VARCHAR NOT NULL,        -- the content object as JSON text
    raw             VARCHAR NOT NULL,        -- the original signed line, for exports
    file            VARCHAR NOT NULL,
    line            INTEGER NOT NULL,
    signer_key      VARCHAR,                 -- the sender's published or pinned key that verifies it
    content_problem VARCHAR,                 -- §6 bad_content: stored, never applied to state
    body            VARCHAR,                 -- message body, or an edit's new body
    msgtype         VARCHAR,
    relates_to      VARCHAR,                 -- replaces / redacts / relates_to
    reaction_key    VARCHAR,
    membership      VARCHAR,
    public_key      VARCHAR,
    attestation_ok  BOOLEAN,                 -- null: the member event carries no attestation
    attestation_detail VARCHAR,
    keys_tried      INTEGER NOT NULL,        -- candidate keys tried; more known: verify again
    ingested_at     TIMESTAMP NOT NULL
);

CREATE TABLE rejected_lines (
    file        VARCHAR NOT NULL,
    line        INTEGER NOT NULL,
    room_id     VARCHAR,
    reason      VARCHAR NOT NULL,            -- a §2 reason code, or room_mismatch
    detail      VARCHAR NOT NULL,
    event_id    VARCHAR,
    sender_id   VARCHAR,
    raw         VARCHAR NOT NULL,            -- at most 4 KiB of the line
    seen_at     TIMESTAMP NOT NULL
);

CREATE TABLE duplicate_lines (
    file        VARCHAR NOT NULL,
    line        INTEGER NOT NULL,
    room_id     VARCHAR NOT NULL,
    event_hash  VARCHAR NOT NULL,
    event_id    VARCHAR NOT NULL,
    sender_id   VARCHAR NOT NULL,
    seen_at     TIMESTAMP NOT NULL
);

-- §5 key decisions per room, rewritten by sync whenever a room's member events or the
-- pinned keys change.
CREATE TABLE key_state (
    room_id          VARCHAR NOT NULL,
    sender_id        VARCHAR NOT NULL,
    public_key       VARCHAR NOT NULL,
    status           VARCHAR NOT NULL,       -- accepted | conflict
    trust            VARCHAR,                -- attested | tofu (accepted keys)
    revoked_after_ms BIGINT,
    pinned           BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE invalid_member_events (
    room_id     VARCHAR NOT NULL,
    event_hash  VARCHAR NOT NULL
);

CREATE TABLE key_findings (
    room_id     VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,            -- key_conflict | weak_key | attestation_invalid
    sender_id   VARCHAR NOT NULL,
    public_key  VARCHAR NOT NULL,
    event_hash  VARCHAR,
    detail      VARCHAR NOT NULL
);

CREATE TABLE outbox (
    outbox_id     BIGINT PRIMARY KEY,
    room_id       VARCHAR NOT NULL,
    sender_id     VARCHAR NOT NULL,
    device_key    VARCHAR NOT NULL,          -- public key of the signing device
    event_id      VARCHAR NOT NULL,
    event_hash    VARCHAR NOT NULL,
    timestamp_ms  BIGINT NOT NULL,
    line          VARCHAR NOT NULL,          -- the signed JSON line, exactly as uploaded
    created_at    TIMESTAMP NOT NULL,
    uploaded_at   TIMESTAMP,
    file          VARCHAR,
    last_error    VARCHAR
);

CREATE TABLE room_meta (
    room_id     VARCHAR PRIMARY KEY,         -- from rooms/<room>/metadata.json: a hint, unsigned
    name        VARCHAR,
    topic       VARCHAR,
    created_at  VARCHAR,
    raw         VARCHAR NOT NULL
);

CREATE TABLE cache_meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- Public views (CLI.md "Cache views"): stable names and columns for `sql` and notebooks.

CREATE VIEW events AS
SELECT
    e.event_id, e.room_id, e.timestamp_ms, e.sender_id, e.type, e.parent_event_id,
    e.prev_event_hash, e.content::JSON AS content, e.signature, e.event_hash,
    CASE
        WHEN im.event_hash IS NOT NULL THEN 'invalid'
        WHEN k.trust IS NOT NULL
             AND (k.revoked_after_ms IS NULL OR e.timestamp_ms <= k.revoked_after_ms)
            THEN k.trust
        WHEN s.sender_id IS NOT NULL THEN 'invalid'
        ELSE 'unverified'
    END AS trust,
    e.signer_key, e.file, e.line, e.content_problem, e.body, e.msgtype, e.relates_to,
    e.reaction_key, e.membership, e.public_key, e.raw, e.seq
FROM event_rows e
LEFT JOIN invalid_member_events im
       ON im.room_id = e.room_id AND im.event_hash = e.event_hash
LEFT JOIN key_state k
       ON k.room_id = e.room_id AND k.sender_id = e.sender_id
      AND k.public_key = e.signer_key AND k.status = 'accepted'
LEFT JOIN (SELECT DISTINCT room_id, sender_id FROM key_state WHERE status = 'accepted') s
       ON s.room_id = e.room_id AND s.sender_id = e.sender_id;

CREATE VIEW keys AS
SELECT room_id, sender_id, public_key, status, trust, revoked_after_ms, pinned
FROM key_state;

"""Storing what a sync read: one transaction per batch of files, and the files' own changes.

A batch commits its files' events, rejected lines, duplicates and ``files`` rows together,
so a crash leaves every file all in or all out. It first re-checks which of its files
another process stored meanwhile, so two syncs started together neither lose nor double
anything. Each batch also clears the stored key fingerprint: if the process dies before
the rooms' keys are decided again, the next sync sees that and decides them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.cache import Cache, open_cache
from bucketchat.errors import BucketError
from bucketchat.protocol.naming import LogFileName
from bucketchat.storage import Bucket, LocalBucket, ObjectInfo
from bucketchat.timeutil import utc_now

if TYPE_CHECKING:
    from bucketchat.sync.reader import FileResult

IN_PROGRESS_SECONDS = 2.0  # an unterminated local file changed this recently is still being written

FILE_STATES = "SELECT path, state FROM files WHERE path IN (SELECT path FROM batch_paths)"
# A batch's lines, each marked as the first copy of its (hash, signature) or not: the first
# copy in key order is the event, every other copy (here or already stored) a duplicate.
MARK_BATCH = """
CREATE OR REPLACE TEMP TABLE batch_marked AS
SELECT b.*,
       row_number() OVER (PARTITION BY b.event_hash, b.signature ORDER BY b.file, b.line) AS copy,
       k.event_hash IS NOT NULL AS known
FROM batch_events b
LEFT JOIN (SELECT DISTINCT event_hash, signature FROM event_rows
           WHERE event_hash IN (SELECT event_hash FROM batch_events)) k
       ON k.event_hash = b.event_hash AND k.signature = b.signature
"""
INSERT_EVENTS = """
INSERT INTO event_rows BY NAME
SELECT * EXCLUDE (copy, known), $now AS ingested_at FROM batch_marked WHERE copy = 1 AND NOT known
"""
INSERT_DUPLICATES = """
INSERT INTO duplicate_lines
SELECT file, line, room_id, event_hash, event_id, sender_id, $now FROM batch_marked
WHERE copy > 1 OR known
"""
BATCH_COUNTS = """
SELECT count(*) FILTER (WHERE copy = 1 AND NOT known),
       count(*) FILTER (WHERE copy > 1 OR known),
       list(DISTINCT room_id) FILTER (WHERE copy = 1 AND NOT known)
FROM batch_marked
"""
DROP_BATCH = "DROP TABLE IF EXISTS batch_marked"
UPSERT_FILE = """
INSERT INTO files (path, room_id, size, version, sha256, state, detail, name_start_ts,
                   name_end_ts, name_day, lines_start_ts, lines_end_ts, first_seen_at,
                   last_seen_at, ingested_at)
VALUES ($path, $room_id, $size, $version, $sha256, $state, $detail, $name_start_ts,
        $name_end_ts, $name_day, $lines_start_ts, $lines_end_ts, $now, $now, $ingested_at)
ON CONFLICT (path) DO UPDATE SET
    size = excluded.size, version = excluded.version, sha256 = excluded.sha256,
    state = excluded.state, detail = excluded.detail,
    lines_start_ts = excluded.lines_start_ts, lines_end_ts = excluded.lines_end_ts,
    last_seen_at = excluded.last_seen_at, ingested_at = excluded.ingested_at
"""
UPSERT_FILES = """
INSERT INTO files (path, room_id, size, version, sha256, state, detail, name_start_ts,
                   name_end_ts, name_day, lines_start_ts, lines_end_ts, first_seen_at,
                   last_seen_at, ingested_at)
SELECT path, room_id, size, version, sha256, state, NULL, name_start_ts, name_end_ts, name_day,
       lines_start_ts, lines_end_ts, $now, $now, CASE WHEN in_progress THEN NULL ELSE $now END
FROM batch_files
ON CONFLICT (path) DO UPDATE SET
    size = excluded.size, version = excluded.version, sha256 = excluded.sha256,
    state = excluded.state, detail = excluded.detail,
    lines_start_ts = excluded.lines_start_ts, lines_end_ts = excluded.lines_end_ts,
    last_seen_at = excluded.last_seen_at, ingested_at = excluded.ingested_at
"""
SET_FILE_STATE = "UPDATE files SET state = ?, detail = ?, last_seen_at = ? WHERE path = ?"
SET_FILE_VERSION = "UPDATE files SET version = ?, size = ?, last_seen_at = ? WHERE path = ?"
INSERT_REJECTED = "INSERT INTO rejected_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
UPSERT_ROOM_META = """
INSERT OR REPLACE INTO room_meta (room_id, name, topic, created_at, raw) VALUES (?, ?, ?, ?, ?)
"""
FORGET_KEY_DECISIONS = "DELETE FROM cache_meta WHERE key = 'keys_fingerprint'"


@dataclass
class SyncReport:
    files_scanned: int = 0
    files_ingested: int = 0
    events_ingested: int = 0
    events_rejected: int = 0
    duplicates: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "files_scanned": self.files_scanned,
            "files_ingested": self.files_ingested,
            "events_ingested": self.events_ingested,
            "events_rejected": self.events_rejected,
            "duplicates": self.duplicates,
            "findings": dict(sorted(self.findings.items())),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Known:
    size: int
    version: str
    sha256: str | None
    state: str


@dataclass
class Plan:
    to_read: list[tuple[ObjectInfo, LogFileName, str]] = field(default_factory=list)  # prior state
    unexpected: list[tuple[ObjectInfo, str]] = field(default_factory=list)
    metadata: list[ObjectInfo] = field(default_factory=list)
    changed: list[tuple[ObjectInfo, Known]] = field(default_factory=list)
    gone: list[tuple[str, Known]] = field(default_factory=list)
    scanned: int = 0

    @property
    def idle(self) -> bool:
        return not (self.to_read or self.unexpected or self.metadata or self.changed or self.gone)


Batch = list[tuple[ObjectInfo, LogFileName, str, "FileResult"]]


class BatchWriter:
    """Stores batches on a thread of its own, so verification never waits for DuckDB.

    DuckDB releases the GIL while it works, so reading, verifying (in worker processes)
    and storing overlap. The queue holds at most two batches: memory stays bounded.
    """

    def __init__(
        self,
        cache_path: Path,
        report: SyncReport,
        touched_rooms: set[str],
        local: bool = True,
    ) -> None:
        import queue
        import threading

        self.cache_path = cache_path
        self.report = report
        self.touched_rooms = touched_rooms
        self.local = local
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="bucketchat-writer", daemon=True)

    def __enter__(self) -> BatchWriter:
        self.thread.start()
        return self

    def _run(self) -> None:
        while (batch := self.queue.get()) is not None:
            if self.failure is not None:
                continue  # drain, so the producer never blocks on a dead writer
            try:
                with open_cache(self.cache_path) as cache, cache.transaction():
                    write_batch(cache, batch, self.report, self.touched_rooms, self.local)
            except BaseException as exc:
                self.failure = exc

    def put(self, batch: Batch) -> None:
        if self.failure is not None:
            raise self.failure
        self.queue.put(batch)

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.failure is not None and exc is None:
            raise self.failure


def write_batch(
    cache: Cache,
    batch: list[tuple[ObjectInfo, LogFileName, str, FileResult]],
    report: SyncReport,
    touched_rooms: set[str],
    local: bool = True,
) -> None:
    import pyarrow as pa

    con = cache.con
    now = utc_now()
    con.execute(FORGET_KEY_DECISIONS)
    con.register("batch_paths", pa.table({"path": [item[0].key for item in batch]}))
    try:
        states = dict(con.execute(FILE_STATES).fetchall())
    finally:
        con.unregister("batch_paths")
    fresh = []
    for obj, name, prior, result in batch:
        if result.error:
            report.errors.append(result.error)
            continue
        if states.get(obj.key) in ("ingested", "mutated"):
            continue  # another sync stored it meanwhile
        # Only local files can be mid-write (the upstream client appends in place);
        # a cloud object appears whole or not at all.
        in_progress = (
            local
            and not result.ends_with_newline
            and isinstance(obj.modified_at, float)
            and time.time() - obj.modified_at < IN_PROGRESS_SECONDS
            and result.size > 0
        )
        fresh.append((obj, name, prior, result, in_progress))

    tables = [
        result.events
        for _, _, _, result, in_progress in fresh
        if not in_progress and result.event_count
    ]
    if tables:
        con.register("batch_events", pa.concat_tables(tables))
        try:
            con.execute(MARK_BATCH)
        finally:
            con.unregister("batch_events")
        con.execute(INSERT_EVENTS, {"now": now})
        con.execute(INSERT_DUPLICATES, {"now": now})
        counts = con.execute(BATCH_COUNTS).fetchone()
        con.execute(DROP_BATCH)
        assert counts is not None
        report.events_ingested += counts[0]
        report.duplicates += counts[1]
        touched_rooms.update(counts[2] or ())

    rejected_rows = []
    for obj, name, _prior, result, in_progress in fresh:
        if in_progress:
            continue
        for rejected in result.rejected:
            rejected_rows.append(
                [
                    obj.key,
                    rejected.line,
                    name.room_id,
                    rejected.reason,
                    rejected.detail,
                    rejected.event_id,
                    rejected.sender_id,
                    rejected.raw,
                    now,
                ]
            )
    if rejected_rows:
        con.executemany(INSERT_REJECTED, rejected_rows)
    report.events_rejected += len(rejected_rows)

    # One statement for the batch's files rows: a parameterised execute per file cost
    # ~4 ms in DuckDB (which also retries `import pandas` for every parameter), which made
    # storing, not downloading, the limit for buckets of many one-event objects.
    files_rows = [
        {
            "path": obj.key,
            "room_id": name.room_id,
            "size": obj.size,
            "version": obj.version,
            "sha256": result.sha256,
            "state": (
                "pending"
                if in_progress
                else ("mutated" if prior == "mutated_pending" else "ingested")
            ),
            "name_start_ts": name.start_ts,
            "name_end_ts": name.end_ts,
            "name_day": name.day,
            # a file still being written has no bounds yet: its lines may grow
            "lines_start_ts": None if in_progress else result.lines_start_ts,
            "lines_end_ts": None if in_progress else result.lines_end_ts,
            "in_progress": in_progress,
        }
        for obj, name, prior, result, in_progress in fresh
    ]
    if files_rows:
        text, number = pa.string(), pa.int64()
        schema = pa.schema(
            [
                *[("path", text), ("room_id", text), ("size", number), ("version", text)],
                *[("sha256", text), ("state", text), ("name_start_ts", number)],
                *[("name_end_ts", number), ("name_day", text), ("lines_start_ts", number)],
                *[("lines_end_ts", number), ("in_progress", pa.bool_())],
            ]
        )
        con.register("batch_files", pa.Table.from_pylist(files_rows, schema=schema))
        try:
            con.execute(UPSERT_FILES, {"now": now})
        finally:
            con.unregister("batch_files")
    report.files_ingested += sum(not row["in_progress"] for row in files_rows)


def record_changes(cache: Cache, bucket: Bucket, plan: Plan) -> None:
    """Files that changed, vanished, or do not belong; room metadata hints."""
    import json

    con = cache.con
    now = utc_now()
    for obj, reason in plan.unexpected:
        parsed_room = obj.key.split("/")[1] if obj.key.count("/") >= 1 else None
        con.execute(
            UPSERT_FILE,
            {
                "path": obj.key,
                "room_id": parsed_room,
                "size": obj.size,
                "version": obj.version,
                "sha256": None,
                "state": "unexpected",
                "detail": reason,
                "name_start_ts": None,
                "name_end_ts": None,
                "name_day": None,
                "lines_start_ts": None,
                "lines_end_ts": None,
                "now": now,
                "ingested_at": None,
            },
        )
    for obj in plan.metadata:
        room_id = obj.key.split("/")[1]
        try:
            raw = bucket.read(obj.key)
            meta = json.loads(raw.decode("utf-8"))
        except (BucketError, ValueError):
            meta, raw = {}, b""
        if not isinstance(meta, dict):
            meta = {}

        def text(field_name: str, meta: dict[str, Any] = meta) -> str | None:
            value = meta.get(field_name)
            return value if isinstance(value, str) else None

        con.execute(
            UPSERT_ROOM_META,
            [
                room_id,
                text("name"),
                text("topic"),
                text("created_at"),
                raw.decode("utf-8", errors="replace"),
            ],
        )
        con.execute(
            UPSERT_FILE,
            {
                "path": obj.key,
                "room_id": room_id,
                "size": obj.size,
                "version": obj.version,
                "sha256": None,
                "state": "metadata",
                "detail": None,
                "name_start_ts": None,
                "name_end_ts": None,
                "name_day": None,
                "lines_start_ts": None,
                "lines_end_ts": None,
                "now": now,
                "ingested_at": now,
            },
        )
    for obj, previous in plan.changed:
        detail = _mutation(bucket, obj, previous)
        if detail is None:
            con.execute(SET_FILE_VERSION, [obj.version, obj.size, now, obj.key])
            if previous.state == "deleted":
                con.execute(SET_FILE_STATE, ["ingested", None, now, obj.key])
        elif previous.state != "mutated":
            con.execute(SET_FILE_STATE, ["mutated", detail, now, obj.key])
    for path, previous in plan.gone:
        if previous.state in ("pending", "mutated_pending"):
            con.execute("DELETE FROM files WHERE path = ?", [path])
        else:
            con.execute(SET_FILE_STATE, ["deleted", "the file is gone from the bucket", now, path])


def _mutation(bucket: Bucket, obj: ObjectInfo, previous: Known) -> str | None:
    """What changed in an ingested file, or None when only its timestamp did."""
    if obj.size != previous.size:
        return f"size changed from {previous.size} to {obj.size} bytes"
    if isinstance(bucket, LocalBucket) or previous.state == "deleted":
        try:
            digest = hashlib.sha256(bucket.read(obj.key)).hexdigest()
        except BucketError:
            return None
        if digest == previous.sha256:
            return None
        return "content changed (sha256 differs)"
    return f"version changed from {previous.version} to {obj.version}"

"""Storing what a sync read: transactions of whole files, and the files' own changes.

A transaction takes batches of read files (up to COMMIT_ROWS events or COMMIT_SECONDS,
and from a cloud up to ``commit_files`` files) and commits their events, rejected lines,
duplicates and ``files`` rows together, so a crash leaves every file all in or all out.
Each batch first re-checks which of its files another process stored meanwhile, so two
syncs started together neither lose nor double anything, and clears the stored key
fingerprint: if the process dies before the rooms' keys are decided again, the next sync
sees that and decides them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from bucketchat.cache import Cache, open_cache
from bucketchat.errors import BucketError
from bucketchat.protocol.naming import LogFileName
from bucketchat.storage import Bucket, LocalBucket, ObjectInfo
from bucketchat.timeutil import utc_now

if TYPE_CHECKING:
    from bucketchat.sync.reader import FileResult
    from bucketchat.sync.report import SyncReport

IN_PROGRESS_SECONDS = 2.0  # an unterminated local file changed this recently is still being written
# DuckDB moves a transaction's rows straight into the table's file when it appended at
# least a row group (122,880 rows); smaller ones go through the write-ahead log and are
# written again at the checkpoint. Storing 1M events took 18.5 s in 50,000-event
# transactions and 6-7 s in ones of 122,880-245,760 (benchmarks/RESULTS.md).
COMMIT_ROWS = 2 * 122_880
# ... but a transaction holds the cache, and readers wait for it only so long
# (cache.connection.DEFAULT_WAIT_SECONDS).
COMMIT_SECONDS = 8.0
# The verify workers keep both cores busy while batches are stored; a second DuckDB thread
# only competes with them (1M events: 59 s against 63 s, the main process's CPU 40 s
# against 48 s).
WRITER_THREADS = 1

FILE_STATES = "SELECT path, state FROM files WHERE path IN (SELECT path FROM batch_paths)"
# A batch's lines that are not new events: every copy of a (hash, signature) after the first
# in key order, and every line whose event is already stored (by an earlier batch, or an
# earlier statement of this transaction). Duplicates are rare, so this set is small, and
# the lines themselves go into event_rows straight from Arrow, untouched. The hash covers
# the room, so matching the room as well changes nothing but lets DuckDB skip the row
# groups of other rooms (files are stored in key order, so by room): with 1M events
# stored, 40 ms a batch instead of 100-200.
_STORED_COPIES = """
SELECT b.file, b.line FROM event_rows e
JOIN batch_events b
  ON e.room_id = b.room_id AND e.event_hash = b.event_hash AND e.signature = b.signature
"""
FIND_DUPLICATES = f"""
CREATE OR REPLACE TEMP TABLE batch_duplicates AS
SELECT file, line FROM (
    SELECT file, line,
           row_number() OVER (PARTITION BY event_hash, signature ORDER BY file, line) AS copy
    FROM batch_events)
WHERE copy > 1
UNION
{_STORED_COPIES}
"""  # noqa: S608 - built from constants
# A batch seldom holds two copies of an event: counting its distinct (hash, signature)
# pairs costs a quarter of numbering every copy (38 against 145 ms for 245,760 events),
# so the numbering runs only when the count says there are copies.
BATCH_HAS_COPIES = """
SELECT (SELECT count(*) FROM batch_events)
     > (SELECT count(*) FROM (SELECT DISTINCT event_hash, signature FROM batch_events))
"""
FIND_STORED_COPIES = f"""
CREATE OR REPLACE TEMP TABLE batch_duplicates AS SELECT DISTINCT * FROM ({_STORED_COPIES})
"""  # noqa: S608 - built from constants
COUNT_DUPLICATES = "SELECT count(*) FROM batch_duplicates"
INSERT_ALL_EVENTS = "INSERT INTO event_rows BY NAME SELECT *, $now AS ingested_at FROM batch_events"
INSERT_NEW_EVENTS = """
INSERT INTO event_rows BY NAME
SELECT b.*, $now AS ingested_at FROM batch_events b
ANTI JOIN batch_duplicates d ON d.file = b.file AND d.line = b.line
"""
INSERT_DUPLICATES = """
INSERT INTO duplicate_lines
SELECT b.file, b.line, b.room_id, b.event_hash, b.event_id, b.sender_id, $now
FROM batch_events b SEMI JOIN batch_duplicates d ON d.file = b.file AND d.line = b.line
"""
DROP_BATCH = "DROP TABLE IF EXISTS batch_duplicates"
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
FORGET_FILE = "DELETE FROM files WHERE path = ?"
GONE = "the file is gone from the bucket"
SET_FILE_VERSION = "UPDATE files SET version = ?, size = ?, last_seen_at = ? WHERE path = ?"
INSERT_REJECTED = "INSERT INTO rejected_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
UPSERT_ROOM_META = """
INSERT OR REPLACE INTO room_meta (room_id, name, topic, created_at, raw) VALUES (?, ?, ?, ?, ?)
"""
FORGET_KEY_DECISIONS = "DELETE FROM cache_meta WHERE key = 'keys_fingerprint'"


class Known(NamedTuple):
    """A file as the files table knows it (a tuple: a re-sync builds one per file)."""

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
        return not (self.to_read or self.file_changes)

    @property
    def file_changes(self) -> bool:
        """Whether files changed, vanished, do not belong, or are room metadata to read."""
        return bool(self.unexpected or self.metadata or self.changed or self.gone)

    @property
    def rooms(self) -> list[str]:
        """The rooms whose findings syncing this plan can change."""
        keys = [obj.key for obj, _, _ in self.to_read]
        keys += [obj.key for obj, _ in self.unexpected]
        keys += [obj.key for obj, _ in self.changed]
        keys += [key for key, _ in self.gone]
        return sorted({room for room in map(key_room, keys) if room is not None})


def key_room(key: str) -> str | None:
    """The room a bucket key lies in (rooms/<room>/…), or None for a key outside one."""
    return key.split("/")[1] if key.count("/") >= 1 else None


Batch = list[tuple[ObjectInfo, LogFileName, str, "FileResult"]]


class BatchWriter:
    """Stores batches on a thread of its own, so verification never waits for DuckDB.

    DuckDB releases the GIL while it works, so reading, verifying (in worker processes)
    and storing overlap. The queue holds at most two batches: memory stays bounded. One
    transaction takes batches until it holds ``commit_files`` files (None: no limit) or
    COMMIT_ROWS events or has been open COMMIT_SECONDS, so a crash leaves every file all
    in or all out. ``last`` runs in the last transaction (opened for it if need be).
    """

    def __init__(
        self,
        cache_path: Path,
        report: SyncReport,
        touched_rooms: set[str],
        local: bool = True,
        *,
        commit_files: int | None = 400,
        last: Callable[[Cache], None] | None = None,
    ) -> None:
        import queue
        import threading

        self.cache_path = cache_path
        self.report = report
        self.touched_rooms = touched_rooms
        self.local = local
        self.commit_files = commit_files
        self.last = last
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="bucketchat-writer", daemon=True)

    def __enter__(self) -> BatchWriter:
        self.thread.start()
        return self

    def _run(self) -> None:
        cache: Cache | None = None
        files = events = 0
        began = 0.0

        def opened() -> Cache:
            nonlocal files, events, began
            if cache is not None:
                return cache
            new = open_cache(self.cache_path)
            new.limit_threads(WRITER_THREADS)
            new.begin()
            files, events, began = 0, 0, time.monotonic()
            return new

        try:
            while (batch := self.queue.get()) is not None:
                if self.failure is not None:
                    continue  # drain, so the producer never blocks on a dead writer
                try:
                    cache = opened()
                    events += write_batch(cache, batch, self.report, self.touched_rooms, self.local)
                    files += len(batch)
                    if (
                        (self.commit_files is not None and files >= self.commit_files)
                        or events >= COMMIT_ROWS
                        or time.monotonic() - began >= COMMIT_SECONDS
                    ):
                        _commit_and_close(cache)
                        cache = None
                except BaseException as exc:
                    self.failure = exc
                    if cache is not None:
                        _roll_back_and_close(cache)
                        cache = None
            if self.failure is None and self.last is not None:
                cache = opened()
                self.last(cache)
            if cache is not None:
                _commit_and_close(cache)
                cache = None
        except BaseException as exc:
            self.failure = self.failure or exc
        finally:
            if cache is not None:
                _roll_back_and_close(cache)

    def put(self, batch: Batch) -> None:
        if self.failure is not None:
            raise self.failure
        self.queue.put(batch)

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.failure is not None and exc is None:
            raise self.failure


def _commit_and_close(cache: Cache) -> None:
    try:
        cache.commit()
    finally:
        cache.close()


def _roll_back_and_close(cache: Cache) -> None:
    try:
        cache.rollback()
    finally:
        cache.close()


Fresh = tuple[ObjectInfo, LogFileName, str, "FileResult", bool]  # … and whether in progress


def write_batch(
    cache: Cache,
    batch: list[tuple[ObjectInfo, LogFileName, str, FileResult]],
    report: SyncReport,
    touched_rooms: set[str],
    local: bool = True,
) -> int:
    """Store one batch of read files into the open transaction; the number of new events."""
    now = utc_now()
    cache.execute(FORGET_KEY_DECISIONS)
    fresh = _fresh_files(cache, batch, report, local)
    stored = _store_events(cache, fresh, report, touched_rooms, now)
    _store_rejected(cache, fresh, report, now)
    _store_file_rows(cache, fresh, report, now)
    return stored


def _fresh_files(
    cache: Cache,
    batch: list[tuple[ObjectInfo, LogFileName, str, FileResult]],
    report: SyncReport,
    local: bool,
) -> list[Fresh]:
    """The batch's files that no other sync stored meanwhile, and which are still being
    written (their lines wait for the next sync)."""
    import pyarrow as pa

    with cache.registered("batch_paths", pa.table({"path": [item[0].key for item in batch]})):
        states = dict(cache.rows(FILE_STATES))
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
    return fresh


def _store_events(
    cache: Cache, fresh: list[Fresh], report: SyncReport, touched_rooms: set[str], now: Any
) -> int:
    """The files' events straight from Arrow, copies aside; the number of new events."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from bucketchat.sync.reader import events_table

    stored_files = [result for *_, result, in_progress in fresh if not in_progress]
    tables = [result.events for result in stored_files if result.events is not None]
    read_here = [(result.key, result.rows) for result in stored_files if result.rows]
    if read_here:
        tables.append(events_table(read_here))
    tables = [table for table in tables if table.num_rows]
    if not tables:
        return 0
    events = pa.concat_tables(tables)
    with cache.registered("batch_events", events):
        copies = cache.value(BATCH_HAS_COPIES)
        cache.execute(FIND_DUPLICATES if copies else FIND_STORED_COPIES)
        duplicates = int(cache.value(COUNT_DUPLICATES, default=0))
        if duplicates:
            cache.execute(INSERT_NEW_EVENTS, {"now": now})
            cache.execute(INSERT_DUPLICATES, {"now": now})
        else:
            cache.execute(INSERT_ALL_EVENTS, {"now": now})
    cache.execute(DROP_BATCH)
    stored = int(events.num_rows) - duplicates
    report.events_ingested += stored
    report.duplicates += duplicates
    touched_rooms.update(pc.unique(events.column("room_id")).to_pylist())
    return stored


def _store_rejected(cache: Cache, fresh: list[Fresh], report: SyncReport, now: Any) -> None:
    rows = [
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
        for obj, name, _prior, result, in_progress in fresh
        if not in_progress
        for rejected in result.rejected
    ]
    if rows:
        cache.executemany(INSERT_REJECTED, rows)
    report.events_rejected += len(rows)


def _store_file_rows(cache: Cache, fresh: list[Fresh], report: SyncReport, now: Any) -> None:
    """One statement for the batch's files rows: a parameterised execute per file cost
    ~4 ms in DuckDB (which also retries `import pandas` for every parameter), which made
    storing, not downloading, the limit for buckets of many one-event objects."""
    import pyarrow as pa

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
        with cache.registered("batch_files", pa.Table.from_pylist(files_rows, schema=schema)):
            cache.execute(UPSERT_FILES, {"now": now})
    report.files_ingested += sum(not row["in_progress"] for row in files_rows)


def record_changes(cache: Cache, bucket: Bucket, plan: Plan) -> None:
    """Files that changed, vanished, or do not belong; room metadata hints."""
    import json

    now = utc_now()
    for obj, reason in plan.unexpected:
        cache.execute(
            UPSERT_FILE,
            {
                "path": obj.key,
                "room_id": key_room(obj.key),
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

        cache.execute(
            UPSERT_ROOM_META,
            [
                room_id,
                text("name"),
                text("topic"),
                text("created_at"),
                raw.decode("utf-8", errors="replace"),
            ],
        )
        cache.execute(
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
            cache.execute(SET_FILE_VERSION, [obj.version, obj.size, now, obj.key])
            if previous.state == "deleted":
                cache.execute(SET_FILE_STATE, ["ingested", None, now, obj.key])
        elif previous.state != "mutated":
            cache.execute(SET_FILE_STATE, ["mutated", detail, now, obj.key])
    for path, previous in plan.gone:
        if previous.state in ("pending", "mutated_pending"):
            cache.execute(FORGET_FILE, [path])
        else:
            cache.execute(SET_FILE_STATE, ["deleted", GONE, now, path])


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

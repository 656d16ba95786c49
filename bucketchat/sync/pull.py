"""Pull: list the bucket, diff against the files table, read and verify what is new, store.

    list → diff (new, changed, gone) → read new files → parse + verify (worker processes)
         → one transaction per batch of files → re-decide keys of touched rooms

Each batch commits its files' events, rejected lines, duplicates and ``files`` rows
together, so a crash leaves every file all-in or all-out and the next sync resumes. The
cache is opened per batch and closed in between, so readers (``log``, ``sql``) and a
second sync get their turn; a batch re-checks which of its files another process has
ingested meanwhile, so two syncs started together neither lose nor double anything.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.cache import Cache, open_cache
from bucketchat.errors import BucketError, BucketNotFound
from bucketchat.protocol.naming import LogFileName, parse_bucket_key
from bucketchat.storage import Bucket, LocalBucket, ObjectInfo
from bucketchat.timeutil import utc_now

if TYPE_CHECKING:
    from bucketchat.sync.keys import AttestationCheck
    from bucketchat.sync.reader import FileResult

Progress = Callable[[int, int, int], None]  # files done, files to read, events so far
Candidates = dict[str, dict[str, list[str]]]  # room → sender → keys; room "" holds pinned keys

IN_PROGRESS_SECONDS = 2.0  # an unterminated local file changed this recently is still being written
POOL_THRESHOLD_BYTES = 2_000_000  # below this, starting worker processes costs more than it saves
BATCH_EVENTS = 50_000
BATCH_FILES = 400
WINDOW_PER_WORKER = 8  # files in flight per worker: enough to ride out a slow batch write

KNOWN_FILES = "SELECT path, size, version, sha256, state FROM files WHERE path LIKE ? ESCAPE '\\'"
FINDING_COUNTS = "SELECT kind, count(*) FROM findings GROUP BY kind"
ANY_EVENT = "SELECT 1 FROM event_rows LIMIT 1"
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
SET_FILE_STATE = "UPDATE files SET state = ?, detail = ?, last_seen_at = ? WHERE path = ?"
SET_FILE_VERSION = "UPDATE files SET version = ?, size = ?, last_seen_at = ? WHERE path = ?"
INSERT_REJECTED = "INSERT INTO rejected_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
UPSERT_ROOM_META = """
INSERT OR REPLACE INTO room_meta (room_id, name, topic, created_at, raw) VALUES (?, ?, ?, ?, ?)
"""
ALL_ROOMS = "SELECT DISTINCT room_id FROM event_rows"
PUBLISHED_KEYS_ALL = """
SELECT DISTINCT room_id, sender_id, public_key FROM event_rows
WHERE type = 'm.room.member' AND public_key IS NOT NULL
"""


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
class _Known:
    size: int
    version: str
    sha256: str | None
    state: str


@dataclass
class _Plan:
    to_read: list[tuple[ObjectInfo, LogFileName, str]] = field(default_factory=list)  # prior state
    unexpected: list[tuple[ObjectInfo, str]] = field(default_factory=list)
    metadata: list[ObjectInfo] = field(default_factory=list)
    changed: list[tuple[ObjectInfo, _Known]] = field(default_factory=list)
    gone: list[tuple[str, _Known]] = field(default_factory=list)
    scanned: int = 0

    @property
    def idle(self) -> bool:
        return not (self.to_read or self.unexpected or self.metadata or self.changed or self.gone)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _plan(listing: Iterable[ObjectInfo], known: dict[str, _Known], prefix: str) -> _Plan:
    plan = _Plan()
    seen: set[str] = set()
    for obj in listing:
        seen.add(obj.key)
        parsed = parse_bucket_key(obj.key)
        previous = known.get(obj.key)
        if parsed == "metadata":
            if previous is None or previous.version != obj.version:
                plan.metadata.append(obj)
            continue
        if isinstance(parsed, str):
            if previous is None:
                plan.unexpected.append((obj, parsed))
            continue
        plan.scanned += 1
        if previous is None or previous.state in ("pending", "mutated_pending"):
            plan.to_read.append((obj, parsed, previous.state if previous else "new"))
        elif (previous.size, previous.version) != (obj.size, obj.version) or previous.state == (
            "deleted"
        ):
            plan.changed.append((obj, previous))
    for path, previous in known.items():
        if (
            path not in seen
            and path.startswith(prefix)
            and previous.state in ("ingested", "mutated", "pending", "mutated_pending")
        ):
            plan.gone.append((path, previous))
    return plan


def pull(
    bucket: Bucket,
    cache_path: Path,
    *,
    room: str | None = None,
    pinned: Mapping[str, list[str]] | None = None,
    check_attestation: AttestationCheck | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> SyncReport:
    """Ingest what is new in the bucket (or one room of it) into the cache."""
    started = time.perf_counter()
    report = SyncReport()
    pinned = dict(pinned or {})
    if check_attestation is None:
        from bucketchat.auth import AttestationVerifier

        check_attestation = AttestationVerifier([])  # no issuer is trusted
    prefix = f"rooms/{room}/" if room else "rooms/"
    try:
        listing = list(bucket.list(prefix))
    except BucketNotFound:
        if room:
            listing = []
        else:
            raise
    with open_cache(cache_path) as cache:
        known = {
            row[0]: _Known(row[1], row[2], row[3], row[4])
            for row in cache.con.execute(KNOWN_FILES, [_like_prefix(prefix)]).fetchall()
        }
        plan = _plan(listing, known, prefix)
        report.files_scanned = plan.scanned
        keys_fingerprint = _fingerprint(pinned, check_attestation)
        keys_changed = cache.meta("keys_fingerprint") != keys_fingerprint
        if plan.idle and not keys_changed:
            report.seconds = time.perf_counter() - started
            return report
        empty = cache.con.execute(ANY_EVENT).fetchone() is None
        findings_before = {} if empty else dict(cache.con.execute(FINDING_COUNTS).fetchall())
        candidates = _published_keys(cache, pinned)

    touched_rooms: set[str] = set()
    with _BatchWriter(cache_path, report, touched_rooms) as writer:
        for batch in _batches(_read_all(bucket, plan, candidates, progress, workers)):
            writer.put(batch)

    with open_cache(cache_path) as cache:
        with cache.transaction():
            _record_changes(cache, bucket, plan)
            rooms = set(touched_rooms)
            if keys_changed:
                rooms |= {row[0] for row in cache.con.execute(ALL_ROOMS).fetchall()}
            from bucketchat.sync.keys import refresh_room_keys

            for room_id in sorted(rooms):
                refresh_room_keys(cache, room_id, pinned, check_attestation)
            cache.set_meta("keys_fingerprint", keys_fingerprint)
        from bucketchat.query_state import after_ingest

        after_ingest(cache)  # the timeline rows and the search index catch up
        findings_after = dict(cache.con.execute(FINDING_COUNTS).fetchall())
    report.findings = {
        kind: count - findings_before.get(kind, 0)
        for kind, count in findings_after.items()
        if count > findings_before.get(kind, 0)
    }
    report.seconds = time.perf_counter() - started
    return report


def _fingerprint(pinned: Mapping[str, list[str]], check: object) -> str:
    text = repr(sorted((sender, sorted(keys)) for sender, keys in pinned.items()))
    text += repr(getattr(check, "fingerprint", None))
    return hashlib.sha256(text.encode()).hexdigest()


def _published_keys(cache: Cache, pinned: Mapping[str, list[str]]) -> Candidates:
    by_room: Candidates = {}
    for room_id, sender, key in cache.con.execute(PUBLISHED_KEYS_ALL).fetchall():
        by_room.setdefault(room_id, {}).setdefault(sender, []).append(key)
    by_room[""] = {sender: list(keys) for sender, keys in pinned.items()}
    return by_room


def _room_candidates(candidates: Candidates, room_id: str) -> dict[str, list[str]]:
    merged = {sender: list(keys) for sender, keys in candidates.get("", {}).items()}
    for sender, keys in candidates.get(room_id, {}).items():
        merged.setdefault(sender, []).extend(k for k in keys if k not in merged.get(sender, []))
    return merged


def _learn_keys(candidates: Candidates, room_id: str, result: FileResult) -> None:
    for sender, key in result.published_keys:
        keys = candidates.setdefault(room_id, {}).setdefault(sender, [])
        if key not in keys:
            keys.append(key)


def _read_all(
    bucket: Bucket,
    plan: _Plan,
    candidates: Candidates,
    progress: Progress | None,
    workers: int | None,
) -> Iterator[tuple[ObjectInfo, LogFileName, str, FileResult]]:
    """Read and verify every planned file, in key order, streaming results."""
    from bucketchat.sync.reader import FileResult, read_file

    items = sorted(plan.to_read, key=lambda item: item[0].key)
    total = len(items)
    if not items:
        return
    local_root = bucket.root if isinstance(bucket, LocalBucket) else None
    total_bytes = sum(obj.size for obj, _, _ in items)
    cpu = workers if workers is not None else (os.cpu_count() or 1)
    events_so_far = 0

    def sources() -> Iterator[tuple[ObjectInfo, LogFileName, str, bytes | None, str | None]]:
        if local_root is not None:
            for obj, name, prior in items:
                yield obj, name, prior, None, str(local_root / obj.key)
            return
        by_key = {obj.key: (obj, name, prior) for obj, name, prior in items}
        for key, data in bucket.read_many([obj.key for obj, _, _ in items]):
            obj, name, prior = by_key[key]
            if isinstance(data, BucketError):
                yield obj, name, prior, b"", f"!{data}"
            else:
                yield obj, name, prior, data, None

    def finish(obj: ObjectInfo, name: LogFileName, prior: str, result: FileResult) -> Any:
        nonlocal events_so_far
        _learn_keys(candidates, name.room_id, result)
        events_so_far += result.event_count
        return obj, name, prior, result

    done = 0
    if cpu <= 1 or total_bytes < POOL_THRESHOLD_BYTES:
        for obj, name, prior, data, path in sources():
            result = _read_one(read_file, FileResult, obj, name, data, path, candidates)
            yield finish(obj, name, prior, result)
            done += 1
            if progress:
                progress(done, total, events_so_far)
        return

    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["bucketchat.sync.reader"])
    window: deque[tuple[ObjectInfo, LogFileName, str, Future[FileResult]]] = deque()
    with ProcessPoolExecutor(max_workers=cpu, mp_context=context) as pool:
        for obj, name, prior, data, path in sources():
            if path is not None and path.startswith("!"):
                window.append((obj, name, prior, _failed(obj, path[1:])))
            else:
                future = pool.submit(
                    read_file,
                    obj.key,
                    name.room_id,
                    data,
                    path,
                    _room_candidates(candidates, name.room_id),
                )
                window.append((obj, name, prior, future))
            while len(window) > cpu * WINDOW_PER_WORKER or (window and window[0][3].done()):
                head = window.popleft()
                yield finish(head[0], head[1], head[2], head[3].result())
                done += 1
                if progress:
                    progress(done, total, events_so_far)
        while window:
            head = window.popleft()
            yield finish(head[0], head[1], head[2], head[3].result())
            done += 1
            if progress:
                progress(done, total, events_so_far)


def _failed(obj: ObjectInfo, message: str) -> Future[FileResult]:
    from bucketchat.sync.reader import FileResult

    future: Future[FileResult] = Future()
    future.set_result(FileResult(obj.key, 0, "", True, error=message))
    return future


def _read_one(
    read_file: Any,
    result_type: Any,
    obj: ObjectInfo,
    name: LogFileName,
    data: bytes | None,
    path: str | None,
    candidates: Candidates,
) -> FileResult:
    if path is not None and path.startswith("!"):
        failed: FileResult = result_type(obj.key, 0, "", True, error=path[1:])
        return failed
    result: FileResult = read_file(
        obj.key, name.room_id, data, path, _room_candidates(candidates, name.room_id)
    )
    return result


Batch = list[tuple[ObjectInfo, LogFileName, str, "FileResult"]]


class _BatchWriter:
    """Stores batches on a thread of its own, so verification never waits for DuckDB.

    DuckDB releases the GIL while it works, so reading, verifying (in worker processes)
    and storing overlap. The queue holds at most two batches: memory stays bounded.
    """

    def __init__(self, cache_path: Path, report: SyncReport, touched_rooms: set[str]) -> None:
        import queue
        import threading

        self.cache_path = cache_path
        self.report = report
        self.touched_rooms = touched_rooms
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="bucketchat-writer", daemon=True)

    def __enter__(self) -> _BatchWriter:
        self.thread.start()
        return self

    def _run(self) -> None:
        while (batch := self.queue.get()) is not None:
            if self.failure is not None:
                continue  # drain, so the producer never blocks on a dead writer
            try:
                with open_cache(self.cache_path) as cache, cache.transaction():
                    _write_batch(cache, batch, self.report, self.touched_rooms)
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


def _batches(
    results: Iterator[tuple[ObjectInfo, LogFileName, str, FileResult]],
) -> Iterator[list[tuple[ObjectInfo, LogFileName, str, FileResult]]]:
    batch: list[tuple[ObjectInfo, LogFileName, str, FileResult]] = []
    events = 0
    for item in results:
        batch.append(item)
        events += item[3].event_count
        if events >= BATCH_EVENTS or len(batch) >= BATCH_FILES:
            yield batch
            batch, events = [], 0
    if batch:
        yield batch


def _write_batch(
    cache: Cache,
    batch: list[tuple[ObjectInfo, LogFileName, str, FileResult]],
    report: SyncReport,
    touched_rooms: set[str],
) -> None:
    import pyarrow as pa

    con = cache.con
    now = utc_now()
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
        in_progress = (
            not result.ends_with_newline
            and isinstance(obj.modified_at, float)
            and time.time() - obj.modified_at < IN_PROGRESS_SECONDS
            and result.size > 0
        )
        fresh.append((obj, name, prior, result, in_progress))

    tables = [result.events for _, _, _, result, in_progress in fresh
              if not in_progress and result.event_count]
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

    for obj, name, prior, result, in_progress in fresh:
        state = (
            "pending" if in_progress else ("mutated" if prior == "mutated_pending" else "ingested")
        )
        con.execute(
            UPSERT_FILE,
            {
                "path": obj.key,
                "room_id": name.room_id,
                "size": obj.size,
                "version": obj.version,
                "sha256": result.sha256,
                "state": state,
                "detail": None,
                "name_start_ts": name.start_ts,
                "name_end_ts": name.end_ts,
                "name_day": name.day,
                "lines_start_ts": result.lines_start_ts,
                "lines_end_ts": result.lines_end_ts,
                "now": now,
                "ingested_at": None if in_progress else now,
            },
        )
        if not in_progress:
            report.files_ingested += 1


def _record_changes(cache: Cache, bucket: Bucket, plan: _Plan) -> None:
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


def _mutation(bucket: Bucket, obj: ObjectInfo, previous: _Known) -> str | None:
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


def finding_counts(cache: Cache) -> Counter[str]:
    return Counter(dict(cache.con.execute(FINDING_COUNTS).fetchall()))

"""Pull: list the bucket, diff against the files table, read and verify what is new, store.

    list → diff (new, changed, gone) → read new files → parse + verify (worker processes)
         → transactions of whole files → re-decide keys of touched rooms

Storing is ``sync.store``'s (transactions of up to two row groups or 8 s, and of 400
files from a cloud, on a thread of its own). The cache is opened per transaction and
closed in between, so readers (``log``, ``sql``) and a second sync get their turn. After
the files, the touched rooms' keys are decided again and the query layer's derived rows
and search index catch up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.cache import Cache, open_cache
from bucketchat.errors import BucketError, BucketNotFound
from bucketchat.protocol.naming import LogFileName, parse_bucket_key
from bucketchat.storage import Bucket, LocalBucket, ObjectInfo
from bucketchat.sync.store import BatchWriter, Known, Plan, SyncReport, record_changes

if TYPE_CHECKING:
    import duckdb

    from bucketchat.sync.keys import AttestationCheck
    from bucketchat.sync.reader import FileResult

__all__ = ["Progress", "Stage", "SyncReport", "pull"]

Progress = Callable[[int, int, int], None]  # files done, files to read, events so far
# What a sync does once the files are read ("deciding keys", "building the timeline", …):
# for a big backlog these steps take a while, and a progress display can say which.
Stage = Callable[[str], None]
Candidates = dict[str, dict[str, list[str]]]  # room → sender → keys; room "" holds pinned keys

POOL_THRESHOLD_BYTES = 2_000_000  # below this, starting worker processes costs more than it saves
# Files go to a worker in groups of one room's consecutive files, up to these: sending one
# small file to a worker and its result back cost the main process as much as verifying
# it (~0.3 ms), so a backlog of one-event files was verified here, on one core. A file of
# GROUP_BYTES or more goes alone.
GROUP_FILES = 16
GROUP_BYTES = 256 * 1024
# Read files go to the writer thread in batches this small (memory), and a transaction
# takes batches until it holds BATCH_FILES files or enough events (sync.store).
BATCH_EVENTS = 25_000
BATCH_FILES = 400
# A transaction's commit and close cost ~80 ms. From a local folder one takes files until it
# holds enough events or has been open long enough (sync.store): 20,000 files of 5 events
# synced in 16 s, against 20 s in transactions of 400 files. From a cloud, what was
# downloaded is the costly part to redo, so every BATCH_FILES files are committed.
LOCAL_COMMIT_FILES: int | None = None
# Files in flight per worker: enough to ride out a slow batch write, and few, since a key a
# file publishes is a candidate only for files sent after its result came back (the
# others are verified again once the keys are decided, in this process).
WINDOW_PER_WORKER = 16

KNOWN_FILES = "SELECT path, size, version, sha256, state FROM files WHERE path LIKE ? ESCAPE '\\'"
# The files plainly ingested, as one string of "path size version" lines: a re-sync of
# many unchanged files turns one value into a Python object instead of a row per file
# (20,000 files: diffed in 23-30 ms instead of 29-36). Log file names hold no newline
# and no space.
PLAIN_FILES = """
SELECT string_agg(path || ' ' || size || ' ' || version, chr(10))
FROM files WHERE path LIKE ? ESCAPE '\\' AND state IN ('ingested', 'mutated')
"""
NOT_PLAIN_FILES = """
SELECT path, size, version, sha256, state FROM files
WHERE path LIKE ? ESCAPE '\\' AND state NOT IN ('ingested', 'mutated')
"""
# A sync changes the findings of the rooms whose files it reads, marks changed or gone, or
# finds unexpected, and of no other room (a new pin aside: then every room is counted).
# Counting only those (and the findings of no room), before and after, through the macro
# that filters at the source (migration 0008): a sync of one new message into a cache of
# 1M events took ~5.3 s, nearly all of it counting every room's findings twice. $rooms
# NULL counts every room, as fast as the view.
FINDING_COUNTS = "SELECT kind, count(*) FROM findings_in($rooms::VARCHAR[]) GROUP BY kind"
TAIL_MEMORY_LIMIT = "SET memory_limit = '384MB'"
TIMELINE_MEMORY_LIMIT = "SET memory_limit = '512MB'"
ANY_EVENT = "SELECT 1 FROM event_rows LIMIT 1"
PUBLISHED_KEYS_ALL = """
SELECT DISTINCT room_id, sender_id, public_key FROM event_rows
WHERE type = 'm.room.member' AND public_key IS NOT NULL
"""


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _known_files(
    cache: Cache, listing: list[ObjectInfo], prefix: str
) -> tuple[set[str], dict[str, Known]]:
    """Listed log files seen before and unchanged, and the files rows of all the others."""
    like = _like_prefix(prefix)
    row = cache.con.execute(PLAIN_FILES, [like]).fetchone()
    plain = set(row[0].split("\n")) if row and row[0] else set()
    unchanged = {obj.key for obj in listing if f"{obj.key} {obj.size} {obj.version}" in plain}
    # every plainly ingested file listed, unchanged: only the other rows are needed
    query = NOT_PLAIN_FILES if len(unchanged) == len(plain) else KNOWN_FILES
    return unchanged, {
        path: Known(size, version, sha256, state)
        for path, size, version, sha256, state in cache.con.execute(query, [like]).fetchall()
        if path not in unchanged
    }


def _plan(
    listing: Iterable[ObjectInfo], known: dict[str, Known], prefix: str, unchanged: set[str]
) -> Plan:
    plan = Plan()
    seen: set[str] = set()
    for obj in listing:
        seen.add(obj.key)
        if obj.key in unchanged:
            plan.scanned += 1  # the common case of a re-sync: a log file seen before, unchanged
            continue
        previous = known.get(obj.key)
        parsed = parse_bucket_key(obj.key)
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
    upload_outbox: bool = False,
    stage: Stage | None = None,
) -> SyncReport:
    """Ingest what is new in the bucket (or one room of it) into the cache.

    With ``upload_outbox``, what waits in the outbox is uploaded first (sync.push). Whether
    anything waits is read in the same open of the cache as the plan, so a quiet re-sync
    opens it once (~15 ms each); if something does, it is uploaded and the bucket listed
    again.
    """
    from bucketchat.sync.push import push, waiting

    started = time.perf_counter()
    report = SyncReport()
    pinned = dict(pinned or {})
    if check_attestation is None:
        from bucketchat.auth import AttestationVerifier

        check_attestation = AttestationVerifier([])  # no issuer is trusted
    prefix = f"rooms/{room}/" if room else "rooms/"

    def _pull_again() -> SyncReport:  # after uploading the outbox: list the bucket again
        return pull(
            bucket,
            cache_path,
            room=room,
            pinned=pinned,
            check_attestation=check_attestation,
            progress=progress,
            workers=workers,
            stage=stage,
        )

    def step(name: str) -> None:
        if stage is not None:
            stage(name)

    try:
        listing = list(bucket.list(prefix))
    except BucketError as exc:
        # as if the outbox were uploaded before the listing: its error comes first, and
        # what it uploads can make the bucket listable (a local folder it creates)
        if upload_outbox and push(bucket, cache_path):
            return _pull_again()
        if not (room and isinstance(exc, BucketNotFound)):
            raise
        listing = []
    with open_cache(cache_path) as cache:
        pending = waiting(cache) if upload_outbox else []
        if not pending:
            unchanged, known = _known_files(cache, listing, prefix)
            plan = _plan(listing, known, prefix, unchanged)
            report.files_scanned = plan.scanned
            keys_fingerprint = _fingerprint(pinned, check_attestation)
            keys_changed = cache.meta("keys_fingerprint") != keys_fingerprint
            if plan.idle and not keys_changed:
                report.seconds = time.perf_counter() - started
                return report
            empty = cache.con.execute(ANY_EVENT).fetchone() is None
            counted = None if empty or keys_changed else plan.rooms
            findings_before = {} if empty else _finding_counts(cache.con, counted)
            candidates = _published_keys(cache, pinned)
    if pending:
        push(bucket, cache_path, pending)
        return _pull_again()

    touched_rooms: set[str] = set()
    local = isinstance(bucket, LocalBucket)
    commit_files = LOCAL_COMMIT_FILES if local else BATCH_FILES
    keyed_rooms: set[str] = set()  # rooms whose new files publish keys
    with BatchWriter(cache_path, report, touched_rooms, local, commit_files=commit_files) as writer:
        reading = _read_all(bucket, plan, candidates, progress, workers, cache_path.parent)
        for batch in _batches(reading):
            keyed_rooms.update(name.room_id for _, name, _, read in batch if read.published_keys)
            writer.put(batch)
        step("storing")  # the writer's last batches and commit

    from bucketchat.sync.keys import (
        ALL_ROOMS,
        key_event_marks,
        record_decided,
        refresh_room_keys,
        undecided_rooms,
        verify_late_unheld,
    )

    # events stored before their sender's key is known are verified again now, with the
    # cache free while that runs; what is left is done as the keys are decided below
    step("deciding keys")
    verify_late_unheld(cache_path, keyed_rooms, pinned, workers, every_room=keys_changed)
    with open_cache(cache_path) as cache:
        with cache.transaction():
            record_changes(cache, bucket, plan)
            # A room's key decisions follow from its member events that publish keys and
            # from the pinned keys of its senders: a sync that stored neither leaves them
            # as they were (~90 ms a room of 100k events not spent on each new message).
            marks = key_event_marks(cache)
            rooms = undecided_rooms(cache, marks) | (set(touched_rooms) if pinned else set())
            if keys_changed:
                rooms |= {row[0] for row in cache.con.execute(ALL_ROOMS).fetchall()}
            for room_id in sorted(rooms):
                refresh_room_keys(cache, room_id, pinned, check_attestation, workers)
            record_decided(cache, rooms, marks)
            cache.set_meta("keys_fingerprint", keys_fingerprint)
        from bucketchat.query_state import refresh

        # DuckDB's memory is bounded in the steps after the files, which a big sync's
        # peak depends on. The timeline rows' sort spills at 384 MB: 512 MB makes it
        # ~1.1 s faster for ~195 MiB more, which still leaves a cold sync of 1M events
        # peaking where its files are stored (~800 MiB here against 850-920 MiB there).
        cache.con.execute(TIMELINE_MEMORY_LIMIT)
        step("building the timeline")
        refresh(cache)  # the timeline rows catch up
    # The search index and the findings only read the cache, and a read-only open lets
    # `log` and `sql` in meanwhile: after the rows of a cold sync of 1M events are stored
    # the cache was held ~15 s, longer than a reader waits for it
    # (cache.DEFAULT_WAIT_SECONDS), and is now ~7 s (the keys and the timeline rows).
    # A sync that commits between the two opens adds its findings to this report's too:
    # the report counts what changed in these rooms while this sync ran.
    # The two run side by side: the index build keeps ~1.4 cores busy (DuckDB writes the
    # documents, tantivy indexes them on one thread), and the count takes the rest
    # (a cold sync of 1M events: ~8 s together against 10-12 s one after the other).
    from concurrent.futures import ThreadPoolExecutor

    from bucketchat.fulltext import update_index

    with open_cache(cache_path, read_only=True) as cache:
        # tantivy's heap and the documents in Python come on top of DuckDB's pages here
        cache.con.execute(TAIL_MEMORY_LIMIT)
        step("indexing for search, counting findings")
        with ThreadPoolExecutor(1, thread_name_prefix="bucketchat-findings") as counter:
            counting = counter.submit(_finding_counts_beside, cache, counted)
            update_index(cache)
            findings_after = counting.result()
    report.findings = {
        kind: count - findings_before.get(kind, 0)
        for kind, count in findings_after.items()
        if count > findings_before.get(kind, 0)
    }
    report.seconds = time.perf_counter() - started
    return report


def _finding_counts(con: duckdb.DuckDBPyConnection, rooms: list[str] | None) -> dict[str, int]:
    """Findings by kind, of ``rooms`` (and of no room) or, with None, of every room."""
    rows = con.execute(FINDING_COUNTS, {"rooms": rooms}).fetchall()
    return {str(kind): int(count) for kind, count in rows}


def _finding_counts_beside(cache: Cache, rooms: list[str] | None) -> dict[str, int]:
    """``_finding_counts`` on a connection of its own, for a thread beside the cache's."""
    cursor = cache.con.cursor()
    try:
        return _finding_counts(cursor, rooms)
    finally:
        cursor.close()


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


def _learn_keys(candidates: Candidates, room_id: str, result: FileResult) -> bool:
    """Add the keys a file published to its room's candidates; True if any was new."""
    learned = False
    for sender, key in result.published_keys:
        keys = candidates.setdefault(room_id, {}).setdefault(sender, [])
        if key not in keys:
            keys.append(key)
            learned = True
    return learned


@dataclass(frozen=True)
class _Source:
    """One planned file, with its bytes (clouds), its path (local) or why it is unreadable."""

    obj: ObjectInfo
    name: LogFileName
    prior: str
    data: bytes | None = None
    path: str | None = None
    error: str | None = None


def _sources(bucket: Bucket, items: list[tuple[ObjectInfo, LogFileName, str]]) -> Iterator[_Source]:
    if isinstance(bucket, LocalBucket):  # workers read local files themselves
        for obj, name, prior in items:
            yield _Source(obj, name, prior, path=str(bucket.root / obj.key))
        return
    by_key = {obj.key: (obj, name, prior) for obj, name, prior in items}
    for key, data in bucket.read_many([obj.key for obj, _, _ in items]):
        obj, name, prior = by_key[key]
        if isinstance(data, BucketError):
            yield _Source(obj, name, prior, error=str(data))
        else:
            yield _Source(obj, name, prior, data=data)


def _unreadable(source: _Source) -> FileResult:
    from bucketchat.sync.reader import FileResult

    return FileResult(source.obj.key, 0, "", True, error=source.error)


def _read_all(
    bucket: Bucket,
    plan: Plan,
    candidates: Candidates,
    progress: Progress | None,
    workers: int | None,
    spool_parent: Path,
) -> Iterator[tuple[ObjectInfo, LogFileName, str, FileResult]]:
    """Read and verify every planned file, in key order, streaming results."""
    from bucketchat.sync.reader import load_spooled, read_file, read_files

    items = sorted(plan.to_read, key=lambda item: item[0].key)
    total = len(items)
    if not items:
        return
    total_bytes = sum(obj.size for obj, _, _ in items)
    cpu = workers if workers is not None else (os.cpu_count() or 1)
    done = events_so_far = 0
    # each room's candidate keys, merged once and again only when a file brings a new one
    # (merging them for every file of a bucket of small files cost ~5% of a sync)
    merged: dict[str, dict[str, list[str]]] = {}

    def finish(
        source: _Source, result: FileResult
    ) -> tuple[ObjectInfo, LogFileName, str, FileResult]:
        nonlocal done, events_so_far
        if _learn_keys(candidates, source.name.room_id, result):
            merged.pop(source.name.room_id, None)
        done += 1
        events_so_far += result.event_count
        if progress:
            progress(done, total, events_so_far)
        return source.obj, source.name, source.prior, result

    def room_keys(room_id: str) -> dict[str, list[str]]:
        if room_id not in merged:
            merged[room_id] = _room_candidates(candidates, room_id)
        return merged[room_id]

    if cpu <= 1 or total_bytes < POOL_THRESHOLD_BYTES:
        for source in _sources(bucket, items):
            if source.error:
                yield finish(source, _unreadable(source))
                continue
            room_id = source.name.room_id
            keys = room_keys(room_id)
            yield finish(source, read_file(source.obj.key, room_id, source.data, source.path, keys))
        return

    import shutil

    spool = _spool_folder(spool_parent)
    window: deque[tuple[list[_Source], Future[list[FileResult]]]] = deque()
    group: list[_Source] = []
    group_bytes = 0

    def results_of(sources: list[_Source], future: Future[list[FileResult]]) -> Iterator[Any]:
        for source, result in zip(sources, future.result(), strict=True):
            yield finish(source, load_spooled(result))

    try:
        with worker_pool(cpu) as pool:

            def send(sources: list[_Source]) -> None:
                room_id = sources[0].name.room_id
                files = [(source.obj.key, source.data, source.path) for source in sources]
                spool_arg = str(spool) if SPOOL else None
                keys = room_keys(room_id)
                window.append((sources, pool.submit(read_files, spool_arg, room_id, keys, files)))

            for source in _sources(bucket, items):
                if group and (
                    source.error
                    or source.name.room_id != group[0].name.room_id
                    or len(group) >= GROUP_FILES
                    or group_bytes + source.obj.size > GROUP_BYTES
                ):
                    send(group)
                    group, group_bytes = [], 0
                if source.error:
                    unreadable: Future[list[FileResult]] = Future()
                    unreadable.set_result([_unreadable(source)])
                    window.append(([source], unreadable))
                else:
                    group.append(source)
                    group_bytes += source.obj.size
                while window and (
                    sum(len(sources) for sources, _ in window) > cpu * WINDOW_PER_WORKER
                    or window[0][1].done()
                ):
                    yield from results_of(*window.popleft())
            if group:
                send(group)
            while window:
                yield from results_of(*window.popleft())
    finally:
        shutil.rmtree(spool, ignore_errors=True)
        with contextlib.suppress(OSError):  # left while another sync spools there
            spool.parent.rmdir()


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """Verify workers, forked from a server that has the reader imported; the server
    stops when the pool closes."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["bucketchat.sync.reader"])
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            yield pool
    finally:
        _stop_forkserver()


def _stop_forkserver() -> None:
    """Stop the process that forked the workers: it holds the reader's imports (~86 MiB)
    through the timeline and index steps, where a big sync peaks. multiprocessing has no
    public call for it; ``_stop`` is the one its own tests use, and the next pool starts
    a new server."""
    from multiprocessing import forkserver

    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if callable(stop):
        stop()


SPOOL_FOLDER = ".bucketchat-spool"  # beside the cache; one folder per running sync
SPOOL = os.name == "posix"  # a mapped file can lose its name at once only there


def _spool_folder(parent: Path) -> Path:
    """A new folder for this sync's spooled results; those of syncs that died are removed."""
    import shutil
    import uuid

    root = parent / SPOOL_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.iterdir():
        owner = stale.name.split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(stale, ignore_errors=True)
    folder = root / f"{os.getpid()}-{uuid.uuid4().hex}"
    folder.mkdir()
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


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

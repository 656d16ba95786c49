"""Pull: list the bucket, diff against the files table, read and verify what is new, store.

    list → diff (new, changed, gone) → read new files → parse + verify (sync.workers)
         → transactions of whole files, then the files' own changes (sync.store)

That is all it does: deciding keys (``sync.keys``), the timeline and the search index
come after it, chained by ``bucketchat.session``. The cache is opened per transaction
and closed in between, so readers (``log``, ``sql``) and a second sync get their turn.
What the later steps need to know of this pull comes back in ``Pulled``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bucketchat.cache import Cache, open_cache
from bucketchat.errors import BucketNotFound
from bucketchat.protocol.naming import parse_bucket_key
from bucketchat.storage import Bucket, LocalBucket, ObjectInfo
from bucketchat.sync.report import Progress, Stage, SyncReport, finding_counts
from bucketchat.sync.store import BatchWriter, Known, Plan, record_changes
from bucketchat.sync.workers import Candidates, ReadFile, read_all

__all__ = ["Progress", "Pulled", "Stage", "SyncReport", "pull"]

# Read files go to the writer thread in batches this small (memory), and a transaction
# takes batches until it holds BATCH_FILES files or enough events (sync.store).
BATCH_EVENTS = 25_000
BATCH_FILES = 400
# A transaction's commit and close cost ~80 ms. From a local folder one takes files until it
# holds enough events or has been open long enough (sync.store): 20,000 files of 5 events
# synced in 16 s, against 20 s in transactions of 400 files. From a cloud, what was
# downloaded is the costly part to redo, so every BATCH_FILES files are committed.
LOCAL_COMMIT_FILES: int | None = None

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
ANY_EVENT = "SELECT 1 FROM event_rows LIMIT 1"
PUBLISHED_KEYS_ALL = """
SELECT DISTINCT room_id, sender_id, public_key FROM event_rows
WHERE type = 'm.room.member' AND public_key IS NOT NULL
"""


@dataclass
class Pulled:
    """What one pull did, for the steps after it."""

    report: SyncReport
    keys_fingerprint: str
    #: nothing changed in the bucket and the keys settings did not: nothing more to do
    idle: bool = True
    #: the pinned keys or trusted issuers differ from those of the last key decisions
    keys_changed: bool = False
    keyed_rooms: set[str] = field(default_factory=set)  # rooms whose new files publish keys
    touched_rooms: set[str] = field(default_factory=set)  # rooms that gained events
    #: the rooms whose findings the report compares (None: every room), and their count
    #: before this pull
    counted_rooms: list[str] | None = None
    findings_before: dict[str, int] = field(default_factory=dict)


def keys_fingerprint(pinned: Mapping[str, list[str]], check: object) -> str:
    """What key decisions depend on besides the events: the pinned keys and the trusted
    issuers. A cache whose decisions were made under another fingerprint decides again."""
    text = repr(sorted((sender, sorted(keys)) for sender, keys in pinned.items()))
    text += repr(getattr(check, "fingerprint", None))
    return hashlib.sha256(text.encode()).hexdigest()


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _known_files(
    cache: Cache, listing: list[ObjectInfo], prefix: str
) -> tuple[set[str], dict[str, Known]]:
    """Listed log files seen before and unchanged, and the files rows of all the others."""
    like = _like_prefix(prefix)
    row = cache.one(PLAIN_FILES, [like])
    plain = set(row[0].split("\n")) if row and row[0] else set()
    unchanged = {obj.key for obj in listing if f"{obj.key} {obj.size} {obj.version}" in plain}
    # every plainly ingested file listed, unchanged: only the other rows are needed
    query = NOT_PLAIN_FILES if len(unchanged) == len(plain) else KNOWN_FILES
    return unchanged, {
        path: Known(size, version, sha256, state)
        for path, size, version, sha256, state in cache.rows(query, [like])
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
    keys_fingerprint: str = "",
    progress: Progress | None = None,
    workers: int | None = None,
    stage: Stage | None = None,
    defer_to: Callable[[Cache], bool] | None = None,
) -> Pulled | None:
    """Ingest what is new in the bucket (or one room of it) into the cache.

    ``keys_fingerprint`` names the settings key decisions depend on (``sync.keys``): when
    it differs from the cache's, the pull is not idle even with nothing new. ``defer_to``
    is asked in the open of the cache that plans, so a quiet re-sync opens it once (~15-40
    ms each): when it answers True nothing is read and None comes back (the session
    uploads its outbox first, then pulls).
    """
    started = time.perf_counter()
    pulled = Pulled(SyncReport(), keys_fingerprint)
    report = pulled.report
    pinned = dict(pinned or {})
    prefix = f"rooms/{room}/" if room else "rooms/"
    try:
        listing = list(bucket.list(prefix))
    except BucketNotFound:
        if not room:
            raise
        listing = []  # a room of a bucket that does not exist yet has nothing to pull
    with open_cache(cache_path) as cache:
        if defer_to is not None and defer_to(cache):
            return None
        unchanged, known = _known_files(cache, listing, prefix)
        plan = _plan(listing, known, prefix, unchanged)
        report.files_scanned = plan.scanned
        pulled.keys_changed = cache.meta("keys_fingerprint") != keys_fingerprint
        if plan.idle and not pulled.keys_changed:
            report.seconds = time.perf_counter() - started
            return pulled
        pulled.idle = False
        empty = cache.one(ANY_EVENT) is None
        pulled.counted_rooms = None if empty or pulled.keys_changed else plan.rooms
        if not empty:
            pulled.findings_before = finding_counts(cache, pulled.counted_rooms)
        candidates = _published_keys(cache, pinned)

    local = isinstance(bucket, LocalBucket)
    commit_files = LOCAL_COMMIT_FILES if local else BATCH_FILES
    with BatchWriter(
        cache_path,
        report,
        pulled.touched_rooms,
        local,
        commit_files=commit_files,
        # the files that changed, vanished or do not belong go in with the last batch
        last=(lambda cache: record_changes(cache, bucket, plan)) if plan.file_changes else None,
    ) as writer:
        reading = read_all(bucket, plan, candidates, progress, workers, cache_path.parent)
        for batch in _batches(reading):
            pulled.keyed_rooms.update(
                name.room_id for _, name, _, read in batch if read.published_keys
            )
            writer.put(batch)
        if stage is not None:
            stage("storing")  # the writer's last batches and commit
    report.seconds = time.perf_counter() - started
    return pulled


def _published_keys(cache: Cache, pinned: Mapping[str, list[str]]) -> Candidates:
    by_room: Candidates = {}
    for room_id, sender, key in cache.rows(PUBLISHED_KEYS_ALL):
        by_room.setdefault(room_id, {}).setdefault(sender, []).append(key)
    by_room[""] = {sender: list(keys) for sender, keys in pinned.items()}
    return by_room


def _batches(
    results: Iterator[ReadFile],
) -> Iterator[list[ReadFile]]:
    batch: list[ReadFile] = []
    events = 0
    for item in results:
        batch.append(item)
        events += item[3].event_count
        if events >= BATCH_EVENTS or len(batch) >= BATCH_FILES:
            yield batch
            batch, events = [], 0
    if batch:
        yield batch

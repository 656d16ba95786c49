"""Push: the outbox's pending events become new log files, each written create-only.

Events of one (room, device key) go into one file named by their time bounds and the
device's client id (PROTOCOL.md §1). A name clash means another writer (or an earlier
attempt of ours that crashed before it could record success) holds the name: if the
object there is byte-for-byte ours, the upload already happened; otherwise a new name is
chosen. Nothing is ever overwritten. On a bucket error the events stay in the outbox and
the next command retries them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bucketchat.cache import Cache, open_cache
from bucketchat.errors import BucketError, ObjectExists, UploadFailed
from bucketchat.protocol.naming import client_id_for, log_file_path
from bucketchat.storage import Bucket
from bucketchat.timeutil import utc_now

PENDING = """
SELECT outbox_id, room_id, sender_id, device_key, timestamp_ms, line
FROM outbox WHERE uploaded_at IS NULL ORDER BY outbox_id
"""
MARK_UPLOADED = """
UPDATE outbox SET uploaded_at = ?, file = ?, last_error = NULL WHERE outbox_id = ?
"""
MARK_FAILED = "UPDATE outbox SET last_error = ? WHERE outbox_id = ?"
MAX_NAME_ATTEMPTS = 50


@dataclass(frozen=True)
class Pending:
    outbox_id: int
    room_id: str
    sender_id: str
    device_key: str
    timestamp_ms: int
    line: str


def file_for(events: list[Pending], attempt: int) -> tuple[str, bytes]:
    from bucketchat.protocol.signing import fingerprint

    first = events[0]
    client_id = client_id_for(first.sender_id, fingerprint(first.device_key))
    if attempt:
        client_id = f"{client_id}_{attempt}"
    start = min(event.timestamp_ms for event in events)
    end = max(event.timestamp_ms for event in events)
    data = "".join(event.line + "\n" for event in events).encode("utf-8")
    return log_file_path(first.room_id, start, end, client_id), data


def upload(bucket: Bucket, events: list[Pending]) -> str:
    """Write one file holding ``events``; returns its key."""
    for attempt in range(MAX_NAME_ATTEMPTS):
        key, data = file_for(events, attempt)
        try:
            bucket.create(key, data)
            return key
        except ObjectExists:
            try:
                if bucket.read(key) == data:
                    return key  # our own earlier upload, whose success was never recorded
            except BucketError:
                pass
    raise UploadFailed(
        f"no free file name for {len(events)} events after {MAX_NAME_ATTEMPTS} tries"
    )


def waiting(cache: Cache) -> list[Pending]:
    """The outbox events not uploaded yet, oldest first."""
    return [Pending(*row) for row in cache.rows(PENDING)]


def push(bucket: Bucket, cache_path: Path, pending: list[Pending] | None = None) -> list[str]:
    """Upload every pending outbox event (or those given); returns the keys written."""
    if pending is None:
        with open_cache(cache_path) as cache:
            pending = waiting(cache)
    if not pending:
        return []
    groups: dict[tuple[str, str], list[Pending]] = defaultdict(list)
    for event in pending:
        groups[(event.room_id, event.device_key)].append(event)
    written: list[str] = []
    uploaded = 0
    for events in groups.values():
        try:
            key = upload(bucket, events)
        except (BucketError, UploadFailed) as exc:
            with open_cache(cache_path) as cache:
                cache.executemany(MARK_FAILED, [[str(exc), e.outbox_id] for e in events])
            left = len(pending) - uploaded
            raise UploadFailed(
                f"upload to {bucket.url} failed ({exc}); {left} event(s) wait in the outbox "
                "and the next command retries them"
            ) from exc
        with open_cache(cache_path) as cache:
            now = utc_now()
            cache.executemany(MARK_UPLOADED, [[now, key, e.outbox_id] for e in events])
        written.append(key)
        uploaded += len(events)
    return written

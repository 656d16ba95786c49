"""``audit --check-lock``: ask the bucket which of the objects the cache knows are really
write-once, and report the others as ``unlocked_object``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bucketchat.storage import Bucket

LOCK_CHECKS_IN_FLIGHT = 16
LOCKABLE_FILES = """
SELECT path, room_id FROM files
WHERE state IN ('ingested', 'mutated', 'metadata') AND ($room IS NULL OR room_id = $room)
ORDER BY path
"""


def add_lock_findings(
    report: dict[str, Any], bucket: Bucket, cache_path: Path, room: str | None = None
) -> None:
    """``--check-lock``: ask the bucket which known objects are really write-once."""
    from concurrent.futures import ThreadPoolExecutor

    from bucketchat.cache import open_cache
    from bucketchat.errors import BucketNotFound

    with open_cache(cache_path, read_only=True) as cache:
        files = cache.rows(LOCKABLE_FILES, {"room": room})

    def locked(path: str) -> bool | None:
        try:
            return bucket.lock_status(path).locked
        except BucketNotFound:
            return None  # gone since the last sync, which the next sync reports as deleted

    with ThreadPoolExecutor(max_workers=LOCK_CHECKS_IN_FLIGHT) as pool:
        answers = list(pool.map(locked, [path for path, _ in files]))
    added = []
    for (path, room_id), answer in zip(files, answers, strict=True):
        if answer is False:
            added.append(
                {
                    "kind": "unlocked_object",
                    "severity": "warning",
                    "room_id": room_id,
                    "sender_id": None,
                    "event_id": None,
                    "file": path,
                    "line": None,
                    "reason": None,
                    "detail": "the bucket does not protect this object from overwrite or deletion",
                }
            )
    report["findings"].extend(added)
    summary = report["summary"]
    summary["warning"] += len(added)
    if added:
        summary["by_kind"]["unlocked_object"] = len(added)
        summary["by_kind"] = dict(sorted(summary["by_kind"].items()))

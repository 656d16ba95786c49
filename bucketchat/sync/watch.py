"""Noticing that a bucket may have changed: file events for a local folder, else a timer.

``BucketWatcher`` is what ``Session.follow`` (``sync --watch``, the chat) waits on between
syncs: for a local folder, watchdog's file events under ``rooms/`` wake it at once; any
other bucket wakes it when the poll interval is up.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from bucketchat.storage import Bucket, LocalBucket

SETTLE_SECONDS = 0.2  # let a burst of writes land before syncing once


class BucketWatcher:
    """Use as a context manager; ``wait(interval)`` returns when the bucket may have changed
    (True) or the interval is over (False)."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self.changed = threading.Event()
        self._observer: Any = None

    def __enter__(self) -> BucketWatcher:
        if isinstance(self.bucket, LocalBucket):
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer

            changed = self.changed

            class _Changed(FileSystemEventHandler):
                def on_any_event(self, event: FileSystemEvent) -> None:
                    if not str(event.src_path).endswith(".tmp"):
                        changed.set()

            watched = self.bucket.root / "rooms"
            watched.mkdir(parents=True, exist_ok=True)
            self._observer = Observer()
            self._observer.schedule(_Changed(), str(watched), recursive=True)
            self._observer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None

    def clear(self) -> None:
        """Forget changes seen so far (call before a sync)."""
        self.changed.clear()

    def wait(self, interval: float, stop: threading.Event | None = None) -> bool:
        """Wait for a change or ``interval`` seconds; after a change, let the burst settle."""
        woke = self.changed.wait(interval)
        if woke:
            (stop or threading.Event()).wait(SETTLE_SECONDS)
        return woke

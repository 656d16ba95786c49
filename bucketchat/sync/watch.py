"""Following a bucket: sync again whenever something may have changed.

Local folders are watched with watchdog (new files are ingested within a second); other
buckets are polled at an interval. The cache is opened only while a sync runs, so other
commands (``log``, ``sql``) can read it between rounds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from bucketchat.client import Client
from bucketchat.storage import LocalBucket
from bucketchat.sync.pull import SyncReport

SETTLE_SECONDS = 0.2  # let a burst of writes land before syncing once


def follow(
    client: Client,
    *,
    room: str | None = None,
    interval: float = 10.0,
    on_report: Callable[[SyncReport], None],
    stop: threading.Event | None = None,
) -> None:
    """Sync now, then after every change (local) or every ``interval`` seconds (others)."""
    stop = stop or threading.Event()
    changed = threading.Event()
    observer: Any = None
    if isinstance(client.bucket, LocalBucket):
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        class _Changed(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if not str(event.src_path).endswith(".tmp"):
                    changed.set()

        watched = client.bucket.root / "rooms"
        watched.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.schedule(_Changed(), str(watched), recursive=True)
        observer.start()
    try:
        while not stop.is_set():
            changed.clear()
            on_report(client.sync(room=room))
            woke = changed.wait(interval)
            if woke:
                stop.wait(SETTLE_SECONDS)
    finally:
        if observer is not None:
            observer.stop()
            observer.join(timeout=2)

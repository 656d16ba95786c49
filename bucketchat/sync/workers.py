"""Reading and verifying planned files: in this process, or on a pool of worker processes.

Verification is most of a sync's cost (Ed25519 ~50 µs an event), so files go to worker
processes (``sync.reader.read_files``) over whole files, big ones alone and small ones in
groups of one room's consecutive files, and results stream back in key order. Big results
come back as Arrow files spooled beside the cache, which the main process maps instead
of unpickling. The pool's workers are forked from a server that has the reader imported.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.errors import BucketError
from bucketchat.protocol.naming import LogFileName
from bucketchat.storage import Bucket, LocalBucket, ObjectInfo

if TYPE_CHECKING:
    from bucketchat.sync.reader import FileResult
    from bucketchat.sync.report import Progress
    from bucketchat.sync.store import Plan

Candidates = dict[str, dict[str, list[str]]]  # room → sender → keys; room "" holds pinned keys
ReadFile = tuple[ObjectInfo, LogFileName, str, "FileResult"]  # the file, its name, prior state

POOL_THRESHOLD_BYTES = 2_000_000  # below this, starting worker processes costs more than it saves
# Files go to a worker in groups of one room's consecutive files, up to these: sending one
# small file to a worker and its result back cost the main process as much as verifying
# it (~0.3 ms), so a backlog of one-event files was verified here, on one core. A file of
# GROUP_BYTES or more goes alone.
GROUP_FILES = 16
GROUP_BYTES = 256 * 1024
# Files in flight per worker: enough to ride out a slow batch write, and few, since a key a
# file publishes is a candidate only for files sent after its result came back (the
# others are verified again once the keys are decided, in this process).
WINDOW_PER_WORKER = 16


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


def read_all(
    bucket: Bucket,
    plan: Plan,
    candidates: Candidates,
    progress: Progress | None,
    workers: int | None,
    spool_parent: Path,
) -> Iterator[ReadFile]:
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
    ) -> ReadFile:
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



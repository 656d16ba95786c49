"""The session core: the one object the CLI, the chat and the Python API all use.

    Session.sync()    push → pull → keys → timeline → search index, and the findings added
    Session.follow()  sync, then again whenever the bucket may have changed
    Session.write()   compose into the outbox (publishing the device key first), then push
    readers           timeline, thread, search, rooms, members, findings

Every writer follows the same order: retry the outbox, learn the room from the bucket (so
the chain continues where it stands), publish the device key if the room has not seen
it, compose, upload, ingest. Readers need only the cache: a session without a bucket reads.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.cache import Cache, open_cache
from bucketchat.errors import BucketError, MissingSetting, ObjectExists, UploadFailed, UsageError
from bucketchat.protocol.naming import check_room_id, metadata_path
from bucketchat.storage import Bucket
from bucketchat.sync.pull import Pulled, pull
from bucketchat.sync.report import Progress, Stage, SyncReport
from bucketchat.timeutil import now_ms, utc_now

if TYPE_CHECKING:
    import pyarrow as pa

    from bucketchat.compose import Composed
    from bucketchat.config import Settings
    from bucketchat.projections.search.searcher import Hit
    from bucketchat.protocol.signing import SigningKey
    from bucketchat.sync.keys import AttestationCheck
    from bucketchat.sync.push import Pending

__all__ = ["Progress", "Session", "Stage", "SyncReport", "sync_bucket"]

# The search index and the findings count run together on a read-only open at the end of
# a sync; tantivy's heap and the documents in Python come on top of DuckDB's pages there,
# where a big sync's tail peaks. (The timeline refresh before it runs under the writer's
# 512 MB, cache.connection.WRITER_MEMORY_LIMIT: its sort spilled at 384 MB, ~1.1 s slower.)
INDEX_MEMORY = "384MB"


def sync_bucket(
    bucket: Bucket,
    cache_path: Path,
    *,
    room: str | None = None,
    pinned: Mapping[str, list[str]] | None = None,
    check_attestation: AttestationCheck | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    stage: Stage | None = None,
    upload_outbox: bool = True,
) -> SyncReport:
    """Upload what waits in the outbox, then ingest the bucket (or one room) and bring the
    keys, the timeline and the search index up to date.

    Whether anything waits is asked in the same open of the cache as the pull's plan, so a
    quiet re-sync opens the cache once; if something does, it is uploaded and the bucket
    listed again.
    """
    from bucketchat.sync.pull import keys_fingerprint
    from bucketchat.sync.push import push, waiting

    started = time.perf_counter()
    pinned = dict(pinned or {})
    if check_attestation is None:
        from bucketchat.attestation import AttestationVerifier

        check_attestation = AttestationVerifier([])  # no issuer is trusted
    fingerprint = keys_fingerprint(pinned, check_attestation)
    pending: list[Pending] = []

    def outbox_waits(cache: Cache) -> bool:
        pending[:] = waiting(cache)
        return bool(pending)

    def pull_now(defer: bool) -> Pulled | None:
        return pull(
            bucket,
            cache_path,
            room=room,
            pinned=pinned,
            keys_fingerprint=fingerprint,
            progress=progress,
            workers=workers,
            stage=stage,
            defer_to=outbox_waits if defer else None,
        )

    try:
        pulled = pull_now(upload_outbox)
    except BucketError:
        # as if the outbox were uploaded before the listing: its error comes first, and
        # what it uploads can make the bucket listable (a local folder it creates)
        if not (upload_outbox and push(bucket, cache_path)):
            raise
        pulled = pull_now(False)
    if pulled is None:  # the outbox waits: upload it, then list the bucket again
        push(bucket, cache_path, list(pending))
        pulled = pull_now(False)
    assert pulled is not None
    if not pulled.idle:
        _settle(cache_path, pulled, pinned, check_attestation, workers, stage)
    pulled.report.seconds = time.perf_counter() - started
    return pulled.report


def _settle(
    cache_path: Path,
    pulled: Pulled,
    pinned: Mapping[str, list[str]],
    check_attestation: AttestationCheck,
    workers: int | None,
    stage: Stage | None,
) -> None:
    """The steps after a pull: keys, the timeline rows, the search index, the findings."""
    from concurrent.futures import ThreadPoolExecutor

    from bucketchat.projections.search.index import update_index
    from bucketchat.projections.timeline.refresh import refresh
    from bucketchat.sync.keys import decide_keys, verify_late_unheld
    from bucketchat.sync.report import finding_counts_beside

    def step(name: str) -> None:
        if stage is not None:
            stage(name)

    # events stored before their sender's key was known are verified again first, with the
    # cache free while that runs; what is left is done as the keys are decided
    step("deciding keys")
    verify_late_unheld(
        cache_path, pulled.keyed_rooms, pinned, workers, every_room=pulled.keys_changed
    )
    with open_cache(cache_path) as cache:
        decide_keys(cache, pulled, pinned, check_attestation, workers)
        step("building the timeline")
        refresh(cache)
    # The search index and the findings only read the cache, and a read-only open lets
    # `log` and `sql` in meanwhile: after the rows of a cold sync of 1M events are stored
    # the cache was held ~15 s, longer than a reader waits for it
    # (cache.DEFAULT_WAIT_SECONDS), and is now ~7 s (the keys and the timeline rows).
    # A sync that commits between the two opens adds its findings to this report's too:
    # the report counts what changed in these rooms while this sync ran.
    # The two run side by side: the index build keeps ~1.4 cores busy (DuckDB writes the
    # documents, tantivy indexes them on one thread), and the count takes the rest
    # (a cold sync of 1M events: ~8 s together against 10-12 s one after the other).
    with open_cache(cache_path, read_only=True) as cache:
        cache.limit_memory(INDEX_MEMORY)
        step("indexing for search, counting findings")
        with ThreadPoolExecutor(1, thread_name_prefix="bucketchat-findings") as counter:
            counting = counter.submit(finding_counts_beside, cache, pulled.counted_rooms)
            update_index(cache)
            findings_after = counting.result()
    pulled.report.add_findings(pulled.findings_before, findings_after)


@dataclass
class Session:
    """One user's session with one bucket and its cache."""

    bucket: Bucket | None
    cache_path: Path
    user: str | None = None
    key: SigningKey | None = None
    pinned: Mapping[str, list[str]] = field(default_factory=dict)
    check_attestation: AttestationCheck | None = None
    displayname: str | None = None
    attestation: dict[str, Any] | None = None
    clock: Callable[[], int] = now_ms

    @classmethod
    def from_settings(
        cls, settings: Settings, *, identity: bool = True, bucket: bool = True
    ) -> Session:
        """The session the settings describe: the cache; with ``bucket`` the bucket, the
        pinned keys and the trusted issuers (syncing); with ``identity`` the user and
        device key (writing)."""
        from bucketchat import keystore

        if not bucket:
            session = cls(None, settings.cache_path())
        else:
            from bucketchat.attestation import AttestationVerifier
            from bucketchat.storage import open_bucket

            session = cls(
                open_bucket(settings.require_bucket(), settings),
                settings.cache_path(),
                pinned=keystore.pinned_keys(),
                check_attestation=AttestationVerifier(settings.trusted_issuers()),
            )
        if identity:
            session.user = keystore.resolve_user(settings.user)
            session.key = keystore.load_device_key(session.user)
        return session

    # -- syncing --------------------------------------------------------------------

    def _bucket(self) -> Bucket:
        if self.bucket is None:
            raise MissingSetting("this needs a bucket: pass --bucket URL or set BUCKETCHAT_BUCKET")
        return self.bucket

    def sync(
        self,
        room: str | None = None,
        progress: Progress | None = None,
        workers: int | None = None,
        stage: Stage | None = None,
    ) -> SyncReport:
        """Upload what waits in the outbox, then ingest the bucket (or one room)."""
        return sync_bucket(
            self._bucket(),
            self.cache_path,
            room=room,
            pinned=dict(self.pinned),
            check_attestation=self.check_attestation,
            progress=progress,
            workers=workers,
            stage=stage,
        )

    def follow(
        self,
        *,
        room: str | None = None,
        interval: float = 10.0,
        on_report: Callable[[SyncReport], None],
        stop: threading.Event | None = None,
    ) -> None:
        """Sync now, then after every change (local) or every ``interval`` seconds (others),
        until ``stop`` is set. The cache is open only while a sync runs, so other commands
        (``log``, ``sql``) read it between rounds."""
        from bucketchat.sync.watch import BucketWatcher

        stop = stop or threading.Event()
        with BucketWatcher(self._bucket()) as watcher:
            while not stop.is_set():
                watcher.clear()
                on_report(self.sync(room=room))
                watcher.wait(interval, stop)

    # -- writing --------------------------------------------------------------------

    def _identity(self) -> tuple[str, SigningKey]:
        if self.user is None or self.key is None:
            raise UsageError("writing needs a user and a device key: run `bucketchat keys init`")
        return self.user, self.key

    def write(
        self,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        parent_event_id: str | None = None,
    ) -> Composed:
        """Compose one event (publishing the device key first if needed) and upload it."""
        from bucketchat.compose import compose, join_content, key_published

        user, key = self._identity()
        check_room_id(room_id)
        offline: BucketError | UploadFailed | None = None
        try:
            self.sync(room=room_id)  # learn where the room and this device's chain stand
        except (BucketError, UploadFailed) as exc:
            offline = exc  # compose anyway: the outbox keeps the message until the bucket works
        with open_cache(self.cache_path) as cache:
            if event_type != "m.room.member" and not key_published(cache, room_id, user, key):
                compose(
                    cache,
                    key,
                    user,
                    room_id,
                    "m.room.member",
                    join_content(key, self.displayname, self.attestation),
                    clock=self.clock,
                )
            composed = compose(
                cache, key, user, room_id, event_type, content, parent_event_id, clock=self.clock
            )
        if offline is not None:
            raise UploadFailed(
                f"{offline} — {composed.event_id} waits in the outbox; the next command sends it"
            ) from offline
        self.sync(room=room_id)
        return composed

    def join(self, room_id: str) -> Composed:
        from bucketchat.compose import join_content

        _, key = self._identity()
        return self.write(
            room_id, "m.room.member", join_content(key, self.displayname, self.attestation)
        )

    def create_room(
        self,
        room_id: str,
        name: str | None = None,
        topic: str | None = None,
        lock_days: int | None = None,
    ) -> bool:
        """Write the room's metadata.json (create-only) and join; False if it existed.

        With ``lock_days`` the bucket is first set up so that every new object is
        write-once for that many days (S3 Object Lock, a GCS retention policy).
        """
        check_room_id(room_id)
        bucket = self._bucket()
        if lock_days is not None:
            bucket.ensure_locked_bucket(lock_days)
        metadata: dict[str, Any] = {
            "room_id": room_id,
            "created_at": utc_now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "version": "1.0",
            "protocol": "bucket-chat-v1",
        }
        if name:
            metadata["name"] = name
        if topic:
            metadata["topic"] = topic
        created = True
        try:
            bucket.create(metadata_path(room_id), json.dumps(metadata, indent=2).encode())
        except ObjectExists:
            created = False
        self.join(room_id)
        return created

    # -- reading --------------------------------------------------------------------

    def _existing_cache(self) -> Path:
        if not self.cache_path.exists():
            raise UsageError(f"no cache at {self.cache_path}: run `bucketchat sync` first")
        return self.cache_path

    def open_fresh(self) -> Cache:
        """The cache, read-only, after its timeline rows caught up with any unprocessed sync."""
        from bucketchat.projections.timeline.refresh import open_fresh

        return open_fresh(self._existing_cache())

    def timeline(
        self,
        room: str,
        *,
        limit: int = 50,
        before: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        include_invalid: bool = False,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` items of ``room`` (before ``before``), oldest first."""
        from bucketchat.projections.timeline.read import timeline

        with self.open_fresh() as cache:
            return timeline(
                cache,
                room,
                limit=limit,
                before=before,
                since_ms=since_ms,
                until_ms=until_ms,
                include_invalid=include_invalid,
            )

    def timeline_table(
        self,
        room: str,
        *,
        limit: int = 50,
        before: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        include_invalid: bool = False,
    ) -> pa.Table:
        """``timeline`` as an Arrow table with the cache's column types."""
        from bucketchat.projections.timeline.read import timeline_arrow

        with self.open_fresh() as cache:
            return timeline_arrow(
                cache,
                room,
                limit=limit,
                before=before,
                since_ms=since_ms,
                until_ms=until_ms,
                include_invalid=include_invalid,
            )

    def thread(self, event_id: str) -> dict[str, Any]:
        """The whole thread containing ``event_id``: its root and every event's depth."""
        from bucketchat.projections.timeline.read import thread

        with self.open_fresh() as cache:
            return thread(cache, event_id)

    def thread_table(self, event_id: str) -> pa.Table:
        from bucketchat.projections.timeline.read import thread_arrow

        with self.open_fresh() as cache:
            return thread_arrow(cache, event_id)

    def search(
        self,
        text: str,
        *,
        room: str | None = None,
        sender: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 20,
    ) -> list[Hit]:
        """Ranked hits for ``text`` (the search syntax); the rows and index catch up first."""
        from bucketchat.projections.search.index import index_dir, index_lags, update_index
        from bucketchat.projections.search.searcher import Searcher
        from bucketchat.projections.timeline.refresh import open_fresh

        path = self._existing_cache()
        with open_fresh(path) as cache:
            if index_lags(cache):
                update_index(cache)
        return Searcher(index_dir(path)).search(
            text, room=room, sender=sender, since_ms=since_ms, until_ms=until_ms, limit=limit
        )

    def rooms(self) -> list[dict[str, Any]]:
        """Every room the cache knows, with its name, counts and last activity."""
        from bucketchat.projections.timeline.read import rooms

        with open_cache(self.cache_path, read_only=True) as cache:
            return rooms(cache)

    def members(self, room: str) -> list[dict[str, Any]]:
        """The members of ``room`` as their latest member events left them."""
        from bucketchat.projections.timeline.read import members

        with self.open_fresh() as cache:
            return members(cache, room)

    def findings(self, room: str | None = None) -> dict[str, Any]:
        """The audit report (CLI.md ``audit --format json``) of ``room`` or of every room."""
        from bucketchat.audit.report import audit_report

        with open_cache(self.cache_path, read_only=True) as cache:
            return audit_report(cache, room)

    def check_locks(self, report: dict[str, Any], room: str | None = None) -> None:
        """``audit --check-lock``: add ``unlocked_object`` findings to ``report``, asking the
        bucket which of the objects the cache knows are really write-once."""
        from bucketchat.audit.locks import add_lock_findings

        add_lock_findings(report, self._bucket(), self.cache_path, room)

    def sql(self, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """(columns, rows) of a read-only query over the cache's views."""
        from bucketchat.cache.readonly import run_read_only
        from bucketchat.projections.timeline.refresh import ensure_fresh

        ensure_fresh(self.cache_path)  # the timeline views read rows a crashed sync may leave
        return run_read_only(self.cache_path, query)

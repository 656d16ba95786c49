"""One user's session with one bucket: the write path and sync as single calls.

Used by the CLI, the demo and the chat alike, so that every writer follows the same
order: retry the outbox, learn the room from the bucket (so the chain continues where it
stands), publish the device key if the room has not seen it, compose, upload, ingest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.cache import open_cache
from bucketchat.errors import BucketError, UploadFailed, UsageError
from bucketchat.protocol.naming import check_room_id, metadata_path
from bucketchat.storage import Bucket
from bucketchat.sync.pull import Progress, Stage, SyncReport, pull
from bucketchat.timeutil import now_ms, utc_now

if TYPE_CHECKING:
    from bucketchat.compose import Composed
    from bucketchat.protocol.signing import SigningKey
    from bucketchat.sync.keys import AttestationCheck


@dataclass
class Client:
    bucket: Bucket
    cache_path: Path
    user: str | None = None
    key: SigningKey | None = None
    pinned: Mapping[str, list[str]] = field(default_factory=dict)
    check_attestation: AttestationCheck | None = None
    displayname: str | None = None
    attestation: dict[str, Any] | None = None
    clock: Callable[[], int] = now_ms

    def sync(
        self,
        room: str | None = None,
        progress: Progress | None = None,
        workers: int | None = None,
        stage: Stage | None = None,
    ) -> SyncReport:
        """Upload what waits in the outbox, then ingest the bucket (or one room)."""
        return pull(
            self.bucket,
            self.cache_path,
            room=room,
            pinned=dict(self.pinned),
            check_attestation=self.check_attestation,
            progress=progress,
            workers=workers,
            upload_outbox=True,
            stage=stage,
        )

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
        import json

        check_room_id(room_id)
        if lock_days is not None:
            self.bucket.ensure_locked_bucket(lock_days)
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
        from bucketchat.errors import ObjectExists

        created = True
        try:
            self.bucket.create(metadata_path(room_id), json.dumps(metadata, indent=2).encode())
        except ObjectExists:
            created = False
        self.join(room_id)
        return created

"""Write real signed rooms into a local folder bucket, for query, search and export tests.

Each device signs with its own Ed25519 key and chains its events per room (§4, §7); the
first event of a device in a room is its join carrying the public key, so every reader
accepts the key on first use (§5). ``flush`` writes each device's pending events as new
create-only files, so a test can sync, add more and sync again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bucketchat.protocol.canonical import event_hash, signing_bytes
from bucketchat.protocol.naming import client_id_for, event_time, log_file_path
from bucketchat.protocol.signing import SigningKey, fingerprint

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass
class Device:
    sender_id: str
    key: SigningKey
    prev: dict[str, str | None] = field(default_factory=dict)  # room → last event hash
    joined: set[str] = field(default_factory=set)

    @property
    def client_id(self) -> str:
        return client_id_for(self.sender_id, fingerprint(self.key.public_key))


class ChatBuilder:
    def __init__(self, root: Path, start_ms: int = BASE_MS) -> None:
        self.root = root
        self.clock = start_ms
        self.devices: dict[str, Device] = {}
        self.pending: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.counter = 0
        self.events: list[dict[str, Any]] = []

    def device(self, sender_id: str) -> Device:
        if sender_id not in self.devices:
            seed = hashlib.sha256(f"chatbuilder:{sender_id}".encode()).digest()
            self.devices[sender_id] = Device(sender_id, SigningKey(seed))
        return self.devices[sender_id]

    def tick(self, ms: int = 1000) -> int:
        self.clock += ms
        return self.clock

    def event(
        self,
        sender_id: str,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        *,
        parent: str | None = None,
        event_id: str | None = None,
        at: int | None = None,
        auto_join: bool = True,
    ) -> dict[str, Any]:
        device = self.device(sender_id)
        if auto_join and room_id not in device.joined and event_type != "m.room.member":
            self.join(sender_id, room_id)
        timestamp = at if at is not None else self.tick()
        self.counter += 1
        unique = f"{self.counter:08d}-0000-4000-8000-000000000000"
        event: dict[str, Any] = {
            "event_id": event_id or f"{room_id}::{event_time(timestamp)}::{unique}",
            "room_id": room_id,
            "timestamp_ms": timestamp,
            "sender_id": sender_id,
            "type": event_type,
            "parent_event_id": parent,
            "prev_event_hash": device.prev.get(room_id),
            "content": content,
        }
        event["signature"] = device.key.sign(signing_bytes(event))
        device.prev[room_id] = event_hash(event)
        self.pending.setdefault((sender_id, room_id), []).append(event)
        self.events.append(event)
        return event

    def join(self, sender_id: str, room_id: str, displayname: str | None = None) -> dict[str, Any]:
        device = self.device(sender_id)
        device.joined.add(room_id)
        content: dict[str, Any] = {"membership": "join", "public_key": device.key.public_key}
        if displayname:
            content["displayname"] = displayname
        return self.event(sender_id, room_id, "m.room.member", content)

    def leave(self, sender_id: str, room_id: str) -> dict[str, Any]:
        return self.event(sender_id, room_id, "m.room.member", {"membership": "leave"})

    def message(
        self, sender_id: str, room_id: str, body: str, *, parent: str | None = None, **kw: Any
    ) -> dict[str, Any]:
        content = {"body": body, "msgtype": "m.text"}
        return self.event(sender_id, room_id, "m.room.message", content, parent=parent, **kw)

    def edit(self, sender_id: str, target: dict[str, Any] | str, body: str) -> dict[str, Any]:
        target_id, room_id = _target(target)
        content = {"replaces": target_id, "new_content": {"body": body, "msgtype": "m.text"}}
        return self.event(sender_id, room_id, "m.room.edit", content)

    def redact(
        self, sender_id: str, target: dict[str, Any] | str, reason: str | None = None
    ) -> dict[str, Any]:
        target_id, room_id = _target(target)
        content: dict[str, Any] = {"redacts": target_id}
        if reason:
            content["reason"] = reason
        return self.event(sender_id, room_id, "m.room.redaction", content)

    def react(self, sender_id: str, target: dict[str, Any] | str, key: str) -> dict[str, Any]:
        target_id, room_id = _target(target)
        content = {"relates_to": target_id, "reaction": key}
        return self.event(sender_id, room_id, "m.room.reaction", content)

    def flush(self) -> list[Path]:
        """Write every device's pending events, one new file per (device, room)."""
        written = []
        for (sender_id, room_id), events in sorted(self.pending.items()):
            if not events:
                continue
            device = self.device(sender_id)
            stamps = [e["timestamp_ms"] for e in events]
            key = log_file_path(room_id, min(stamps), max(stamps), device.client_id)
            path = self.root / key
            if path.exists():
                raise FileExistsError(key)  # files are immutable (§1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
            written.append(path)
            meta = self.root / "rooms" / room_id / "metadata.json"
            if not meta.exists():
                meta.write_text(
                    json.dumps(
                        {
                            "room_id": room_id,
                            "created_at": "2026-01-01T00:00:00Z",
                            "version": "1.0",
                            "protocol": "bucket-chat-v1",
                            "name": room_id.title(),
                        }
                    ),
                    encoding="utf-8",
                )
        self.pending.clear()
        return written


def _target(target: dict[str, Any] | str) -> tuple[str, str]:
    if isinstance(target, str):
        return target, target.split("::", 1)[0]
    return str(target["event_id"]), str(target["room_id"])

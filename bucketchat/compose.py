"""Composing events: build, sign and chain a new event and put it in the cache's outbox.

``prev_event_hash`` is the head of this device key's chain in the room, found from the
outbox first (events not uploaded yet) and then from the events the bucket already holds,
so a reinstalled device or a second process continues the chain instead of restarting or
forking it. Timestamps never go backwards along the chain.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bucketchat.cache import Cache
from bucketchat.errors import BadIdentifier
from bucketchat.protocol.canonical import event_hash, signing_bytes
from bucketchat.protocol.models import CONTENT_MODELS, Event
from bucketchat.protocol.naming import check_room_id, event_id_room, new_event_id
from bucketchat.protocol.signing import SigningKey
from bucketchat.timeutil import now_ms, utc_now

OUTBOX_HEAD = """
SELECT event_hash, timestamp_ms FROM outbox
WHERE room_id = ? AND device_key = ? AND (uploaded_at IS NULL) = ?
ORDER BY outbox_id DESC LIMIT 1
"""
CHAIN_HEAD = """
SELECT c.event_hash, c.timestamp_ms FROM event_rows c
WHERE c.room_id = $room AND c.signer_key = $key AND c.sender_id = $sender
  AND NOT EXISTS (SELECT 1 FROM event_rows n
                  WHERE n.room_id = $room AND n.signer_key = $key AND n.sender_id = $sender
                    AND n.prev_event_hash = c.event_hash)
ORDER BY c.timestamp_ms DESC, c.event_id DESC, c.event_hash DESC LIMIT 1
"""
KEY_PUBLISHED = """
SELECT 1 FROM event_rows
WHERE room_id = ? AND sender_id = ? AND type = 'm.room.member' AND public_key = ?
  AND membership = 'join'
UNION ALL
SELECT 1 FROM outbox
WHERE room_id = ? AND sender_id = ? AND device_key = ?
  AND json_extract_string(line, '$.type') = 'm.room.member'
  AND json_extract_string(line, '$.content.public_key') = device_key
LIMIT 1
"""
NEXT_OUTBOX_ID = "SELECT coalesce(max(outbox_id), 0) + 1 FROM outbox"
INSERT_OUTBOX = """
INSERT INTO outbox (outbox_id, room_id, sender_id, device_key, event_id, event_hash,
                    timestamp_ms, line, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


@dataclass(frozen=True)
class Composed:
    event_id: str
    event_hash: str
    room_id: str
    line: str


def chain_head(
    cache: Cache, room_id: str, sender_id: str, key: SigningKey
) -> tuple[str, int] | None:
    """The event the next one follows.

    The newest event still waiting in the outbox, if any; otherwise the later of the
    chain's head in the cache (what the bucket holds, including what other installs of
    the same key wrote) and the last event this cache uploaded (which the cache may not
    have read back yet). Timestamps never go backwards along a chain, so "later" is safe.
    """
    public = key.public_key
    pending = cache.one(OUTBOX_HEAD, [room_id, public, True])
    if pending is not None:
        return str(pending[0]), int(pending[1])
    heads = [
        cache.one(
            CHAIN_HEAD, {"room": room_id, "key": public, "sender": sender_id}
        ),
        cache.one(OUTBOX_HEAD, [room_id, public, False]),
    ]
    found = [(str(row[0]), int(row[1])) for row in heads if row is not None]
    return max(found, key=lambda head: head[1]) if found else None


def key_published(cache: Cache, room_id: str, sender_id: str, key: SigningKey) -> bool:
    public = key.public_key
    params = [room_id, sender_id, public, room_id, sender_id, public]
    return cache.one(KEY_PUBLISHED, params) is not None


def room_of_event(event_id: str) -> str:
    """The room an event id belongs to: its first part (PROTOCOL.md §3)."""
    parts = event_id.split("::")
    if len(parts) != 3:
        raise BadIdentifier(f"{event_id!r} is not an event id (room::time::unique)")
    return check_room_id(event_id_room(event_id))


def compose(
    cache: Cache,
    key: SigningKey,
    sender_id: str,
    room_id: str,
    event_type: str,
    content: dict[str, Any],
    parent_event_id: str | None = None,
    clock: Callable[[], int] = now_ms,
) -> Composed:
    """Sign and chain one event and append it to the outbox (inside a transaction)."""
    check_room_id(room_id)
    model = CONTENT_MODELS.get(event_type)
    if model is not None:
        model.model_validate(content)
    with cache.transaction():
        head = chain_head(cache, room_id, sender_id, key)
        timestamp = clock() if head is None else max(clock(), head[1])
        unsigned: dict[str, Any] = {
            "event_id": new_event_id(room_id, timestamp),
            "room_id": room_id,
            "timestamp_ms": timestamp,
            "sender_id": sender_id,
            "type": event_type,
            "parent_event_id": parent_event_id,
            "prev_event_hash": None if head is None else head[0],
            "content": content,
        }
        signed = dict(unsigned, signature=key.sign(signing_bytes(unsigned)))
        event = Event.model_validate(signed)
        line = json.dumps(event.wire(), ensure_ascii=False)
        digest = event_hash(signed)
        outbox_id = cache.one(NEXT_OUTBOX_ID)
        assert outbox_id is not None
        cache.execute(
            INSERT_OUTBOX,
            [
                outbox_id[0],
                room_id,
                sender_id,
                key.public_key,
                signed["event_id"],
                digest,
                timestamp,
                line,
                utc_now(),
            ],
        )
    return Composed(str(signed["event_id"]), digest, room_id, line)


def join_content(
    key: SigningKey, displayname: str | None = None, attestation: dict[str, Any] | None = None
) -> dict[str, Any]:
    content: dict[str, Any] = {"membership": "join", "public_key": key.public_key}
    if displayname:
        content["displayname"] = displayname
    if attestation:
        content["attestation"] = attestation
    return content


def message_content(text: str, msgtype: str = "m.text") -> dict[str, Any]:
    return {"body": text, "msgtype": msgtype}


def edit_content(target: str, text: str) -> dict[str, Any]:
    return {"replaces": target, "new_content": {"body": text, "msgtype": "m.text"}}


def redaction_content(target: str, reason: str | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"redacts": target}
    if reason:
        content["reason"] = reason
    return content


def reaction_content(target: str, reaction: str) -> dict[str, Any]:
    return {"relates_to": target, "reaction": reaction}

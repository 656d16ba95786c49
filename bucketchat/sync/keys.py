"""Key decisions in the cache: candidate keys, late verification, and §5 per room.

After new events land, each touched room's member events are walked in timeline order
(``protocol.trust.resolve_keys``) and the outcome replaces the room's rows in
``key_state``, ``invalid_member_events`` and ``key_findings``; the ``events`` view derives
every event's trust from them. Events that no candidate key verified are tried again
whenever their sender has more candidate keys than when they were read, so a key that
arrives later verifies events stored earlier.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.cache import Cache, open_cache
from bucketchat.protocol.trust import KeyEvent, resolve_keys
from bucketchat.sync.reader import KeyRing, verify_again

if TYPE_CHECKING:
    from bucketchat.sync.pull import Pulled

# (sender, public key, attestation, at_ms) → (verified, why): bucketchat.attestation makes
# one from the trusted issuers of the config file; its ``fingerprint`` names those settings.
AttestationCheck = Callable[[str, str, dict[str, Any], int], tuple[bool, str]]

PUBLISHED_KEYS = """
SELECT DISTINCT sender_id, public_key FROM event_rows
WHERE room_id = ? AND type = 'm.room.member' AND public_key IS NOT NULL
ORDER BY sender_id, public_key
"""
UNVERIFIED_WITH_NEW_KEYS = """
SELECT e.raw, e.sender_id, e.event_hash, e.seq
FROM event_rows e JOIN candidate_counts c ON c.sender_id = e.sender_id
WHERE e.room_id = ? AND e.signer_key IS NULL AND e.keys_tried < c.keys AND e.seq > ?
ORDER BY e.seq LIMIT ?
"""
# A key that arrives after a big backlog (say, pinned after a first sync of a million
# one-event files) verifies it all again: a chunk at a time, so memory stays bounded (the
# raw lines of a million events are ~600 MB as Python strings), and on every core for a
# big chunk (Ed25519 and the parser ~60 µs an event; the workers start in ~0.5 s).
LATE_CHUNK_ROWS = 50_000
LATE_POOL_ROWS = 20_000
# One statement for all of a room's re-verified events, from a registered Arrow table: an
# UPDATE per event cost ~0.8 ms, so 100,000 events stored before their senders' keys
# took over a minute to settle. A row is one copy of an event: (hash, signature).
SET_SIGNERS = """
UPDATE event_rows SET signer_key = v.signer_key, keys_tried = v.keys_tried
FROM verified_again v
WHERE event_rows.room_id = $room AND event_rows.event_hash = v.event_hash
  AND event_rows.signature = v.signature AND event_rows.signer_key IS NULL
"""
KEY_EVENTS = """
SELECT event_hash, event_id, timestamp_ms, sender_id, public_key, signer_key,
       json_extract(content, '$.attestation')::VARCHAR, json_extract(content, '$.revokes')::VARCHAR
FROM event_rows
WHERE room_id = ? AND type = 'm.room.member' AND public_key IS NOT NULL
  AND content_problem IS NULL
"""
SET_ATTESTATION = """
UPDATE event_rows SET attestation_ok = ?, attestation_detail = ?
WHERE room_id = ? AND event_hash = ?
"""
ROOM_SENDERS = "SELECT DISTINCT sender_id FROM event_rows WHERE room_id = ?"
# What a room's key decisions were made from: its member events that publish keys, as
# "max(seq):count" (a sequence number is taken at insert, so a slower transaction can
# commit a smaller one later; the count still moves). Kept per room in cache_meta.
KEY_EVENT_MARKS = """
SELECT room_id, max(seq)::VARCHAR || ':' || count(*)::VARCHAR FROM event_rows
WHERE type = 'm.room.member' AND public_key IS NOT NULL
GROUP BY room_id
"""
DECIDED_PREFIX = "keys.decided."
DECIDED_MARKS = """
SELECT substr(key, length($prefix) + 1), value FROM cache_meta WHERE starts_with(key, $prefix)
"""
ALL_ROOMS = "SELECT DISTINCT room_id FROM event_rows"
CLEAR_ROOM_KEYS = (
    "DELETE FROM key_state WHERE room_id = ?",
    "DELETE FROM invalid_member_events WHERE room_id = ?",
    "DELETE FROM key_findings WHERE room_id = ?",
)


def candidate_keys(
    cache: Cache, room_id: str, pinned: Mapping[str, Iterable[str]]
) -> dict[str, list[str]]:
    candidates: dict[str, list[str]] = defaultdict(list)
    for sender, keys in pinned.items():
        candidates[sender].extend(keys)
    for sender, key in cache.rows(PUBLISHED_KEYS, [room_id]):
        if key not in candidates[sender]:
            candidates[sender].append(key)
    return dict(candidates)


def key_event_marks(cache: Cache) -> dict[str, str]:
    """Room → the mark of the member events that publish keys, as stored now."""
    return {str(room): str(mark) for room, mark in cache.rows(KEY_EVENT_MARKS)}


def undecided_rooms(cache: Cache, marks: Mapping[str, str]) -> set[str]:
    """Rooms whose member events that publish keys are not the ones their keys were last
    decided from: a sync that stored them may have died before deciding, while another
    sync went on (the global keys_fingerprint is cleared by the first and set again by
    the second)."""
    rows = cache.rows(DECIDED_MARKS, {"prefix": DECIDED_PREFIX})
    decided = {str(room): str(mark) for room, mark in rows}
    return {room for room, mark in marks.items() if decided.get(room) != mark}


def record_decided(cache: Cache, rooms: Iterable[str], marks: Mapping[str, str]) -> None:
    for room in rooms:
        if room in marks:
            cache.set_meta(DECIDED_PREFIX + room, marks[room])


def room_candidate_keys(
    cache: Cache, room_id: str, pinned: Mapping[str, list[str]]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(the pinned keys of the room's senders, every candidate key of its senders)."""
    senders = {row[0] for row in cache.rows(ROOM_SENDERS, [room_id])}
    room_pinned = {sender: keys for sender, keys in pinned.items() if sender in senders}
    return room_pinned, candidate_keys(cache, room_id, room_pinned)


def _late_chunk(
    cache: Cache, room_id: str, candidates: Mapping[str, list[str]], after: int
) -> list[tuple[str, str, str, int]]:
    """The next LATE_CHUNK_ROWS events after seq ``after`` whose sender gained keys."""
    import pyarrow as pa

    ring = KeyRing(candidates)
    counts = pa.table(
        {
            "sender_id": pa.array(list(candidates), type=pa.string()),
            "keys": pa.array([ring.count(sender) for sender in candidates], type=pa.int32()),
        }
    )
    cache.register("candidate_counts", counts)
    try:
        rows = cache.rows(
            UNVERIFIED_WITH_NEW_KEYS, [room_id, after, LATE_CHUNK_ROWS]
        )
    finally:
        cache.unregister("candidate_counts")
    return [(str(raw), str(sender), str(digest), int(seq)) for raw, sender, digest, seq in rows]


def _verify_chunk(
    chunk: list[tuple[str, str, str, int]],
    candidates: Mapping[str, list[str]],
    cpu: int,
    pool: Callable[[], Any],
) -> list[tuple[str, str, str | None, int]]:
    lines = [(raw, sender, digest) for raw, sender, digest, _ in chunk]
    if cpu > 1 and len(lines) >= LATE_POOL_ROWS:
        parts = [lines[index::cpu] for index in range(cpu)]
        return [
            outcome
            for part in pool().map(verify_again, parts, [candidates] * cpu)
            for outcome in part
        ]
    return verify_again(lines, candidates)


def _cpu(workers: int | None) -> int:
    return workers if workers is not None else (os.cpu_count() or 1)


@contextlib.contextmanager
def _lazy_pool(cpu: int) -> Iterator[Callable[[], Any]]:
    """A function that starts the worker pool on first use; the pool stops on exit."""
    with contextlib.ExitStack() as stack:
        started: list[Any] = []

        def pool() -> Any:
            if not started:
                from bucketchat.sync.workers import worker_pool

                started.append(stack.enter_context(worker_pool(cpu)))
            return started[0]

        yield pool


def verify_late(
    cache: Cache,
    room_id: str,
    candidates: Mapping[str, list[str]],
    workers: int | None = None,
) -> int:
    """Verify again the room's unverified events whose sender has gained candidate keys
    (on up to ``workers`` processes, as the sync that read them; None: every core)."""
    cpu = _cpu(workers)
    found = 0
    after = -1  # the last seq read: rows that do not parse stay unverified and come back
    with _lazy_pool(cpu) as pool:
        while chunk := _late_chunk(cache, room_id, candidates, after):
            after = chunk[-1][3]
            found += _store_outcomes(cache, room_id, _verify_chunk(chunk, candidates, cpu, pool))
            if len(chunk) < LATE_CHUNK_ROWS:
                break
    return found


def verify_late_unheld(
    cache_path: Path,
    rooms: Iterable[str],
    pinned: Mapping[str, list[str]],
    workers: int | None = None,
    *,
    every_room: bool = False,
) -> int:
    """``verify_late`` for ``rooms`` (or ``every_room``) before a sync decides their keys,
    holding the cache only to store a chunk's outcome and read the next, never to verify.

    A key that arrives after a big backlog (pinned after a first sync of a million
    one-event files, say) verifies it all again: ~40 s on two cores, far longer than
    readers wait for the cache. What is left when the keys are decided (events another
    sync stored meanwhile) is verified then, inside that transaction, by ``verify_late``.
    """
    waiting = sorted(rooms)
    if not waiting and not every_room:
        return 0  # no room gained keys: nothing to verify again, no open of the cache
    cpu = _cpu(workers)
    found = 0
    after = -1
    stored: tuple[str, list[tuple[str, str, str | None, int]]] | None = None
    with _lazy_pool(cpu) as pool:
        while True:
            chunk: list[tuple[str, str, str, int]] = []
            candidates: dict[str, list[str]] = {}
            with open_cache(cache_path) as cache:
                if every_room:
                    all_rooms = cache.rows(ALL_ROOMS)
                    waiting = sorted(set(waiting) | {str(row[0]) for row in all_rooms})
                    every_room = False
                if stored is not None:
                    with cache.transaction():
                        found += _store_outcomes(cache, *stored)
                    stored = None
                while waiting and not chunk:
                    _, candidates = room_candidate_keys(cache, waiting[0], pinned)
                    chunk = _late_chunk(cache, waiting[0], candidates, after)
                    if not chunk:
                        waiting.pop(0)
                        after = -1
            if not chunk:
                return found
            room_id = waiting[0]
            after = chunk[-1][3]
            if len(chunk) < LATE_CHUNK_ROWS:
                waiting.pop(0)
                after = -1
            stored = (room_id, _verify_chunk(chunk, candidates, cpu, pool))


def _store_outcomes(
    cache: Cache, room_id: str, results: list[tuple[str, str, str | None, int]]
) -> int:
    """Write what verifying again found (signer or None, keys tried); the number signed."""
    import pyarrow as pa

    digests, signatures, signers, tried = zip(*results, strict=True) if results else ((),) * 4
    outcome = pa.table(
        {
            "event_hash": pa.array(digests, type=pa.string()),
            "signature": pa.array(signatures, type=pa.string()),
            "signer_key": pa.array(signers, type=pa.string()),
            "keys_tried": pa.array(tried, type=pa.int32()),
        }
    )
    cache.register("verified_again", outcome)
    try:
        cache.execute(SET_SIGNERS, {"room": room_id})
    finally:
        cache.unregister("verified_again")
    return sum(1 for _, _, signer, _ in results if signer)


def _json_or_none(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def refresh_room_keys(
    cache: Cache,
    room_id: str,
    pinned: Mapping[str, list[str]],
    check_attestation: AttestationCheck,
    workers: int | None = None,
) -> None:
    """Re-decide one room's keys and store the outcome (inside the caller's transaction)."""
    room_pinned, candidates = room_candidate_keys(cache, room_id, pinned)
    verify_late(cache, room_id, candidates, workers)

    key_events = []
    attestation_updates = []
    for row in cache.rows(KEY_EVENTS, [room_id]):
        digest, event_id, timestamp, sender, public_key, signer, attestation, revokes = row
        attestation_ok: bool | None = None
        attestation_value = _json_or_none(attestation)
        if attestation_value is not None:
            if isinstance(attestation_value, dict):
                attestation_ok, detail = check_attestation(
                    sender, public_key, attestation_value, timestamp
                )
            else:
                attestation_ok, detail = False, "attestation is not an object"
            attestation_updates.append([attestation_ok, detail, room_id, digest])
        revoked = _json_or_none(revokes)
        key_events.append(
            KeyEvent(
                order=(timestamp, event_id, digest),
                event_hash=digest,
                sender_id=sender,
                public_key=public_key,
                signer=signer,
                attestation_ok=attestation_ok,
                revokes=tuple(k for k in revoked if isinstance(k, str))
                if isinstance(revoked, list)
                else (),
            )
        )
    if attestation_updates:
        cache.executemany(SET_ATTESTATION, attestation_updates)
    state = resolve_keys(key_events, room_pinned)
    for statement in CLEAR_ROOM_KEYS:
        cache.execute(statement, [room_id])
    pinned_pairs = {(s, k) for s, keys in room_pinned.items() for k in keys}
    rows: list[list[Any]] = [
        [
            room_id,
            sender,
            key,
            "accepted",
            accepted.trust,
            accepted.revoked_after_ms,
            (sender, key) in pinned_pairs,
        ]
        for (sender, key), accepted in state.accepted.items()
    ]
    rows += [
        [room_id, sender, key, "conflict", None, None, False] for sender, key in state.conflicted
    ]
    if rows:
        cache.executemany("INSERT INTO key_state VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    if state.invalid_events:
        cache.executemany(
            "INSERT INTO invalid_member_events VALUES (?, ?)",
            [[room_id, digest] for digest in sorted(state.invalid_events)],
        )
    if state.findings:
        cache.executemany(
            "INSERT INTO key_findings VALUES (?, ?, ?, ?, ?, ?)",
            [
                [room_id, f.kind, f.sender_id, f.public_key, f.event_hash, f.detail]
                for f in state.findings
            ],
        )


def decide_keys(
    cache: Cache,
    pulled: Pulled,
    pinned: Mapping[str, list[str]],
    check_attestation: AttestationCheck,
    workers: int | None = None,
) -> None:
    """Decide again, in one transaction, the keys of the rooms a pull can have changed.

    A room's key decisions follow from its member events that publish keys and from the
    pinned keys of its senders: a sync that stored neither leaves them as they were
    (~90 ms a room of 100k events not spent on each new message). Call
    ``verify_late_unheld`` first, with the cache closed, for the pull's keyed rooms.
    """
    with cache.transaction():
        marks = key_event_marks(cache)
        rooms = undecided_rooms(cache, marks) | (set(pulled.touched_rooms) if pinned else set())
        if pulled.keys_changed:
            rooms |= {row[0] for row in cache.rows(ALL_ROOMS)}
        for room_id in sorted(rooms):
            refresh_room_keys(cache, room_id, pinned, check_attestation, workers)
        record_decided(cache, rooms, marks)
        cache.set_meta("keys_fingerprint", pulled.keys_fingerprint)

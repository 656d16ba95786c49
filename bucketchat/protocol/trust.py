"""Keys, devices and trust (PROTOCOL.md §5) as a pure function of the events seen.

The caller verifies signatures and attestations (crypto facts that do not depend on
order) and hands over every member event that carries a ``public_key``; ``resolve_keys``
walks them in timeline order, so every reader reaches the same answer whatever order the
files arrived in. ``event_trust`` then judges any event from the key that verified it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import groupby

from bucketchat.protocol.signing import public_key_problem

ATTESTED = "attested"
TOFU = "tofu"
UNVERIFIED = "unverified"
INVALID = "invalid"


@dataclass(frozen=True)
class KeyEvent:
    """A member event of ``sender_id`` publishing ``public_key``, signed by ``signer``.

    ``signer`` is the published or pinned key of the sender that verifies the event (None
    when none does); ``attestation_ok`` is None when the event carries no attestation.
    """

    order: tuple[int, str, str]  # (timestamp_ms, event_id, event_hash): timeline order
    event_hash: str
    sender_id: str
    public_key: str
    signer: str | None
    attestation_ok: bool | None = None
    revokes: tuple[str, ...] = ()


@dataclass
class AcceptedKey:
    trust: str
    revoked_after_ms: int | None = None

    def signs_at(self, timestamp_ms: int) -> bool:
        return self.revoked_after_ms is None or timestamp_ms <= self.revoked_after_ms


@dataclass(frozen=True)
class KeyFinding:
    kind: str  # key_conflict | weak_key | attestation_invalid
    sender_id: str
    public_key: str
    event_hash: str | None
    detail: str


@dataclass
class KeyState:
    """Accepted keys per (sender, key), and the verdicts on member events."""

    accepted: dict[tuple[str, str], AcceptedKey] = field(default_factory=dict)
    conflicted: set[tuple[str, str]] = field(default_factory=set)
    invalid_events: set[str] = field(default_factory=set)  # key_conflict / unsigned member events
    findings: list[KeyFinding] = field(default_factory=list)

    def sender_has_keys(self, sender_id: str) -> bool:
        return any(sender == sender_id for sender, _ in self.accepted)

    def trust_of(
        self, sender_id: str, signer: str | None, timestamp_ms: int, event_hash: str
    ) -> str:
        """An event's trust level from the key that verified it (None: no known key did)."""
        if event_hash in self.invalid_events:
            return INVALID
        if signer is not None:
            accepted = self.accepted.get((sender_id, signer))
            if accepted is not None and accepted.signs_at(timestamp_ms):
                return accepted.trust
        return INVALID if self.sender_has_keys(sender_id) else UNVERIFIED


def resolve_keys(
    key_events: Iterable[KeyEvent],
    pinned: Mapping[str, Iterable[str]] | None = None,
) -> KeyState:
    state = KeyState()
    for sender, keys in (pinned or {}).items():
        for key in keys:
            problem = public_key_problem(key)
            if problem:
                state.findings.append(
                    KeyFinding("weak_key", sender, key, None, f"pinned key is {problem}")
                )
            else:
                state.accepted[(sender, key)] = AcceptedKey(ATTESTED)

    events = sorted(key_events, key=lambda event: event.order)
    weak: set[tuple[str, str]] = set()
    for event in events:
        problem = public_key_problem(event.public_key)
        if problem and (event.sender_id, event.public_key) not in weak:
            weak.add((event.sender_id, event.public_key))
            state.findings.append(
                KeyFinding(
                    "weak_key",
                    event.sender_id,
                    event.public_key,
                    event.event_hash,
                    f"published key is {problem}",
                )
            )
        if event.attestation_ok is False:
            state.findings.append(
                KeyFinding(
                    "attestation_invalid",
                    event.sender_id,
                    event.public_key,
                    event.event_hash,
                    "the key's attestation does not verify",
                )
            )
    attested_senders = {
        event.sender_id
        for event in events
        if event.attestation_ok
        and event.signer == event.public_key
        and (event.sender_id, event.public_key) not in weak
    } | {sender for sender, _ in state.accepted}

    # copies of one event (same order, same hash) differ only in their signature: the copy
    # an accepted key verifies is the event, so a forged copy never shadows it (§4)
    for _, copies in groupby(events, key=lambda event: event.order):
        event = min(copies, key=lambda copy: _copy_rank(state, copy))
        _walk_one(state, event, event.sender_id in attested_senders, weak)
    return state


def _copy_rank(state: KeyState, event: KeyEvent) -> tuple[int, str]:
    """Which copy of an event counts: signed by an accepted key, self-signed, anything else."""
    signer = event.signer
    voucher = state.accepted.get((event.sender_id, signer)) if signer is not None else None
    if voucher is not None and voucher.signs_at(event.order[0]):
        return (0, signer or "")
    if signer is not None and signer == event.public_key:
        return (1, signer)
    return (2, signer or "")


def _walk_one(
    state: KeyState, event: KeyEvent, sender_attested: bool, weak: set[tuple[str, str]]
) -> None:
    sender, key, signer = event.sender_id, event.public_key, event.signer
    timestamp = event.order[0]
    if (sender, key) in weak:
        state.invalid_events.add(event.event_hash)
        return
    if (sender, key) in state.accepted:
        return  # rule 1: a re-join changes nothing
    voucher = state.accepted.get((sender, signer)) if signer is not None else None
    if signer != key and voucher is not None and voucher.signs_at(timestamp):
        state.accepted[(sender, key)] = AcceptedKey(voucher.trust)  # rule 2: vouching
        for revoked in event.revokes:
            old = state.accepted.get((sender, revoked))
            if old is not None and old.revoked_after_ms is None and revoked != key:
                old.revoked_after_ms = timestamp
        return
    if signer is not None and signer == key:  # rule 3: self-introduction
        if event.attestation_ok:
            state.accepted[(sender, key)] = AcceptedKey(ATTESTED)
            return
        if not state.sender_has_keys(sender) and not sender_attested:
            state.accepted[(sender, key)] = AcceptedKey(TOFU)
            return
        state.conflicted.add((sender, key))
        state.invalid_events.add(event.event_hash)
        state.findings.append(
            KeyFinding(
                "key_conflict",
                sender,
                key,
                event.event_hash,
                "a self-introduced key for a sender who already has a trusted key",
            )
        )
        return
    state.invalid_events.add(event.event_hash)  # rule 4: no accepted key signed it

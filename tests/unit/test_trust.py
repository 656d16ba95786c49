"""Keys, devices and trust (PROTOCOL.md §5): ``resolve_keys`` and ``KeyState.trust_of``."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bucketchat.protocol.signing import SigningKey, public_key_problem
from bucketchat.protocol.trust import (
    ATTESTED,
    INVALID,
    TOFU,
    UNVERIFIED,
    KeyEvent,
    KeyState,
    resolve_keys,
)

ALICE = "alice@example.com"
BOB = "bob@example.com"
K1, K2, K3, K4 = (SigningKey(bytes([n]) * 32).public_key for n in range(1, 5))
# speccheck case 3's key: a valid curve point, but not of prime order
MIXED_ORDER = base64.b64encode(
    bytes.fromhex("cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d")
).decode()
IDENTITY = base64.b64encode(b"\x01" + bytes(31)).decode()  # small order (the neutral point)
NOT_BASE64 = "not a key"


def key_event(
    ts: int,
    sender: str,
    key: str,
    signer: str | None,
    *,
    attestation_ok: bool | None = None,
    revokes: tuple[str, ...] = (),
    event_id: str | None = None,
) -> KeyEvent:
    event_id = event_id or f"room::{ts}::{sender}-{key[:8]}"
    fields = repr((ts, event_id, sender, key, attestation_ok, revokes)).encode()
    digest = base64.b64encode(hashlib.sha256(fields).digest()).decode()
    return KeyEvent(
        order=(ts, event_id, digest),
        event_hash=digest,
        sender_id=sender,
        public_key=key,
        signer=signer,
        attestation_ok=attestation_ok,
        revokes=revokes,
    )


def message_trust(state: KeyState, sender: str, signer: str | None, ts: int) -> str:
    """Trust of an ordinary (non-member) event of ``sender`` verified by ``signer``."""
    return state.trust_of(sender, signer, ts, f"message-{sender}-{signer}-{ts}")


def kinds(state: KeyState) -> list[tuple[str, str, str]]:
    return [(f.kind, f.sender_id, f.public_key) for f in state.findings]


def test_keys_used_here() -> None:
    assert all(public_key_problem(k) is None for k in (K1, K2, K3, K4))
    assert public_key_problem(MIXED_ORDER) is not None
    assert public_key_problem(IDENTITY) is not None
    assert public_key_problem(NOT_BASE64) is not None


# --- tofu and key_conflict ----------------------------------------------------------------


def test_first_self_introduction_is_tofu() -> None:
    intro = key_event(1, ALICE, K1, K1)
    state = resolve_keys([intro])
    assert state.accepted[(ALICE, K1)].trust == TOFU
    assert state.findings == []
    assert state.trust_of(ALICE, K1, 1, intro.event_hash) == TOFU
    assert message_trust(state, ALICE, K1, 5) == TOFU


def test_second_self_introduced_key_is_a_conflict() -> None:
    first, second = key_event(1, ALICE, K1, K1), key_event(2, ALICE, K2, K2)
    state = resolve_keys([first, second])
    assert state.accepted[(ALICE, K1)].trust == TOFU
    assert (ALICE, K2) not in state.accepted
    assert (ALICE, K2) in state.conflicted
    assert kinds(state) == [("key_conflict", ALICE, K2)]
    assert state.findings[0].event_hash == second.event_hash
    assert state.trust_of(ALICE, K2, 2, second.event_hash) == INVALID
    assert message_trust(state, ALICE, K2, 3) == INVALID  # signed by a conflicting key
    assert message_trust(state, ALICE, K1, 3) == TOFU


def test_other_senders_are_independent() -> None:
    state = resolve_keys([key_event(1, ALICE, K1, K1), key_event(2, BOB, K2, K2)])
    assert state.accepted[(BOB, K2)].trust == TOFU
    assert state.findings == []
    assert message_trust(state, BOB, K1, 3) == INVALID  # alice's key does not sign for bob


def test_same_key_for_two_senders_is_judged_per_sender() -> None:
    state = resolve_keys([key_event(1, ALICE, K1, K1), key_event(2, BOB, K1, K1)])
    assert state.accepted[(ALICE, K1)].trust == TOFU
    assert state.accepted[(BOB, K1)].trust == TOFU


def test_rejoin_changes_nothing() -> None:
    events = [key_event(1, ALICE, K1, K1), key_event(9, ALICE, K1, K1, event_id="room::9::rejoin")]
    state = resolve_keys(events)
    assert state.accepted[(ALICE, K1)].trust == TOFU
    assert state.findings == [] and state.invalid_events == set()


# --- vouching and revocation --------------------------------------------------------------


def test_vouched_key_inherits_tofu() -> None:
    state = resolve_keys([key_event(1, ALICE, K1, K1), key_event(2, ALICE, K2, K1)])
    assert state.accepted[(ALICE, K2)].trust == TOFU
    assert state.findings == []
    assert message_trust(state, ALICE, K2, 3) == TOFU


def test_vouched_key_inherits_attested() -> None:
    events = [
        key_event(1, ALICE, K1, K1, attestation_ok=True),
        key_event(2, ALICE, K2, K1),
        key_event(3, ALICE, K3, K2),  # vouching chains
    ]
    state = resolve_keys(events)
    assert state.accepted[(ALICE, K1)].trust == ATTESTED
    assert state.accepted[(ALICE, K2)].trust == ATTESTED
    assert state.accepted[(ALICE, K3)].trust == ATTESTED


def test_vouched_by_a_pinned_key_is_attested() -> None:
    state = resolve_keys([key_event(2, ALICE, K2, K1)], pinned={ALICE: [K1]})
    assert state.accepted[(ALICE, K2)].trust == ATTESTED


def test_revoked_key_signs_nothing_dated_after_the_revoking_event() -> None:
    intro = key_event(1, ALICE, K1, K1)
    rotate = key_event(10, ALICE, K2, K1, revokes=(K1,))
    state = resolve_keys([intro, rotate])
    assert state.accepted[(ALICE, K2)].trust == TOFU
    assert message_trust(state, ALICE, K1, 9) == TOFU
    assert message_trust(state, ALICE, K1, 10) == TOFU  # same millisecond: not "after"
    assert message_trust(state, ALICE, K1, 11) == INVALID
    assert message_trust(state, ALICE, K2, 11) == TOFU
    assert state.trust_of(ALICE, K1, 1, intro.event_hash) == TOFU  # its own old member event


def test_revoke_another_device() -> None:
    events = [
        key_event(1, ALICE, K1, K1),
        key_event(2, ALICE, K2, K1),  # a second device
        key_event(5, ALICE, K3, K1, revokes=(K2,)),  # the first device drops the second
    ]
    state = resolve_keys(events)
    assert message_trust(state, ALICE, K2, 4) == TOFU
    assert message_trust(state, ALICE, K2, 6) == INVALID
    assert message_trust(state, ALICE, K1, 6) == TOFU


def test_revoked_key_cannot_vouch_afterwards() -> None:
    events = [
        key_event(1, ALICE, K1, K1),
        key_event(10, ALICE, K2, K1, revokes=(K1,)),
        key_event(20, ALICE, K3, K1),  # a stolen K1 tries to add a device
    ]
    state = resolve_keys(events)
    assert (ALICE, K3) not in state.accepted
    assert events[2].event_hash in state.invalid_events
    assert message_trust(state, ALICE, K3, 21) == INVALID


def test_a_key_cannot_revoke_itself_while_vouching_for_itself() -> None:
    events = [key_event(1, ALICE, K1, K1), key_event(2, ALICE, K2, K1, revokes=(K2,))]
    state = resolve_keys(events)
    assert message_trust(state, ALICE, K2, 3) == TOFU


def test_publication_signed_by_no_accepted_key_is_invalid() -> None:
    events = [
        key_event(1, ALICE, K1, K1),
        key_event(2, ALICE, K2, K3),  # K3 is no key of alice
        key_event(3, ALICE, K4, None),  # no published key verifies it
    ]
    state = resolve_keys(events)
    assert (ALICE, K2) not in state.accepted and (ALICE, K4) not in state.accepted
    assert {events[1].event_hash, events[2].event_hash} <= state.invalid_events
    assert state.trust_of(ALICE, K3, 2, events[1].event_hash) == INVALID
    assert "key_conflict" not in [f.kind for f in state.findings]


def test_vouching_needs_the_voucher_first_in_timeline_order() -> None:
    """K2 vouched by K1 *before* K1 is introduced: K1 is not yet accepted then."""
    events = [key_event(1, ALICE, K2, K1), key_event(2, ALICE, K1, K1)]
    state = resolve_keys(events)
    assert (ALICE, K2) not in state.accepted
    assert state.accepted[(ALICE, K1)].trust == TOFU


# --- pinned and attested keys -------------------------------------------------------------


def test_pinned_key_is_attested_from_the_start_even_unpublished() -> None:
    state = resolve_keys([], pinned={ALICE: [K1]})
    assert state.accepted[(ALICE, K1)].trust == ATTESTED
    assert message_trust(state, ALICE, K1, 0) == ATTESTED


def test_pinned_key_published_is_attested_and_later_self_introduction_conflicts() -> None:
    events = [key_event(1, ALICE, K1, K1), key_event(2, ALICE, K2, K2)]
    state = resolve_keys(events, pinned={ALICE: [K1]})
    assert state.accepted[(ALICE, K1)].trust == ATTESTED
    assert kinds(state) == [("key_conflict", ALICE, K2)]
    assert message_trust(state, ALICE, K2, 3) == INVALID


def test_pinned_key_outranks_an_earlier_unpinned_self_introduction() -> None:
    events = [key_event(1, ALICE, K2, K2), key_event(2, ALICE, K1, K1)]
    state = resolve_keys(events, pinned={ALICE: [K1]})
    assert state.accepted[(ALICE, K1)].trust == ATTESTED
    assert (ALICE, K2) in state.conflicted
    assert kinds(state) == [("key_conflict", ALICE, K2)]


def test_attested_key_outranks_an_earlier_tofu_key() -> None:
    early, attested = key_event(1, ALICE, K1, K1), key_event(5, ALICE, K2, K2, attestation_ok=True)
    state = resolve_keys([early, attested])
    assert state.accepted[(ALICE, K2)].trust == ATTESTED
    assert (ALICE, K1) not in state.accepted
    assert (ALICE, K1) in state.conflicted
    assert kinds(state) == [("key_conflict", ALICE, K1)]
    assert state.trust_of(ALICE, K1, 1, early.event_hash) == INVALID
    assert message_trust(state, ALICE, K1, 2) == INVALID  # even before the attested key came
    assert message_trust(state, ALICE, K2, 6) == ATTESTED


def test_two_attested_keys_are_both_accepted() -> None:
    events = [
        key_event(1, ALICE, K1, K1, attestation_ok=True),
        key_event(2, ALICE, K2, K2, attestation_ok=True),
    ]
    state = resolve_keys(events)
    assert state.accepted[(ALICE, K1)].trust == ATTESTED
    assert state.accepted[(ALICE, K2)].trust == ATTESTED
    assert state.findings == []


def test_failing_attestation_is_reported_and_judged_as_none() -> None:
    state = resolve_keys([key_event(1, ALICE, K1, K1, attestation_ok=False)])
    assert state.accepted[(ALICE, K1)].trust == TOFU
    assert kinds(state) == [("attestation_invalid", ALICE, K1)]


def test_failing_attestation_does_not_outrank_tofu() -> None:
    events = [key_event(1, ALICE, K1, K1), key_event(2, ALICE, K2, K2, attestation_ok=False)]
    state = resolve_keys(events)
    assert state.accepted[(ALICE, K1)].trust == TOFU
    assert sorted(kinds(state)) == [
        ("attestation_invalid", ALICE, K2),
        ("key_conflict", ALICE, K2),
    ]


def test_attestation_of_a_key_not_self_signed_makes_no_attested_sender() -> None:
    """An attestation on a publication no key of alice signed does not outrank tofu."""
    events = [key_event(1, ALICE, K1, K1), key_event(2, ALICE, K2, None, attestation_ok=True)]
    state = resolve_keys(events)
    assert state.accepted[(ALICE, K1)].trust == TOFU
    assert (ALICE, K2) not in state.accepted


# --- weak keys ----------------------------------------------------------------------------


def test_weak_published_key() -> None:
    events = [key_event(1, ALICE, MIXED_ORDER, MIXED_ORDER)]
    state = resolve_keys(events)
    assert kinds(state) == [("weak_key", ALICE, MIXED_ORDER)]
    assert state.findings[0].event_hash == events[0].event_hash
    assert (ALICE, MIXED_ORDER) not in state.accepted
    assert events[0].event_hash in state.invalid_events
    assert message_trust(state, ALICE, MIXED_ORDER, 2) == UNVERIFIED  # alice has no key


def test_weak_key_reported_once_per_sender_and_key() -> None:
    events = [
        key_event(1, ALICE, IDENTITY, IDENTITY),
        key_event(2, ALICE, IDENTITY, IDENTITY, event_id="room::2::again"),
        key_event(3, ALICE, NOT_BASE64, None),
    ]
    state = resolve_keys(events)
    assert kinds(state) == [("weak_key", ALICE, IDENTITY), ("weak_key", ALICE, NOT_BASE64)]


def test_weak_attested_key_neither_accepted_nor_outranking() -> None:
    events = [
        key_event(1, ALICE, K1, K1),
        key_event(2, ALICE, MIXED_ORDER, MIXED_ORDER, attestation_ok=True),
    ]
    state = resolve_keys(events)
    assert state.accepted[(ALICE, K1)].trust == TOFU
    assert (ALICE, MIXED_ORDER) not in state.accepted
    assert kinds(state) == [("weak_key", ALICE, MIXED_ORDER)]


def test_weak_key_vouched_by_an_accepted_key_stays_out() -> None:
    events = [key_event(1, ALICE, K1, K1), key_event(2, ALICE, IDENTITY, K1)]
    state = resolve_keys(events)
    assert (ALICE, IDENTITY) not in state.accepted
    assert kinds(state) == [("weak_key", ALICE, IDENTITY)]


def test_weak_pinned_key() -> None:
    state = resolve_keys([], pinned={ALICE: [MIXED_ORDER]})
    assert kinds(state) == [("weak_key", ALICE, MIXED_ORDER)]
    assert state.findings[0].event_hash is None
    assert state.accepted == {}


# --- unverified ---------------------------------------------------------------------------


def test_sender_without_keys_is_unverified() -> None:
    state = resolve_keys([key_event(1, ALICE, K1, K1)])
    assert message_trust(state, BOB, None, 2) == UNVERIFIED
    assert message_trust(state, BOB, K2, 2) == UNVERIFIED
    assert message_trust(resolve_keys([]), ALICE, None, 2) == UNVERIFIED


def test_sender_with_keys_but_no_verifying_key_is_invalid() -> None:
    state = resolve_keys([key_event(1, ALICE, K1, K1)])
    assert message_trust(state, ALICE, None, 2) == INVALID


# --- order independence -------------------------------------------------------------------


def test_forged_copy_of_a_key_event_never_shadows_the_real_one() -> None:
    """Same hash, a signature no key verifies (signer None): whatever the arrival order."""
    real = key_event(1, ALICE, K1, K1)
    forged = KeyEvent(real.order, real.event_hash, ALICE, K1, None)
    for events in ([real, forged], [forged, real]):
        state = resolve_keys(events)
        assert state.accepted[(ALICE, K1)].trust == TOFU
        assert state.trust_of(ALICE, K1, 1, real.event_hash) == TOFU
        assert state.trust_of(ALICE, None, 1, real.event_hash) == INVALID


SENDERS = [ALICE, BOB]
KEYS = [K1, K2, K3, K4, MIXED_ORDER]


@st.composite
def key_events(draw: st.DrawFn) -> KeyEvent:
    return key_event(
        draw(st.integers(min_value=0, max_value=6)),
        draw(st.sampled_from(SENDERS)),
        draw(st.sampled_from(KEYS)),
        draw(st.sampled_from([*KEYS, None])),
        attestation_ok=draw(st.sampled_from([None, None, True, False])),
        revokes=tuple(draw(st.lists(st.sampled_from(KEYS), max_size=2, unique=True))),
        event_id=draw(st.sampled_from(["room::a::1", "room::a::2", None])),
    )


def snapshot(state: KeyState) -> dict[str, Any]:
    grid = {
        (sender, signer, ts): message_trust(state, sender, signer, ts)
        for sender in SENDERS
        for signer in [*KEYS, None]
        for ts in range(8)
    }
    return {
        "accepted": state.accepted,
        "conflicted": state.conflicted,
        "invalid_events": state.invalid_events,
        "findings": state.findings,
        "grid": grid,
    }


@given(
    st.lists(key_events(), max_size=12),
    st.sampled_from([None, {ALICE: [K1]}, {BOB: [K2, MIXED_ORDER]}]),
    st.randoms(use_true_random=False),
    st.data(),
)
@settings(max_examples=400, deadline=None)
def test_order_of_input_never_changes_the_result(
    events: list[KeyEvent], pinned: Any, rnd: Any, data: Any
) -> None:
    # forged copies: the same event (same hash) under a signature no key verifies
    copies = [
        KeyEvent(
            e.order, e.event_hash, e.sender_id, e.public_key, None, e.attestation_ok, e.revokes
        )
        for e in events
        if data.draw(st.booleans())
    ]
    events = events + copies
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert snapshot(resolve_keys(shuffled, pinned)) == snapshot(resolve_keys(events, pinned))
    assert snapshot(resolve_keys(events[::-1], pinned)) == snapshot(resolve_keys(events, pinned))

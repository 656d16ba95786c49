"""The parser's shortcuts agree with the slow paths they skip (§2 base64, §6 content)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bucketchat.protocol.lines import EVENT_FIELDS, _plain_shape, field_problem, shape_problem
from bucketchat.protocol.models import CONTENT_MODELS, content_problem
from bucketchat.protocol.signing import strict_b64decode

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
MESSAGE_KEYS = st.sampled_from(["body", "msgtype", "format", "formatted_body", "other"])
MESSAGE_VALUES = st.one_of(
    JSON_VALUES, st.sampled_from(["m.text", "m.notice", "m.emote", "m.image", "M.TEXT"])
)


def model_problem(content: dict[str, Any]) -> bool:
    try:
        CONTENT_MODELS["m.room.message"].model_validate(content)
    except ValueError:
        return True
    return False


@settings(max_examples=600)
@given(st.dictionaries(MESSAGE_KEYS, MESSAGE_VALUES, max_size=5))
def test_message_shortcut_agrees_with_the_model(content: dict[str, Any]) -> None:
    assert (content_problem("m.room.message", content) is not None) == model_problem(content)


def test_message_shortcut_cases() -> None:
    assert content_problem("m.room.message", {"body": "hi", "msgtype": "m.text"}) is None
    assert content_problem("m.room.message", {"body": "hi", "msgtype": ["m.text"]}) is not None
    assert content_problem("m.room.message", {"body": 1, "msgtype": "m.text"}) is not None
    kept = {"body": "hi", "msgtype": "m.emote", "format": None, "extra": [1]}
    assert content_problem("m.room.message", kept) is None
    bad_format = {"body": "hi", "msgtype": "m.text", "format": 3}
    assert content_problem("m.room.message", bad_format) is not None


def reference_decode(text: str, length: int) -> bytes | None:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    if len(raw) != length or base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


BASE64ISH = st.text(
    alphabet=st.sampled_from("ABCDEFabcdef0189+/=\n -_é\x00"), min_size=0, max_size=90
)


@settings(max_examples=800)
@given(st.one_of(BASE64ISH, st.binary(max_size=66).map(lambda b: base64.b64encode(b).decode())))
def test_strict_base64_agrees_with_the_reference(text: str) -> None:
    for length in (32, 64):
        assert strict_b64decode(text, length) == reference_decode(text, length)


def test_strict_base64_refuses_a_non_canonical_tail() -> None:
    canonical = base64.b64encode(bytes(32)).decode()
    assert strict_b64decode(canonical, 32) == bytes(32)
    assert canonical.endswith("A=")
    assert strict_b64decode(canonical[:-2] + "B=", 32) is None  # nonzero unused bits


FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2**53 + 5),
    st.sampled_from(["r::t::u", "a::::b", "a:::b", "x", "", "bob\x07", "b" * 257, "::::"]),
    st.text(max_size=6),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
)
EVENT_KEYS = list(EVENT_FIELDS)


VALID_EVENT: dict[str, Any] = {
    "event_id": "r::20260101T000000.000Z::u",
    "room_id": "r",
    "timestamp_ms": 1,
    "sender_id": "bob",
    "type": "m.room.message",
    "parent_event_id": None,
    "prev_event_hash": "h",
    "signature": "s",
    "content": {"body": "hi"},
}


@settings(max_examples=1500)
@given(
    st.dictionaries(st.sampled_from(EVENT_KEYS), FIELD_VALUES, max_size=2),
    st.sets(st.sampled_from(EVENT_KEYS), max_size=1),
    st.one_of(st.none(), FIELD_VALUES),
)
def test_shape_shortcut_agrees_with_the_field_checks(
    changed: dict[str, Any], missing: set[str], extra: Any
) -> None:
    """A valid event with up to two fields changed, one gone or an extra key: the shortcut
    and the field checks agree (about a fifth of these are valid: both paths are taken)."""
    event = {**VALID_EVENT, **changed}
    for key in missing:
        event.pop(key)
    if extra is not None:
        event["extra"] = extra
    assert shape_problem(event) == field_problem(event)


def test_shape_shortcut_is_taken_by_a_valid_event() -> None:
    assert _plain_shape(VALID_EVENT)
    assert not _plain_shape({**VALID_EVENT, "timestamp_ms": True})


def test_shape_shortcut_needs_the_nullable_fields_present() -> None:
    event = dict(VALID_EVENT)
    assert shape_problem(event) is None
    del event["prev_event_hash"]
    assert shape_problem(event) == "missing field 'prev_event_hash'"

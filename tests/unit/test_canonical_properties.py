"""Properties of the canonical bytes, hash and signatures (PROTOCOL.md §4)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bucketchat.protocol import (
    ParsedEvent,
    SigningKey,
    event_hash,
    parse_line,
    signing_bytes,
    verify,
)

SAFE = 2**53 - 1
KEY = SigningKey(bytes.fromhex("1f3ecb0820dad10381ac6826e821059fe82402c53d9ce18a9dca803db0f0226d"))


def reference_signing_bytes(event: dict[str, Any]) -> bytes:
    """§4 written out independently of the package."""
    body = {key: value for key, value in event.items() if key != "signature"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def reference_event_hash(event: dict[str, Any]) -> str:
    digest = hashlib.sha256(reference_signing_bytes(event)).digest()
    return base64.b64encode(digest).decode("ascii")


# Characters the fast path must not get wrong: controls (short and \u escapes), DEL, C1,
# quotes and backslash, '/', non-ASCII in and beyond the BMP, line/paragraph separators.
SPECIAL = st.sampled_from(
    [
        "\x00",
        "\x01",
        "\x08",
        "\t",
        "\n",
        "\x0b",
        "\x0c",
        "\r",
        "\x1f",
        "\x7f",
        "\x80",
        "\x9f",
        '"',
        "\\",
        "/",
        "\u00e9",
        "\u2028",
        "\u2029",
        "\ufeff",
        "\uffff",
        "\U0001f389",
        "\U0010ffff",
        "<",
        "&",
        "'",
        "~",
        " ",
    ]
)
CHARS = st.one_of(st.characters(codec="utf-8"), SPECIAL)
TEXT = st.text(alphabet=CHARS, max_size=12)
ASCII_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
KEYS = st.one_of(TEXT, ASCII_TEXT)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-SAFE, max_value=SAFE),
    st.sampled_from([0, -1, 1, SAFE, -SAFE]),
    TEXT,
    ASCII_TEXT,
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(KEYS, inner, max_size=4),
    ),
    max_leaves=20,
)
CONTENT = st.dictionaries(KEYS, JSONISH, max_size=5)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    room = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True))
    moment = draw(ASCII_TEXT.filter(lambda s: ":" not in s))
    unique = draw(st.text(alphabet=CHARS, max_size=8).filter(lambda s: ":" not in s))
    data: dict[str, Any] = {
        "event_id": f"{room}::{moment}::{unique}",
        "room_id": room,
        "timestamp_ms": draw(st.integers(min_value=0, max_value=SAFE)),
        "sender_id": draw(
            st.text(
                alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]),
                min_size=1,
                max_size=20,
            )
        ),
        "type": draw(st.sampled_from(["m.room.message", "m.room.member", "x.custom"]) | TEXT),
        "parent_event_id": draw(st.none() | TEXT),
        "prev_event_hash": draw(st.none() | TEXT),
        "signature": "",
        "content": draw(CONTENT),
    }
    extra = draw(st.dictionaries(KEYS.filter(lambda k: k not in data), JSONISH, max_size=2))
    data.update(extra)
    return data


def signed(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "signature": KEY.sign(signing_bytes(data))}


def reorder(value: Any, rnd: Any) -> Any:
    """The same JSON value with the keys of every object in a shuffled order."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {key: reorder(inner, rnd) for key, inner in items}
    if isinstance(value, list):
        return [reorder(inner, rnd) for inner in value]
    return value


# --- equality with an independent implementation ------------------------------------------


@given(events())
@settings(max_examples=300)
def test_signing_bytes_match_reference(data: dict[str, Any]) -> None:
    assert signing_bytes(data) == reference_signing_bytes(data)
    assert event_hash(data) == reference_event_hash(data)


@given(st.dictionaries(KEYS, JSONISH, max_size=6))
@settings(max_examples=300)
def test_signing_bytes_match_reference_for_any_object(data: dict[str, Any]) -> None:
    assert signing_bytes(data) == reference_signing_bytes(data)


@given(st.text(alphabet=CHARS, max_size=40), st.text(alphabet=CHARS, max_size=5))
@settings(max_examples=300)
def test_every_string_is_escaped_like_json_dumps(text: str, key: str) -> None:
    data = {key: text, "signature": "ignored"}
    assert signing_bytes(data) == reference_signing_bytes(data)


def test_single_characters_escape_like_json_dumps() -> None:
    for code in [*range(0x00, 0x100), 0x2028, 0x2029, 0xFEFF, 0xFFFF, 0x1F389, 0x10FFFF]:
        data = {"k": chr(code), chr(code): code}
        assert signing_bytes(data) == reference_signing_bytes(data), hex(code)


def test_signature_is_left_out_only_at_the_top() -> None:
    data = {"signature": "x", "content": {"signature": "kept"}}
    assert signing_bytes(data) == b'{"content":{"signature":"kept"}}'


def test_hash_is_44_chars_of_padded_base64() -> None:
    digest = event_hash({"a": 1})
    assert len(digest) == 44 and digest.endswith("=")
    assert base64.b64decode(digest) == hashlib.sha256(b'{"a":1}').digest()


# --- key order never matters --------------------------------------------------------------


@given(events(), st.randoms(use_true_random=False))
@settings(max_examples=200)
def test_key_order_never_changes_signing_bytes(data: dict[str, Any], rnd: Any) -> None:
    shuffled = reorder(data, rnd)
    assert signing_bytes(shuffled) == signing_bytes(data)
    assert event_hash(shuffled) == event_hash(data)


@given(events(), st.randoms(use_true_random=False))
@settings(max_examples=100)
def test_key_order_on_the_line_never_changes_verification(data: dict[str, Any], rnd: Any) -> None:
    data = signed(data)
    raw = json.dumps(reorder(data, rnd)).encode("utf-8")
    parsed = parse_line(raw)
    assert isinstance(parsed, ParsedEvent), parsed
    assert verify(KEY.public_key, parsed.data["signature"], signing_bytes(parsed.data))


# --- any change to a signed field breaks the signature ------------------------------------

SIGNED_FIELDS = [
    "event_id",
    "room_id",
    "timestamp_ms",
    "sender_id",
    "type",
    "parent_event_id",
    "prev_event_hash",
    "content",
]
NEW_VALUES: dict[str, Any] = {
    "event_id": TEXT,
    "room_id": TEXT,
    "timestamp_ms": st.integers(min_value=0, max_value=SAFE),
    "sender_id": TEXT,
    "type": TEXT,
    "parent_event_id": st.none() | TEXT,
    "prev_event_hash": st.none() | TEXT,
    "content": CONTENT,
}


@given(events(), st.data())
@settings(max_examples=200)
def test_changing_a_signed_field_breaks_the_signature(data: dict[str, Any], draw: Any) -> None:
    original = signed(data)
    assert verify(KEY.public_key, original["signature"], signing_bytes(original))
    field = draw.draw(st.sampled_from(SIGNED_FIELDS))
    value = draw.draw(NEW_VALUES[field])
    assume(value != original[field] or type(value) is not type(original[field]))
    tampered = {**original, field: value}
    assert signing_bytes(tampered) != signing_bytes(original)
    assert not verify(KEY.public_key, tampered["signature"], signing_bytes(tampered))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(value[head], rest, new)
    return copy


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def _same_json(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@given(events(), st.data())
@settings(max_examples=200)
def test_changing_any_content_value_breaks_the_signature(data: dict[str, Any], draw: Any) -> None:
    original = signed(data)
    paths = _paths(original["content"])
    assume(paths)
    path = draw.draw(st.sampled_from(paths))
    new = draw.draw(JSONISH)
    assume(not _same_json(new, _get(original["content"], path)))
    tampered = {**original, "content": _replace(original["content"], path, new)}
    assert not verify(KEY.public_key, tampered["signature"], signing_bytes(tampered))


@given(events(), KEYS, JSONISH)
@settings(max_examples=100)
def test_adding_a_content_key_or_top_level_key_breaks_the_signature(
    data: dict[str, Any], key: str, value: Any
) -> None:
    original = signed(data)
    assume(key not in original["content"])
    more_content = {**original, "content": {**original["content"], key: value}}
    assert not verify(KEY.public_key, original["signature"], signing_bytes(more_content))
    assume(key not in original)
    more_top = {**original, key: value}
    assert not verify(KEY.public_key, original["signature"], signing_bytes(more_top))


@given(events(), TEXT)
@settings(max_examples=50)
def test_the_signature_field_itself_is_not_signed(data: dict[str, Any], other: str) -> None:
    original = signed(data)
    assert signing_bytes({**original, "signature": other}) == signing_bytes(original)


# --- parse / serialise round trip ---------------------------------------------------------


@given(events(), st.booleans())
@settings(max_examples=300)
def test_parse_serialise_parse_is_identity(data: dict[str, Any], ensure_ascii: bool) -> None:
    data = signed(data)
    first = parse_line(json.dumps(data, ensure_ascii=ensure_ascii).encode("utf-8"))
    assert isinstance(first, ParsedEvent), first
    assert first.data == data
    second = parse_line(json.dumps(first.data, ensure_ascii=ensure_ascii).encode("utf-8"))
    assert isinstance(second, ParsedEvent), second
    assert second.data == first.data
    assert signing_bytes(second.data) == signing_bytes(first.data)
    assert verify(KEY.public_key, second.data["signature"], signing_bytes(second.data))

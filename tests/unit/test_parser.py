"""The strict line parser (PROTOCOL.md §2) and the event shape (§3)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bucketchat.protocol.lines import (
    MAX_LINE_BYTES,
    REASONS,
    ParsedEvent,
    Rejection,
    parse_line,
    split_lines,
)


def event(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_id": "room::20260101T000000.000Z::6513270e-269e-4d37-b2a7-4de452e6b438",
        "room_id": "room",
        "timestamp_ms": 1767225600000,
        "sender_id": "alice@example.com",
        "type": "m.room.message",
        "parent_event_id": None,
        "prev_event_hash": None,
        "signature": "A" * 86 + "==",
        "content": {"body": "hi", "msgtype": "m.text"},
    }
    data.update(changes)
    return data


def line(data: Any) -> bytes:
    return json.dumps(data).encode("utf-8")


def reason(raw: bytes) -> str | None:
    result = parse_line(raw)
    return result.reason if isinstance(result, Rejection) else None


def with_content_text(text: str) -> bytes:
    """A valid event line whose content holds ``"x": <text>`` spliced in verbatim."""
    raw = line(event(content={"x": "PLACEHOLDER"}))
    return raw.replace(b'"PLACEHOLDER"', text.encode("utf-8"))


def test_good_line_parses() -> None:
    parsed = parse_line(line(event()))
    assert isinstance(parsed, ParsedEvent)
    assert parsed.event_id.startswith("room::")
    assert parsed.room_id == "room"
    assert parsed.sender_id == "alice@example.com"
    assert parsed.timestamp_ms == 1767225600000
    assert parsed.type == "m.room.message"
    assert parsed.content == {"body": "hi", "msgtype": "m.text"}


def test_unknown_top_level_keys_are_kept() -> None:
    parsed = parse_line(line(event(extra={"a": [1]})))
    assert isinstance(parsed, ParsedEvent)
    assert parsed.data["extra"] == {"a": [1]}


def test_reasons_are_the_eight_of_section_2() -> None:
    assert set(REASONS) == {
        "oversized",
        "bad_encoding",
        "bad_json",
        "duplicate_key",
        "too_deep",
        "bad_number",
        "lone_surrogate",
        "bad_shape",
    }


# --- oversized --------------------------------------------------------------------------


def _padded(size: int) -> bytes:
    raw = line(event(content={"pad": ""}))
    raw = raw.replace(b'"pad": ""', b'"pad": "' + b"x" * (size - len(raw)) + b'"')
    assert len(raw) == size
    return raw


def test_oversized() -> None:
    result = parse_line(_padded(MAX_LINE_BYTES + 1))
    assert isinstance(result, Rejection)
    assert result.reason == "oversized"
    assert len(result.raw_kept.encode()) == 4096  # stored raw text is cut to 4 KiB


def test_exactly_the_limit_is_fine() -> None:
    assert MAX_LINE_BYTES == 1_048_576
    assert isinstance(parse_line(_padded(MAX_LINE_BYTES)), ParsedEvent)


# --- bad_encoding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": "\xff"}',
        b'{"a": "\xc3"}',  # truncated sequence
        b'{"a": "\xc0\xaf"}',  # overlong "/"
        b'{"a": "\xed\xa0\x80"}',  # a surrogate encoded raw in UTF-8
        line(event(content={"body": "caf"})).replace(b"caf", b"caf\xe9"),  # Latin-1
    ],
)
def test_bad_encoding(raw: bytes) -> None:
    assert reason(raw) == "bad_encoding"


# --- bad_json ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        line([event()]),  # a JSON array holding an event
        b'"just a string"',
        b"42",
        b"null",
        b"true",
        b"{",
        b"{}}",
        line(event()) + b" " + line(event()),  # two objects on one line
        b"{'single': 'quotes'}",
        b'{"a": 1,}',  # trailing comma
        b"",
        b"   ",
    ],
)
def test_bad_json(raw: bytes) -> None:
    assert reason(raw) == "bad_json"


# --- duplicate_key ----------------------------------------------------------------------


def test_duplicate_key_top_level() -> None:
    raw = line(event())[:-1] + b', "room_id": "other"}'
    assert reason(raw) == "duplicate_key"


def test_duplicate_key_nested() -> None:
    assert reason(with_content_text('{"k": [{"a": 1, "b": 2, "a": 1}]}')) == "duplicate_key"


def test_duplicate_key_in_content() -> None:
    raw = line(event()).replace(b'"msgtype": "m.text"', b'"msgtype": "m.text", "body": "x"')
    assert reason(raw) == "duplicate_key"


def test_keys_equal_after_unescaping_are_duplicates() -> None:
    assert reason(with_content_text('{"a": 1, "\\u0061": 2}')) == "duplicate_key"


# --- too_deep ---------------------------------------------------------------------------


def _nested_arrays(levels: int) -> str:
    return "[" * levels + "]" * levels


def _nested_objects(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


@pytest.mark.parametrize("nest", [_nested_arrays, _nested_objects])
def test_depth_64_is_fine_65_is_too_deep(nest: Any) -> None:
    # the event object is depth 1, content depth 2, so 62 more levels make 64
    ok = with_content_text(nest(62))
    parsed = parse_line(ok)
    assert isinstance(parsed, ParsedEvent), parsed
    assert reason(with_content_text(nest(63))) == "too_deep"


def test_brackets_inside_strings_do_not_count() -> None:
    assert isinstance(parse_line(with_content_text(json.dumps("[{" * 500))), ParsedEvent)
    escaped_quotes = json.dumps('\\"' + "[" * 100)
    assert isinstance(parse_line(with_content_text(escaped_quotes)), ParsedEvent)


def test_many_shallow_brackets_are_fine() -> None:
    assert isinstance(parse_line(with_content_text("[" + "[], " * 500 + "[]]")), ParsedEvent)


def test_hostile_nesting_returns_quickly() -> None:
    assert reason(b"[" * 100_000) == "too_deep"
    assert reason(b"{" * 100_000) in ("too_deep", "bad_json")
    assert reason(with_content_text(_nested_arrays(100_000))) == "too_deep"


# --- bad_number -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "1.5",
        "1.0",
        "-0.0",
        "1e5",
        "1E5",
        "1e-5",
        "NaN",
        "Infinity",
        "-Infinity",
        str(2**53),
        str(-(2**53)),
        "1" * 5000,  # longer than int() will convert
        "1e999999",
    ],
)
def test_bad_number(number: str) -> None:
    assert reason(with_content_text(number)) == "bad_number"


def test_bad_number_in_timestamp() -> None:
    raw = line(event()).replace(b"1767225600000", b"1767225600000.0")
    assert reason(raw) == "bad_number"


@pytest.mark.parametrize("number", ["0", "-0", "-1", str(2**53 - 1), str(-(2**53 - 1))])
def test_safe_integers_are_fine(number: str) -> None:
    parsed = parse_line(with_content_text(number))
    assert isinstance(parsed, ParsedEvent), parsed
    assert parsed.content["x"] == int(number)


# --- lone_surrogate ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '"\\ud800"',
        '"\\uDFFF"',
        '"abc\\ud83d"',  # high surrogate at the end
        '"\\ude00\\ud83d"',  # a pair in the wrong order
        '["ok", {"k": "\\udbff x"}]',
    ],
)
def test_lone_surrogate(text: str) -> None:
    assert reason(with_content_text(text)) == "lone_surrogate"


def test_lone_surrogate_in_a_key() -> None:
    assert reason(with_content_text('{"\\ud800": 1}')) == "lone_surrogate"


def test_escaped_surrogate_pair_is_fine() -> None:
    parsed = parse_line(with_content_text('"\\ud83d\\ude00"'))
    assert isinstance(parsed, ParsedEvent), parsed
    assert parsed.content["x"] == "\U0001f600"


def test_escaped_backslash_before_u_is_not_an_escape() -> None:
    parsed = parse_line(with_content_text('"\\\\ud800"'))
    assert isinstance(parsed, ParsedEvent), parsed
    assert parsed.content["x"] == "\\ud800"


# --- bad_shape --------------------------------------------------------------------------

FIELDS = [
    "event_id",
    "room_id",
    "timestamp_ms",
    "sender_id",
    "type",
    "parent_event_id",
    "prev_event_hash",
    "signature",
    "content",
]


@pytest.mark.parametrize("field", FIELDS)
def test_bad_shape_missing_field(field: str) -> None:
    data = event()
    del data[field]
    assert reason(line(data)) == "bad_shape"


WRONG_TYPES = [
    ("event_id", None),
    ("event_id", 5),
    ("room_id", ["room"]),
    ("room_id", None),
    ("timestamp_ms", True),
    ("timestamp_ms", False),
    ("timestamp_ms", "1767225600000"),
    ("timestamp_ms", None),
    ("sender_id", 7),
    ("sender_id", None),
    ("type", {"t": 1}),
    ("type", None),
    ("parent_event_id", 1),
    ("parent_event_id", False),
    ("prev_event_hash", []),
    ("prev_event_hash", True),
    ("signature", None),
    ("signature", 0),
    ("content", None),
    ("content", []),
    ("content", "body"),
]


@pytest.mark.parametrize(("field", "value"), WRONG_TYPES)
def test_bad_shape_wrong_type(field: str, value: Any) -> None:
    assert reason(line(event(**{field: value}))) == "bad_shape"


@pytest.mark.parametrize(
    "event_id",
    [
        "room",
        "room::20260101T000000.000Z",
        "room::a::b::c",
        "room:a:b",
        "",
    ],
)
def test_bad_shape_event_id_not_three_parts(event_id: str) -> None:
    assert reason(line(event(event_id=event_id))) == "bad_shape"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp_ms", -1),
        ("sender_id", ""),
        ("sender_id", "a" * 257),
        ("sender_id", "alice\n"),
        ("sender_id", "ali\x00ce"),
        ("sender_id", "alice\x7f"),
        ("sender_id", "alice\x85"),  # a C1 control character
    ],
)
def test_bad_shape_field_rules(field: str, value: Any) -> None:
    assert reason(line(event(**{field: value}))) == "bad_shape"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp_ms", 0),
        ("timestamp_ms", 2**53 - 1),
        ("sender_id", "a" * 256),
        ("sender_id", "\U0001f600" * 256),  # 256 characters, not bytes
        ("sender_id", "@bob:matrix.org"),
        ("parent_event_id", "room::t::u"),
        ("prev_event_hash", "0/777lSLX6ilMNzNuFcijCHHSF1WWKgjm06/oHPxfvg="),
        ("content", {}),
        ("type", "x.unknown.type"),
    ],
)
def test_shape_boundaries_accepted(field: str, value: Any) -> None:
    assert isinstance(parse_line(line(event(**{field: value}))), ParsedEvent)


def test_raw_kept_on_rejection() -> None:
    result = parse_line(b'{"a": "\xff"}')
    assert isinstance(result, Rejection)
    assert result.raw == b'{"a": "\xff"}'
    assert result.detail
    assert result.raw_kept == '{"a": "\ufffd"}'


# --- never raises -----------------------------------------------------------------------

JSONISH_BYTES = st.lists(
    st.sampled_from(
        [
            b"{",
            b"}",
            b"[",
            b"]",
            b'"',
            b"\\",
            b":",
            b",",
            b"1",
            b"-",
            b".",
            b"e",
            b"\\u",
            b"d800",
            b"null",
            b"true",
            b'"a"',
            b"\xff",
            b"\xed\xa0\x80",
            b"NaN",
            b" ",
            b"\x00",
        ]
    ),
    max_size=200,
).map(b"".join)


@given(st.one_of(st.binary(max_size=2000), JSONISH_BYTES))
@settings(max_examples=500)
def test_parse_line_never_raises(raw: bytes) -> None:
    result = parse_line(raw)
    assert isinstance(result, ParsedEvent | Rejection)
    if isinstance(result, Rejection):
        assert result.reason in REASONS


@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["[", "{", '{"a":[']))
@settings(max_examples=30, deadline=None)
def test_parse_line_never_raises_on_deep_nesting(levels: int, opener: str) -> None:
    result = parse_line((opener * levels).encode())
    assert isinstance(result, Rejection)


def test_parse_line_never_raises_on_closed_deep_nesting() -> None:
    for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        result = parse_line(raw)
        assert isinstance(result, Rejection)
        assert result.reason == "too_deep"


# --- split_lines ------------------------------------------------------------------------


def test_split_lines_bom_cr_blank_and_numbering() -> None:
    blob = b"\xef\xbb\xbf" + b"first\r\n\n  \nsecond\r\n\r\nthird"
    assert split_lines(blob) == [(1, b"first"), (4, b"second"), (6, b"third")]


def test_split_lines_only_a_leading_bom_is_skipped() -> None:
    assert split_lines(b"a\n\xef\xbb\xbfb\n") == [(1, b"a"), (2, b"\xef\xbb\xbfb")]
    assert split_lines(b"\xef\xbb\xbf\xef\xbb\xbfa") == [(1, b"\xef\xbb\xbfa")]


def test_split_lines_only_one_trailing_cr_is_stripped() -> None:
    assert split_lines(b"a\r\r\nb\r") == [(1, b"a\r"), (2, b"b")]


def test_split_lines_empty_and_trailing_newline() -> None:
    assert split_lines(b"") == []
    assert split_lines(b"\xef\xbb\xbf") == []
    assert split_lines(b"\n\n") == []
    assert split_lines(b"x\n") == [(1, b"x")]


def test_split_lines_then_parse_a_file() -> None:
    blob = b"\xef\xbb\xbf" + line(event()) + b"\r\n\n" + b"[]\n" + line(event()) + b"\n"
    results = [(n, parse_line(raw)) for n, raw in split_lines(blob)]
    assert [n for n, _ in results] == [1, 3, 4]
    assert isinstance(results[0][1], ParsedEvent)
    assert isinstance(results[1][1], Rejection) and results[1][1].reason == "bad_json"
    assert isinstance(results[2][1], ParsedEvent)


# The orjson fast path may only ever accept what the strict parser accepts, with the same
# object: it is checked against the strict path alone (lines._parse) on hostile text.
_FRAGMENTS = st.sampled_from(
    [
        '"a"',
        '"a:b"',
        '"\\u003a"',
        '"\\u003A"',
        '":"',
        '"x"',
        "1",
        "-0",
        "1.0",
        "1e3",
        str(2**53 - 1),
        str(2**53),
        str(-(2**53)),
        "18446744073709551616",
        "true",
        "null",
        "NaN",
        '"\\ud800"',
        '"\\ud83d\\ude00"',
        '"é"',
        '"\\\\u003a"',
        "[]",
        "{}",
        "[1,2]",
    ]
)


@st.composite
def _json_texts(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 3 or draw(st.booleans()):
        return draw(_FRAGMENTS)
    if draw(st.booleans()):
        items = draw(st.lists(_json_texts(depth + 1), max_size=3))
        return "[" + ",".join(items) + "]"
    keys = draw(st.lists(st.sampled_from(['"a"', '"b"', '"a:"', '"\\u0061"', '":"']), max_size=4))
    values = [draw(_json_texts(depth + 1)) for _ in keys]
    return "{" + ",".join(f"{k}:{v}" for k, v in zip(keys, values, strict=True)) + "}"


def _strict(raw: bytes) -> tuple[str, Any]:
    from bucketchat.protocol import lines

    try:
        return ("ok", lines._parse(raw).data)
    except lines._Reject as reject:
        return (reject.reason, None)


@given(_json_texts())
@settings(max_examples=400, deadline=None)
def test_fast_path_agrees_with_the_strict_parser_inside_content(text: str) -> None:
    raw = with_content_text(text)
    fast = parse_line(raw)
    expected = _strict(raw)
    if isinstance(fast, ParsedEvent):
        assert expected == ("ok", fast.data)
    else:
        assert fast.reason == expected[0]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1,"a":2}',
        line(event()).replace(b'"type"', b'"sender_id":"x","type"'),
        with_content_text('{"k":1,"k":1}'),
        with_content_text('{"a:b":1,"a:b":2}'),
        with_content_text('{"\\u003a":1,":":2}'),
        with_content_text('{"q":"\\u003a","q":":"}'),
    ],
)
def test_duplicate_keys_are_never_taken_by_the_fast_path(raw: bytes) -> None:
    assert reason(raw) == "duplicate_key"

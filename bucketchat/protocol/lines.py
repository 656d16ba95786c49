"""The strict line parser of PROTOCOL.md §2 and the event shape of §3.

``parse_line`` never raises: it returns a ``ParsedEvent`` or a ``Rejection`` carrying one
reason code of §2. Depth is measured on the raw text before ``json.loads`` runs, so
hostile nesting can neither hit Python's recursion limit nor cost time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

MAX_LINE_BYTES = 1_048_576
MAX_DEPTH = 64
MAX_SAFE_INTEGER = 2**53 - 1
RAW_KEEP_BYTES = 4096

REASONS = (
    "oversized",
    "bad_encoding",
    "bad_json",
    "duplicate_key",
    "too_deep",
    "bad_number",
    "lone_surrogate",
    "bad_shape",
)

EVENT_FIELDS: dict[str, tuple[type, ...]] = {
    "event_id": (str,),
    "room_id": (str,),
    "timestamp_ms": (int,),
    "sender_id": (str,),
    "type": (str,),
    "parent_event_id": (str, type(None)),
    "prev_event_hash": (str, type(None)),
    "signature": (str,),
    "content": (dict,),
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]", re.ASCII)


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str
    raw: bytes

    @property
    def raw_kept(self) -> str:
        return kept_text(self.raw)


def kept_text(raw: bytes, limit: int = RAW_KEEP_BYTES) -> str:
    """At most ``limit`` bytes of a line as UTF-8 text (bad bytes become U+FFFD)."""
    text = raw[:limit].decode("utf-8", errors="replace")
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """An event as parsed from one line: ``data`` is the whole object, unknown keys kept."""

    data: dict[str, Any]
    raw: bytes

    @property
    def event_id(self) -> str:
        return str(self.data["event_id"])

    @property
    def room_id(self) -> str:
        return str(self.data["room_id"])

    @property
    def sender_id(self) -> str:
        return str(self.data["sender_id"])

    @property
    def timestamp_ms(self) -> int:
        return int(self.data["timestamp_ms"])

    @property
    def type(self) -> str:
        return str(self.data["type"])

    @property
    def content(self) -> dict[str, Any]:
        content: dict[str, Any] = self.data["content"]
        return content


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Reject("duplicate_key", f"key {key!r} appears twice in one object")
            seen.add(key)
    return obj


def _parse_int(text: str) -> int:
    if len(text) > 17:
        raise _Reject("bad_number", f"integer {text[:24]} is outside ±(2^53-1)")
    value = int(text)
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    raise _Reject("bad_number", f"integer {text} is outside ±(2^53-1)")


def _parse_float(text: str) -> float:
    raise _Reject("bad_number", f"{text[:24]} is not an integer (floats are not allowed)")


def _parse_constant(text: str) -> float:
    raise _Reject("bad_number", f"{text} is not a JSON number")


def _max_depth(text: bytes) -> int:
    """Nesting depth of arrays and objects, ignoring brackets inside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x7D, 0x5D):
            depth -= 1
    return deepest


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _plain_shape(data: dict[str, Any]) -> bool:
    """The common case of ``shape_problem`` in one expression (exact types, as the JSON
    parser makes them): the field loop below was ~5% of a sync's work outside Ed25519."""
    if "parent_event_id" not in data or "prev_event_hash" not in data:
        return False  # present even when null (§3)
    get = data.get
    parent, prev, sender = data["parent_event_id"], data["prev_event_hash"], get("sender_id")
    timestamp = get("timestamp_ms")
    return (
        type(get("event_id")) is str
        and type(get("room_id")) is str
        and type(timestamp) is int
        and type(sender) is str
        and type(get("type")) is str
        and (parent is None or type(parent) is str)
        and (prev is None or type(prev) is str)
        and type(get("signature")) is str
        and type(get("content")) is dict
        and 0 <= timestamp <= MAX_SAFE_INTEGER
        and 1 <= len(sender) <= 256
        and data["event_id"].count("::") == 2
        and _CONTROL.search(sender) is None
    )


def shape_problem(data: dict[str, Any]) -> str | None:
    """Why ``data`` is not an event of §3, or None when it is one."""
    return None if _plain_shape(data) else field_problem(data)


def field_problem(data: dict[str, Any]) -> str | None:
    """``shape_problem`` field by field, naming the first field that is wrong."""
    for name, types in EVENT_FIELDS.items():
        if name not in data:
            return f"missing field {name!r}"
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, types):
            return f"field {name!r} has the wrong JSON type"
    if len(data["event_id"].split("::")) != 3:
        return "event_id is not three '::'-separated parts"
    timestamp = data["timestamp_ms"]
    if not 0 <= timestamp <= MAX_SAFE_INTEGER:
        return "timestamp_ms is negative"
    sender = data["sender_id"]
    if not 1 <= len(sender) <= 256 or _CONTROL.search(sender):
        return "sender_id must be 1-256 characters without control characters"
    return None


def parse_line(raw: bytes) -> ParsedEvent | Rejection:
    """Parse one line (without its ``\\n``; a trailing ``\\r`` is already stripped)."""
    data = _plain_object(raw)
    if data is not None:
        problem = shape_problem(data)
        if problem:
            return Rejection("bad_shape", problem, raw)
        return ParsedEvent(data, raw)
    try:
        return _parse(raw)
    except _Reject as reject:
        return Rejection(reject.reason, reject.detail, raw)
    except RecursionError:
        return Rejection("too_deep", f"nesting deeper than {MAX_DEPTH}", raw)
    except Exception as exc:  # the parser promises never to raise
        return Rejection("bad_json", f"unparseable: {type(exc).__name__}", raw)


def _plain_object(raw: bytes) -> dict[str, Any] | None:
    """The object of a line that is plainly valid, or None to let the strict parser decide.

    orjson is several times faster than ``json.loads`` with the checking hooks, and it
    already refuses what §2 refuses of the bytes (bad UTF-8, lone surrogates, NaN, trailing
    data), but it keeps the last of duplicate keys and it parses floats. Floats, integers
    beyond ±(2^53-1) and deep nesting are seen on the parsed value; duplicate keys by
    counting colons: outside strings the text has exactly one per key-value pair, so with
    no ``\\u003a`` escapes a line without duplicates has as many colons as its objects
    have keys plus the colons inside its strings. Anything else takes the strict path,
    which gives the reason.
    """
    if len(raw) > MAX_LINE_BYTES or b"\\u003" in raw:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    pairs = 0
    texts: list[str] = []  # every key and string, whose colons are not separators
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return None
        if type(node) is dict:
            pairs += len(node)
            texts.extend(node)
            values = node.values()
        else:
            values = node
        for value in values:
            kind = type(value)
            if kind is str:
                texts.append(value)
            elif kind is int:
                if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                    return None
            elif kind is dict or kind is list:
                stack.append((value, depth + 1))
            elif value is not None and kind is not bool:
                return None  # a float
    expected = pairs + "".join(texts).count(":")
    if raw.count(b":") != expected:
        return None
    return data


def _parse(raw: bytes) -> ParsedEvent:
    if len(raw) > MAX_LINE_BYTES:
        raise _Reject("oversized", f"line has {len(raw)} bytes (limit {MAX_LINE_BYTES})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Reject("bad_encoding", f"not valid UTF-8 at byte {exc.start}") from None
    if (raw.count(b"{") + raw.count(b"[")) > MAX_DEPTH and _max_depth(raw) > MAX_DEPTH:
        raise _Reject("too_deep", f"nesting deeper than {MAX_DEPTH}")
    try:
        data = json.loads(
            text,
            object_pairs_hook=_object_pairs,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except json.JSONDecodeError as exc:
        raise _Reject("bad_json", f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise _Reject("bad_json", "not a JSON object")
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(data):
        raise _Reject("lone_surrogate", "a string holds an unpaired surrogate")
    problem = shape_problem(data)
    if problem:
        raise _Reject("bad_shape", problem)
    return ParsedEvent(data, raw)


def split_lines(blob: bytes) -> list[tuple[int, bytes]]:
    """(1-based line number, line) for every non-blank line of a file's bytes."""
    if blob.startswith(b"\xef\xbb\xbf"):
        blob = blob[3:]
    lines = []
    for number, line in enumerate(blob.split(b"\n"), start=1):
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.strip():
            lines.append((number, line))
    return lines

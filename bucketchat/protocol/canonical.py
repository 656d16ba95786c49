"""Canonical signing bytes and event hashes (PROTOCOL.md §4).

The bytes are Python's ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=True)`` of the event without its ``signature``: exactly what the upstream
reference client signs. orjson gives the same bytes several times faster whenever the
output is plain printable ASCII (it leaves non-ASCII and DEL unescaped, where json.dumps
escapes them), so it is tried first and its output kept only when that holds.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS


def _unsigned(event: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key != "signature"}


def signing_bytes(event: Mapping[str, Any]) -> bytes:
    body = _unsigned(event)
    try:
        fast = orjson.dumps(body, option=_ORJSON_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        fast = b"\x80"  # forces the json.dumps path below
    if fast.isascii() and b"\x7f" not in fast:
        return fast
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii"
    )


def hash_bytes(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def event_hash(event: Mapping[str, Any]) -> str:
    return b64(hash_bytes(signing_bytes(event)))


def room_digest(event_hashes: Iterable[str]) -> str:
    """PROTOCOL.md §8: sha256 hex over the sorted raw hashes of a room's non-invalid events."""
    raw = sorted(base64.b64decode(digest) for digest in event_hashes)
    return hashlib.sha256(b"".join(raw)).hexdigest()

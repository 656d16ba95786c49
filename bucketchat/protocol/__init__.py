"""The protocol core (PROTOCOL.md): parsing, canonical bytes, signatures, keys, chains.

Pure functions, no I/O: everything here can be tested with bytes in and values out.

The names below load their module on first use (PEP 562), so importing one submodule
(``naming``, as a no-change sync does) does not load the parser and libsodium too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bucketchat.protocol.canonical import event_hash, signing_bytes
    from bucketchat.protocol.lines import ParsedEvent, Rejection, parse_line, split_lines
    from bucketchat.protocol.signing import SigningKey, public_key_problem, verify

_HOMES = {
    "event_hash": "canonical",
    "signing_bytes": "canonical",
    "ParsedEvent": "lines",
    "Rejection": "lines",
    "parse_line": "lines",
    "split_lines": "lines",
    "SigningKey": "signing",
    "public_key_problem": "signing",
    "verify": "signing",
}

__all__ = [
    "ParsedEvent",
    "Rejection",
    "SigningKey",
    "event_hash",
    "parse_line",
    "public_key_problem",
    "signing_bytes",
    "split_lines",
    "verify",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)

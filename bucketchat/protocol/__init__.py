"""The protocol core (PROTOCOL.md): parsing, canonical bytes, signatures, keys, chains.

Pure functions, no I/O: everything here can be tested with bytes in and values out.
"""

from bucketchat.protocol.canonical import event_hash, signing_bytes
from bucketchat.protocol.lines import ParsedEvent, Rejection, parse_line, split_lines
from bucketchat.protocol.signing import SigningKey, public_key_problem, verify

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

"""The conformance vectors (tests/fixtures/events.jsonl, expected.jsonl, keys.json), PROTOCOL.md §4.

Every line parses, its canonical bytes and hash match the expected ones exactly, and its
signature verifies under the claimed sender's key exactly when ``signature_valid`` says so.
"""

from __future__ import annotations

from typing import Any

import pytest

from bucketchat.protocol import (
    ParsedEvent,
    SigningKey,
    event_hash,
    parse_line,
    signing_bytes,
    verify,
)


def test_vector_files_line_up(
    vector_lines: list[bytes], vector_expected: list[dict[str, Any]]
) -> None:
    assert len(vector_lines) == len(vector_expected) == 11
    assert [e["signature_valid"] for e in vector_expected].count(False) == 2


def test_keys_json_seeds_give_the_published_keys(vector_keys: dict[str, Any]) -> None:
    for identity in vector_keys.values():
        key = SigningKey(bytes.fromhex(identity["seed_hex"]))
        assert key.public_key == identity["public_key"]


@pytest.mark.parametrize("index", range(11))
def test_vector_line(
    index: int,
    vector_lines: list[bytes],
    vector_expected: list[dict[str, Any]],
    vector_keys: dict[str, Any],
) -> None:
    raw, expected = vector_lines[index], vector_expected[index]
    parsed = parse_line(raw)
    assert isinstance(parsed, ParsedEvent), parsed
    assert parsed.event_id == expected["event_id"]
    assert parsed.sender_id == expected["sender"]

    message = signing_bytes(parsed.data)
    assert message == expected["signing_bytes"].encode("ascii")
    assert event_hash(parsed.data) == expected["event_hash"]

    sender_key = vector_keys[expected["sender"]]["public_key"]
    signature = parsed.data["signature"]
    assert verify(sender_key, signature, message) is expected["signature_valid"]

    if expected["signed_by"] != expected["sender"]:
        signer_key = vector_keys[expected["signed_by"]]["public_key"]
        assert verify(signer_key, signature, message) is True


def test_forged_line_was_really_signed_by_mallory(
    vector_lines: list[bytes], vector_expected: list[dict[str, Any]], vector_keys: dict[str, Any]
) -> None:
    """Re-signing mallory's forgery with her seed gives the signature in the file."""
    forged = [i for i, e in enumerate(vector_expected) if e["signed_by"] != e["sender"]]
    assert forged, "the vectors hold a line signed by someone other than its sender"
    for index in forged:
        parsed = parse_line(vector_lines[index])
        assert isinstance(parsed, ParsedEvent)
        seed = bytes.fromhex(vector_keys[vector_expected[index]["signed_by"]]["seed_hex"])
        assert SigningKey(seed).sign(signing_bytes(parsed.data)) == parsed.data["signature"]


def test_valid_vectors_are_reproduced_by_signing(
    vector_lines: list[bytes], vector_expected: list[dict[str, Any]], vector_keys: dict[str, Any]
) -> None:
    """Ed25519 is deterministic: our signer writes the very signatures of the valid lines."""
    for raw, expected in zip(vector_lines, vector_expected, strict=True):
        if not expected["signature_valid"]:
            continue
        parsed = parse_line(raw)
        assert isinstance(parsed, ParsedEvent)
        key = SigningKey(bytes.fromhex(vector_keys[expected["sender"]]["seed_hex"]))
        assert key.sign(signing_bytes(parsed.data)) == parsed.data["signature"]

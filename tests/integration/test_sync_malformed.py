"""Every §2 reason code (and room_mismatch, bad_content) from a real line in a real file.

One file mixes valid, chained events with bad lines. Each bad line must become a rejected
line (file, line number, reason, raw text of at most 4 KiB) with its finding, and every
valid line around it must still land, verified and chained.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from test_sync_support import (
    ALICE,
    BASE_MS,
    Author,
    line_of,
    log_key,
    query,
    write_events,
)

from bucketchat.session import sync_bucket
from bucketchat.storage import LocalBucket

MAX_LINE = 1_048_576


def _inject(line: str, marker: str, replacement: str) -> str:
    assert marker in line
    return line.replace(marker, replacement, 1)


def bad_lines(author: Author, at: int) -> list[tuple[str, bytes]]:
    """(expected reason, raw line) for every way a line can be malformed."""
    template = line_of(
        author.event("room", at, content={"body": "x", "msgtype": "m.text"}, prev=None)
    )
    author.heads.pop("room", None)  # the template is not part of the chain
    deep = "[" * 70 + "]" * 70
    return [
        ("oversized", json.dumps({"pad": "y" * (MAX_LINE + 10)}).encode()),
        ("bad_encoding", b'{"event_id": "room::x::\xff\xfe", "junk": "\xc3\x28"}'),
        ("bad_json", b"{this is not json"),
        ("bad_json", b"[1, 2, 3]"),
        ("bad_json", b'"just a string"'),
        (
            "duplicate_key",
            _inject(template, '"content": {', '"content": {"k": 1, "k": 2, ').encode(),
        ),
        (
            "duplicate_key",
            _inject(
                template, '"room_id": "room", ', '"room_id": "room", "room_id": "room", '
            ).encode(),
        ),
        ("too_deep", _inject(template, '"content": {', f'"content": {{"deep": {deep}, ').encode()),
        ("bad_number", _inject(template, '"content": {', '"content": {"n": 1.5, ').encode()),
        ("bad_number", _inject(template, '"content": {', '"content": {"n": NaN, ').encode()),
        ("bad_number", _inject(template, '"content": {', '"content": {"n": -Infinity, ').encode()),
        (
            "bad_number",
            _inject(template, '"content": {', '"content": {"n": 9007199254740992, ').encode(),
        ),
        ("bad_number", _inject(template, '"content": {', '"content": {"n": 1e3, ').encode()),
        ("lone_surrogate", _inject(template, '"body": "x"', '"body": "x\\ud800y"').encode()),
        ("lone_surrogate", _inject(template, '"body": "x"', '"body": "\\udc00"').encode()),
        ("bad_shape", _inject(template, '"signature": ', '"not_signature": ').encode()),
        (
            "bad_shape",
            _inject(template, f'"timestamp_ms": {at}', f'"timestamp_ms": "{at}"').encode(),
        ),
        (
            "bad_shape",
            json.dumps({**json.loads(template), "content": ["not", "an", "object"]}).encode(),
        ),
        ("bad_shape", json.dumps({**json.loads(template), "event_id": "room::only-two"}).encode()),
        ("bad_shape", json.dumps({**json.loads(template), "event_id": "room::a::b::c"}).encode()),
        ("bad_shape", json.dumps({**json.loads(template), "timestamp_ms": -1}).encode()),
        ("bad_shape", json.dumps({**json.loads(template), "sender_id": ""}).encode()),
        ("bad_shape", json.dumps({**json.loads(template), "parent_event_id": 5}).encode()),
    ]


REASONS = {
    "oversized",
    "bad_encoding",
    "bad_json",
    "duplicate_key",
    "too_deep",
    "bad_number",
    "lone_surrogate",
    "bad_shape",
}


def test_every_reason_code_is_stored_and_the_lines_around_still_land(tmp_path: Path):
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    alice = Author.of(ALICE)
    at = BASE_MS
    bad = bad_lines(Author.of(ALICE), BASE_MS + 500)
    assert {reason for reason, _ in bad} == REASONS

    valid: list[dict[str, Any]] = [alice.join("room", at := at + 1)]
    physical: list[bytes] = [b"\xef\xbb\xbf" + line_of(valid[0]).encode()]  # a BOM first
    expected_rejects: list[tuple[int, str, bytes]] = []
    for index, (reason, raw) in enumerate(bad):
        expected_rejects.append((len(physical) + 1, reason, raw))
        physical.append(raw)
        event = alice.message("room", at := at + 1, f"valid after {reason} {index}")
        valid.append(event)
        ending = b"\r" if index % 5 == 0 else b""  # CRLF lines are fine
        physical.append(line_of(event).encode() + ending)
        if index % 7 == 0:
            physical.append(b"")  # blank lines are skipped
            physical.append(b"   ")

    foreign = Author.of(ALICE).event("other", at + 1, prev=None)
    expected_rejects.append((len(physical) + 1, "room_mismatch", line_of(foreign).encode()))
    physical.append(line_of(foreign).encode())
    prefix_lie = Author.of(ALICE).event("room", at + 2, event_id=f"other::{at + 2}::x", prev=None)
    expected_rejects.append((len(physical) + 1, "room_mismatch", line_of(prefix_lie).encode()))
    physical.append(line_of(prefix_lie).encode())
    bad_content = alice.event("room", at := at + 3, content={"body": 5, "msgtype": "m.text"})
    physical.append(line_of(bad_content).encode())
    last = alice.message("room", at := at + 1, "the very last line")
    valid += [bad_content, last]
    physical.append(line_of(last).encode())

    key = log_key("room", BASE_MS + 1, at, alice.client_id)
    path = root / key
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\n".join(physical) + b"\n")
    os.utime(path, (time.time() - 60, time.time() - 60))

    report = sync_bucket(LocalBucket(root), cache)
    assert report.files_ingested == 1
    assert report.events_ingested == len(valid)
    assert report.events_rejected == len(expected_rejects)
    assert report.duplicates == 0

    stored = query(
        cache,
        "SELECT line, reason, raw, file FROM rejected_lines ORDER BY line",
    )
    assert [(r[0], r[1]) for r in stored] == [(n, reason) for n, reason, _ in expected_rejects]
    for (number, reason, raw_text, file), (_, _, raw) in zip(stored, expected_rejects, strict=True):
        assert file == key
        assert len(raw_text.encode("utf-8")) <= 4096 or reason == "bad_encoding", reason
        assert len(raw_text) <= 4096
        expected_text = raw[:4096].decode("utf-8", errors="replace")
        if reason == "bad_encoding":
            assert raw_text.startswith('{"event_id": "room::x::')
        else:
            assert raw_text == expected_text, (number, reason)

    events = query(
        cache,
        "SELECT event_hash, trust, event_id, content_problem FROM events ORDER BY timestamp_ms",
    )
    assert [e[2] for e in events] == [v["event_id"] for v in valid]
    assert {e[1] for e in events} == {"tofu"}
    problems = [e[2] for e in events if e[3] is not None]
    assert problems == [bad_content["event_id"]]

    findings = query(
        cache,
        "SELECT kind, severity, reason, line, event_id, file FROM findings ORDER BY line",
    )
    expected_findings = [
        (
            "room_mismatch" if reason == "room_mismatch" else "malformed",
            "error",
            None if reason == "room_mismatch" else reason,
            number,
        )
        for number, reason, _ in expected_rejects
    ]
    bad_content_line = physical.index(line_of(bad_content).encode()) + 1
    expected_findings.append(("malformed", "warning", "bad_content", bad_content_line))
    assert sorted(f[:4] for f in findings) == sorted(expected_findings)
    mismatch_ids = {f[4] for f in findings if f[0] == "room_mismatch"}
    assert mismatch_ids == {foreign["event_id"], prefix_lie["event_id"]}
    assert {f[5] for f in findings} == {key}
    # the room 'other' got nothing from the replay
    assert query(cache, "SELECT count(*) FROM events WHERE room_id = 'other'") == [(0,)]


@pytest.mark.parametrize(
    "char",
    [
        "€",  # 3 bytes: 4,089 bytes after the 7-byte prefix hold whole characters only
        "é",
        "𝄞",
    ],
)
def test_a_kept_raw_line_is_at_most_4_kib_of_utf8(char: str, tmp_path: Path):
    """The stored raw text of a rejected line is cut to 4 KiB, even mid-character."""
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    alice = Author.of(ALICE)
    join = alice.join("room", BASE_MS)
    huge = ('{"x": "' + char * (MAX_LINE // len(char.encode()) + 10) + '"}').encode()
    write_events(root, "room", [join], alice.client_id, extra_lines=[(1, huge)])
    report = sync_bucket(LocalBucket(root), cache)
    assert (report.events_ingested, report.events_rejected) == (1, 1)
    ((reason, raw),) = query(cache, "SELECT reason, raw FROM rejected_lines")
    assert reason == "oversized"
    assert len(raw.encode("utf-8")) <= 4096
    assert raw.startswith('{"x": "' + char * 100)


def test_a_long_badly_encoded_line_keeps_at_most_4_kib(tmp_path: Path):
    root, cache = tmp_path / "bucket", tmp_path / "cache.duckdb"
    alice = Author.of(ALICE)
    bad = b'{"x": "' + b"\xff" * 6000 + b'"}'
    write_events(
        root, "room", [alice.join("room", BASE_MS)], alice.client_id, extra_lines=[(0, bad)]
    )
    report = sync_bucket(LocalBucket(root), cache)
    assert (report.events_ingested, report.events_rejected) == (1, 1)
    ((reason, raw),) = query(cache, "SELECT reason, raw FROM rejected_lines")
    assert reason == "bad_encoding"
    assert raw.startswith('{"x": "')
    assert len(raw.encode("utf-8")) <= 4096

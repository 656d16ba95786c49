"""The bundle export: a folder anyone can re-check offline (``bucketchat verify``).

    MANIFEST.json                 format, version, created time, sha256 of every other file
    rooms/<room_id>/events.jsonl  the original signed lines; redacted ones as stubs
    keys.json                     the keys in use, with trust and attestations
    audit.json                    ``audit --format json`` of the exported rooms
    digests.json                  room → digest (PROTOCOL.md §8) of the exported events

The check itself is ``audit.bundle``'s, which also defines the format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.audit.bundle import BUNDLE_FORMAT, BUNDLE_VERSION, sha256_file
from bucketchat.errors import UsageError
from bucketchat.export.common import (
    LINE_COUNT,
    ExportOptions,
    ExportResult,
    Progress,
    Ticker,
    count_rows,
    iso_time,
)
from bucketchat.export.jsonl import signed_lines
from bucketchat.protocol.canonical import room_digest
from bucketchat.timeutil import now_ms

if TYPE_CHECKING:
    from bucketchat.cache import Cache

KEYS_IN_USE = """
SELECT k.room_id, k.sender_id, k.public_key, k.status, k.trust, k.revoked_after_ms, k.pinned,
       a.attestation, a.attestation_ok, a.attestation_detail
FROM key_state k
LEFT JOIN (
    SELECT room_id, sender_id, public_key,
           any_value(json_extract(content, '$.attestation')::VARCHAR) AS attestation,
           bool_or(attestation_ok) AS attestation_ok,
           any_value(attestation_detail) AS attestation_detail
    FROM event_rows WHERE type = 'm.room.member' AND public_key IS NOT NULL
    GROUP BY room_id, sender_id, public_key
) a ON a.room_id = k.room_id AND a.sender_id = k.sender_id AND a.public_key = k.public_key
WHERE k.room_id IN (SELECT room_id FROM export_rooms)
ORDER BY k.room_id, k.sender_id, k.public_key
"""
def _write_json(path: Path, document: Any) -> None:
    path.write_text(
        json.dumps(document, ensure_ascii=False, indent=2, sort_keys=False, default=str) + "\n",
        encoding="utf-8",
    )


def write_bundle(
    cache: Cache, output: Path, options: ExportOptions, progress: Progress | None = None
) -> ExportResult:
    import pyarrow as pa

    from bucketchat.audit.report import audit_report

    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"{output} exists and is not an empty folder; a bundle needs a new one")
    output.mkdir(parents=True, exist_ok=True)
    ticker = Ticker(progress, count_rows(cache, LINE_COUNT, options))
    digests: dict[str, str] = {}
    events = 0
    for room in options.rooms:
        folder = output / "rooms" / room
        folder.mkdir(parents=True)
        hashes = []
        with (folder / "events.jsonl").open("w", encoding="utf-8", newline="\n") as handle:
            for line, _ts, _stub, digest in signed_lines(cache, room, options):
                handle.write(line)
                handle.write("\n")
                hashes.append(digest)
                events += 1
                ticker.tick()
        digests[room] = room_digest(hashes)

    cache.register("export_rooms", pa.table({"room_id": pa.array(options.rooms, pa.string())}))
    try:
        keys = cache.records(KEYS_IN_USE)
    finally:
        cache.unregister("export_rooms")
    for key in keys:
        key["attestation"] = json.loads(key["attestation"]) if key["attestation"] else None
    _write_json(output / "keys.json", keys)
    report = audit_report(cache, options.rooms[0] if len(options.rooms) == 1 else None)
    if len(options.rooms) > 1 and not options.all_rooms:
        wanted = set(options.rooms)
        report["findings"] = [f for f in report["findings"] if f["room_id"] in wanted]
    _write_json(output / "audit.json", report)
    _write_json(output / "digests.json", digests)
    files = {
        path.relative_to(output).as_posix(): sha256_file(path)
        for path in sorted(output.rglob("*"))
        if path.is_file()
    }
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "created_at": iso_time(now_ms()),
        "rooms": options.rooms,
        "since_ms": options.since_ms,
        "until_ms": options.until_ms,
        "include_redacted": options.include_redacted,
        "files": files,
    }
    _write_json(output / "MANIFEST.json", manifest)
    ticker.finish()
    return ExportResult("bundle", output, options.rooms, events, len(files) + 1)

"""Bundles: a folder anyone can re-check offline, and the check itself.

    MANIFEST.json                 format, version, created time, sha256 of every other file
    rooms/<room_id>/events.jsonl  the original signed lines; redacted ones as stubs
    keys.json                     the keys in use, with trust and attestations
    audit.json                    ``audit --format json`` of the exported rooms
    digests.json                  room → digest (PROTOCOL.md §8) of the exported events

``verify_bundle`` needs no cache and no network: it lays the lines out as a local bucket
in a temporary folder and ingests them through the same pull pipeline as a sync (parse,
hash, verify, key rules, chains), then recomputes every digest. Stubs stand in for their
event in the digest and the chains (their hash cannot be checked without the content).
Keys that were attested where the bundle was made are pinned, because the identity
provider is not reachable offline; everything else is decided from the lines.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.errors import UsageError
from bucketchat.export import (
    LINE_COUNT,
    ExportOptions,
    ExportResult,
    Progress,
    _count,
    _Ticker,
    iso_time,
    signed_lines,
)
from bucketchat.protocol.canonical import room_digest
from bucketchat.timeutil import now_ms

if TYPE_CHECKING:
    from bucketchat.cache import Cache

BUNDLE_FORMAT = "bucketchat-bundle"
BUNDLE_VERSION = 1
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
ROOM_HASHES = """
SELECT room_id, list(event_hash) FROM events WHERE trust <> 'invalid' GROUP BY room_id
"""
EVENT_PREV = "SELECT room_id, event_id, prev_event_hash FROM event_rows"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, document: Any) -> None:
    path.write_text(
        json.dumps(document, ensure_ascii=False, indent=2, sort_keys=False, default=str) + "\n",
        encoding="utf-8",
    )


def write_bundle(
    cache: Cache, output: Path, options: ExportOptions, progress: Progress | None = None
) -> ExportResult:
    import pyarrow as pa

    from bucketchat.audit import audit_report

    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"{output} exists and is not an empty folder; a bundle needs a new one")
    output.mkdir(parents=True, exist_ok=True)
    ticker = _Ticker(progress, _count(cache, LINE_COUNT, options))
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

    cache.con.register("export_rooms", pa.table({"room_id": pa.array(options.rooms, pa.string())}))
    try:
        result = cache.con.execute(KEYS_IN_USE)
        columns = [d[0] for d in result.description or []]
        keys = [dict(zip(columns, row, strict=True)) for row in result.fetchall()]
    finally:
        cache.con.unregister("export_rooms")
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


def _finding(kind: str, detail: str, *, room: str | None = None, file: str | None = None,
             line: int | None = None, event_id: str | None = None,
             sender: str | None = None, severity: str = "error") -> dict[str, Any]:
    return {
        "kind": kind,
        "severity": severity,
        "room_id": room,
        "sender_id": sender,
        "event_id": event_id,
        "file": file,
        "line": line,
        "reason": None,
        "detail": detail,
    }


def _check_manifest(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    manifest_path = path / "MANIFEST.json"
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        return {}, [_finding("bundle_manifest", f"MANIFEST.json is unreadable: {exc}")]
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        return {}, [_finding("bundle_manifest", "MANIFEST.json is not a bucketchat bundle's")]
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        return manifest, [_finding("bundle_manifest", "MANIFEST.json lists no files")]
    findings = []
    present = {
        p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()
    } - {"MANIFEST.json"}
    for name in sorted(set(listed) | present):
        if name not in present:
            findings.append(_finding("bundle_file_missing", "listed in MANIFEST.json", file=name))
        elif name not in listed:
            findings.append(_finding("bundle_file_unlisted", "not in MANIFEST.json", file=name))
        elif sha256_file(path / name) != listed[name]:
            findings.append(
                _finding("bundle_file_changed", "sha256 differs from MANIFEST.json", file=name)
            )
    return manifest, findings


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return default


def verify_bundle(path: Path) -> dict[str, Any]:
    """Re-check a bundle offline: manifest hashes, signatures, keys, chains and digests.

    Returns CLI.md's ``verify --json`` shape; ``ok`` is true when every file matches the
    manifest, every room's digest matches ``digests.json``, and re-checking found no error
    that the bundle's own ``audit.json`` does not already report.
    """
    from bucketchat.audit import audit_report
    from bucketchat.cache import open_cache
    from bucketchat.storage import LocalBucket
    from bucketchat.sync.pull import pull

    if not path.is_dir():
        raise UsageError(f"{path} is not a bundle folder")
    manifest, findings = _check_manifest(path)
    claimed = _read_json(path / "digests.json", {})
    claimed = claimed if isinstance(claimed, dict) else {}
    known_audit = _read_json(path / "audit.json", {})
    known = {
        (f.get("kind"), f.get("room_id"), f.get("event_id"))
        for f in (known_audit.get("findings", []) if isinstance(known_audit, dict) else [])
        if isinstance(f, dict)
    }
    pins: dict[str, list[str]] = {}
    for key in _read_json(path / "keys.json", []):
        if isinstance(key, dict) and key.get("status") == "accepted" and (
            key.get("trust") == "attested"
        ):
            pins.setdefault(str(key["sender_id"]), []).append(str(key["public_key"]))

    rooms_dir = path / "rooms"
    room_ids = (
        sorted(p.name for p in rooms_dir.iterdir() if p.is_dir()) if rooms_dir.is_dir() else []
    )
    stubs: dict[str, dict[str, str | None]] = {}  # room → stub hash → its prev hash
    line_maps: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory(prefix="bucketchat-verify-") as scratch:
        bucket_root = Path(scratch) / "bucket"
        for room in room_ids:
            stubs[room], line_maps[room] = _lay_out(path, room, bucket_root, findings)
        cache_path = Path(scratch) / "verify.duckdb"
        pull(LocalBucket(bucket_root), cache_path, pinned=pins, workers=1)
        with open_cache(cache_path, read_only=True) as cache:
            report = audit_report(cache)
            hashes = dict(cache.con.execute(ROOM_HASHES).fetchall())
            prevs = {(r, e): p for r, e, p in cache.con.execute(EVENT_PREV).fetchall()}
    all_stub_hashes = {h for room_stubs in stubs.values() for h in room_stubs}
    new_errors = 0
    for finding in report["findings"]:
        room = finding["room_id"]
        if finding["kind"] == "chain_gap" and prevs.get((room, finding["event_id"])) in (
            stubs.get(room, {})
        ):
            continue  # its predecessor is a redacted event's stub
        if finding["file"] and room in line_maps and finding["line"]:
            finding["file"] = f"rooms/{room}/events.jsonl"
            finding["line"] = line_maps[room][finding["line"] - 1]
        elif finding["file"]:
            finding["file"] = f"rooms/{room}/events.jsonl"
        if finding["severity"] == "error" and (
            (finding["kind"], room, finding["event_id"]) not in known
        ):
            new_errors += 1
        findings.append(finding)
    rooms = []
    for room in room_ids:
        room_hashes = list(hashes.get(room, [])) + list(stubs[room])
        digest = room_digest(room_hashes)
        rooms.append(
            {
                "room_id": room,
                "events": len(room_hashes),
                "digest": digest,
                "digest_matches": claimed.get(room) == digest,
            }
        )
        known_hashes = set(room_hashes) | all_stub_hashes
        for stub_hash, prev in stubs[room].items():
            if prev is not None and prev not in known_hashes:
                findings.append(
                    _finding("chain_gap", f"the stub of {stub_hash} follows an unknown event",
                             room=room, file=f"rooms/{room}/events.jsonl")
                )
                new_errors += 1
    for room in set(claimed) - set(room_ids):
        findings.append(_finding("bundle_file_missing", "digests.json names a room with no lines",
                                 room=str(room)))
    manifest_ok = bool(manifest) and not any(f["kind"].startswith("bundle_") for f in findings)
    ok = manifest_ok and all(r["digest_matches"] for r in rooms) and new_errors == 0
    return {"ok": ok, "rooms": rooms, "findings": findings}


def _lay_out(
    bundle: Path, room: str, bucket_root: Path, findings: list[dict[str, Any]]
) -> tuple[dict[str, str | None], list[int]]:
    """Write a room's event lines as one log file of a local bucket; collect its stubs."""
    from bucketchat.protocol.naming import is_room_id, log_file_path

    source = bundle / "rooms" / room / "events.jsonl"
    stubs: dict[str, str | None] = {}
    kept: list[bytes] = []
    line_map: list[int] = []
    stamps: list[int] = []
    if not is_room_id(room):
        findings.append(_finding("unexpected_file", "not a room id", file=f"rooms/{room}"))
        return stubs, line_map
    try:
        data = source.read_bytes()
    except OSError:
        return stubs, line_map
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and set(parsed) == {"redacted"}:
            stub = parsed["redacted"]
            if isinstance(stub, dict) and isinstance(stub.get("event_hash"), str):
                prev = stub.get("prev_event_hash")
                stubs[stub["event_hash"]] = prev if isinstance(prev, str) else None
                continue
        if isinstance(parsed, dict) and isinstance(parsed.get("timestamp_ms"), int):
            stamps.append(parsed["timestamp_ms"])
        kept.append(raw)
        line_map.append(number)
    if not kept:
        return stubs, line_map
    start, end = (min(stamps), max(stamps)) if stamps else (0, 0)
    target = bucket_root / log_file_path(room, start, end, "bundle")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\n".join(kept) + b"\n")
    return stubs, line_map

"""Bundle verification: re-check an exported bundle with no cache and no network.

``verify_bundle`` lays the lines out as a local bucket in a temporary folder and ingests
them through the same pipeline as a sync (parse, hash, verify, key rules, chains), then
recomputes every digest. Stubs stand in for their event in the digest and the chains
(their hash cannot be checked without the content). Keys that were attested where the
bundle was made are pinned, because the identity provider is not reachable offline;
everything else is decided from the lines. The bundle's layout is defined here too
(``export.bundle`` writes it).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.errors import UsageError
from bucketchat.protocol.canonical import room_digest

if TYPE_CHECKING:
    from bucketchat.storage import LocalBucket

BUNDLE_FORMAT = "bucketchat-bundle"
BUNDLE_VERSION = 1

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
    from bucketchat.audit.report import audit_report
    from bucketchat.cache import open_cache
    from bucketchat.storage import LocalBucket

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
        _ingest(LocalBucket(bucket_root), cache_path, pins)
        with open_cache(cache_path, read_only=True) as cache:
            report = audit_report(cache)
            hashes = dict(cache.rows(ROOM_HASHES))
            prevs = {(r, e): p for r, e, p in cache.rows(EVENT_PREV)}
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


def _ingest(bucket: LocalBucket, cache_path: Path, pins: dict[str, list[str]]) -> None:
    """Pull the laid-out bucket and decide its keys, as a sync does (no timeline or search
    index: the audit reads neither). No issuer is trusted: attested keys come pinned."""
    from bucketchat.attestation import AttestationVerifier
    from bucketchat.cache import open_cache
    from bucketchat.sync.keys import decide_keys, verify_late_unheld
    from bucketchat.sync.pull import keys_fingerprint, pull

    check = AttestationVerifier([])
    fingerprint = keys_fingerprint(pins, check)
    pulled = pull(bucket, cache_path, pinned=pins, keys_fingerprint=fingerprint, workers=1)
    if pulled is None or pulled.idle:
        return
    verify_late_unheld(cache_path, pulled.keyed_rooms, pins, 1, every_room=pulled.keys_changed)
    with open_cache(cache_path) as cache:
        decide_keys(cache, pulled, pins, check, 1)

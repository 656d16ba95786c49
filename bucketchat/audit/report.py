"""The audit: findings of PROTOCOL.md §7-8, per-chain status and room digests, as plain data.

Everything comes from the cache's views (``findings``, ``events``, ``keys``); this module
only shapes it into the documented JSON (CLI.md ``audit --format json``) and decides the
exit status for ``--fail-on``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from bucketchat.cache import Cache
from bucketchat.protocol.canonical import room_digest

SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}
FAIL_ON = {"error": 2, "warning": 1, "never": 99}
CHAIN_NAMES = {
    "chain_gap": "gap",
    "chain_fork": "fork",
    "unchained": "unchained",
    "timestamp_regression": "regression",
}

# The macros behind the findings views (migration 0008) filter at the source, so one
# room's audit costs what that room's size does, not what the whole cache's does.
FINDINGS = """
SELECT kind, severity, room_id, sender_id, event_id, file, line, reason, detail
FROM findings_in(CASE WHEN $room IS NULL THEN NULL ELSE [$room] END::VARCHAR[])
WHERE $room IS NULL OR room_id = $room
ORDER BY room_id NULLS FIRST, file NULLS FIRST, line NULLS FIRST, kind, event_id
"""
SENDER_CHAINS = """
SELECT e.room_id, e.sender_id, e.signer_key, count(*) AS events,
       CASE WHEN bool_or(e.trust = 'attested') THEN 'attested'
            WHEN bool_or(e.trust = 'tofu') THEN 'tofu'
            WHEN bool_or(k.status = 'conflict') THEN 'conflict'
            ELSE 'unverified' END AS trust
FROM events e
LEFT JOIN key_state k
       ON k.room_id = e.room_id AND k.sender_id = e.sender_id AND k.public_key = e.signer_key
WHERE $room IS NULL OR e.room_id = $room
GROUP BY e.room_id, e.sender_id, e.signer_key
ORDER BY e.room_id, e.sender_id, e.signer_key NULLS LAST
"""
CHAIN_PROBLEMS = """
SELECT DISTINCT room_id, sender_id, signer_key, kind
FROM chain_findings_in(CASE WHEN $room IS NULL THEN NULL ELSE [$room] END::VARCHAR[])
WHERE $room IS NULL OR room_id = $room
"""
ROOM_HASHES = """
SELECT room_id, list(event_hash) FROM events
WHERE trust <> 'invalid' AND ($room IS NULL OR room_id = $room)
GROUP BY room_id ORDER BY room_id
"""
ROOM_NAMES = """
SELECT DISTINCT room_id FROM (
    SELECT room_id FROM event_rows UNION ALL SELECT room_id FROM room_meta
    UNION ALL SELECT room_id FROM files WHERE room_id IS NOT NULL
) WHERE $room IS NULL OR room_id = $room ORDER BY room_id
"""
TOTALS = """
SELECT count(*), count(DISTINCT sender_id) FROM events WHERE $room IS NULL OR room_id = $room
"""


def audit_report(cache: Cache, room: str | None = None) -> dict[str, Any]:
    params = {"room": room}
    columns = (
        "kind",
        "severity",
        "room_id",
        "sender_id",
        "event_id",
        "file",
        "line",
        "reason",
        "detail",
    )
    findings = [
        dict(zip(columns, row, strict=True)) for row in cache.rows(FINDINGS, params)
    ]
    problems: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for room_id, sender, key, kind in cache.rows(CHAIN_PROBLEMS, params):
        problems[(room_id, sender, key)].add(CHAIN_NAMES[kind])
    senders = [
        {
            "room_id": room_id,
            "sender_id": sender,
            "public_key": key,
            "events": count,
            "trust": trust,
            "chain": sorted(problems.get((room_id, sender, key), set())),
        }
        for room_id, sender, key, count, trust in cache.rows(SENDER_CHAINS, params)
    ]
    hashes = dict(cache.rows(ROOM_HASHES, params))
    rooms = [
        {
            "room_id": room_id,
            "events": len(hashes.get(room_id, [])),
            "digest": room_digest(hashes.get(room_id, [])),
        }
        for (room_id,) in cache.rows(ROOM_NAMES, params)
    ]
    totals = cache.one(TOTALS, params) or (0, 0)
    severities = Counter(finding["severity"] for finding in findings)
    return {
        "summary": {
            "events": totals[0],
            "senders": totals[1],
            "error": severities.get("error", 0),
            "warning": severities.get("warning", 0),
            "info": severities.get("info", 0),
            "by_kind": dict(sorted(Counter(f["kind"] for f in findings).items())),
        },
        "findings": findings,
        "senders": senders,
        "rooms": rooms,
    }


def fails(report: dict[str, Any], fail_on: str) -> bool:
    """True when a finding is at or above the ``--fail-on`` severity."""
    threshold = FAIL_ON[fail_on]
    return any(SEVERITY_RANK[f["severity"]] >= threshold for f in report["findings"])

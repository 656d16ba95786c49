"""Cache upkeep: migrations on demand, clearing events for a rebuild, sizes and counts.

A rebuild drops what was read from the bucket but keeps the memory of files (sizes,
hashes, first-seen times), so mutations, deletions and future timestamps stay detectable
(PROTOCOL.md §8): ingested files become pending and are read again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bucketchat.cache.connection import _connect, open_cache
from bucketchat.cache.migrations import apply_migrations, pending_migrations

CLEAR_FOR_REBUILD = (
    "DELETE FROM event_rows",
    "DELETE FROM rejected_lines",
    "DELETE FROM duplicate_lines",
    "DELETE FROM key_state",
    "DELETE FROM invalid_member_events",
    "DELETE FROM key_findings",
    "UPDATE files SET state = 'pending' WHERE state = 'ingested'",
    "UPDATE files SET state = 'mutated_pending' WHERE state = 'mutated'",
    "UPDATE files SET version = '' WHERE state = 'metadata'",
    "DELETE FROM cache_meta WHERE key = 'keys_fingerprint'",
)
COUNTS = {
    "events": "SELECT count(*) FROM event_rows",
    "rooms": "SELECT count(DISTINCT room_id) FROM event_rows",
    "files": "SELECT count(*) FROM files WHERE state IN ('ingested', 'mutated')",
    "rejected_lines": "SELECT count(*) FROM rejected_lines",
    "outbox_pending": "SELECT count(*) FROM outbox WHERE uploaded_at IS NULL",
    "schema_version": "SELECT max(version) FROM schema_migrations",
}


def migrate(path: Path, dry_run: bool = False) -> list[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _connect(path, False, 5.0)
    try:
        pending = pending_migrations(con)
        if not dry_run:
            apply_migrations(con)
    finally:
        con.close()
    return [f"{m.version:04d}_{m.name}" for m in pending]


def clear_events(path: Path) -> None:
    with open_cache(path) as cache, cache.transaction():
        for statement in CLEAR_FOR_REBUILD:
            cache.execute(statement)


def info(path: Path) -> dict[str, Any]:
    details: dict[str, Any] = {"path": str(path)}
    details["size_bytes"] = path.stat().st_size if path.exists() else 0
    with open_cache(path, read_only=True) as cache:
        for name, query in COUNTS.items():
            details[name] = cache.value(query, default=0)
    return details

"""What a sync reports: its counts (CLI.md ``sync --json``) and the findings it added.

A sync changes the findings of the rooms whose files it reads, marks changed or gone, or
finds unexpected, and of no other room (a new pin aside: then every room is counted).
The report counts only those (and the findings of no room), before and after, through
the macro that filters at the source (migration 0008): a sync of one new message into a
cache of 1M events took ~5.3 s when it counted every room's findings twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bucketchat.cache import Cache

Progress = Callable[[int, int, int], None]  # files done, files to read, events so far
# What a sync does once the files are read ("deciding keys", "building the timeline", …):
# for a big backlog these steps take a while, and a progress display can say which.
Stage = Callable[[str], None]

# $rooms NULL counts every room, as fast as the view.
FINDING_COUNTS = "SELECT kind, count(*) FROM findings_in($rooms::VARCHAR[]) GROUP BY kind"


@dataclass
class SyncReport:
    files_scanned: int = 0
    files_ingested: int = 0
    events_ingested: int = 0
    events_rejected: int = 0
    duplicates: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "files_scanned": self.files_scanned,
            "files_ingested": self.files_ingested,
            "events_ingested": self.events_ingested,
            "events_rejected": self.events_rejected,
            "duplicates": self.duplicates,
            "findings": dict(sorted(self.findings.items())),
            "seconds": round(self.seconds, 3),
        }

    def add_findings(self, before: Mapping[str, int], after: Mapping[str, int]) -> None:
        """Record the findings that grew between the two counts."""
        self.findings = {
            kind: count - before.get(kind, 0)
            for kind, count in after.items()
            if count > before.get(kind, 0)
        }


def finding_counts(cache: Cache, rooms: list[str] | None) -> dict[str, int]:
    """Findings by kind, of ``rooms`` (and of no room) or, with None, of every room."""
    rows = cache.rows(FINDING_COUNTS, {"rooms": rooms})
    return {str(kind): int(count) for kind, count in rows}


def finding_counts_beside(cache: Cache, rooms: list[str] | None) -> dict[str, int]:
    """``finding_counts`` on a cursor of its own, for a thread beside the cache's."""
    cursor = cache.beside()
    try:
        return finding_counts(cursor, rooms)
    finally:
        cursor.close()

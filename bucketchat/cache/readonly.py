"""Read-only SQL for ``bucketchat sql``: a read-only connection with file access turned off.

The connection opens the cache in DuckDB's read-only mode (writes fail in the engine,
not by inspecting the text) and then disables external access and locks the
configuration, so a query can neither write the cache nor read or write other files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from bucketchat.cache.connection import open_cache
from bucketchat.errors import UsageError

MAX_ROWS = 100_000


def run_read_only(path: Path, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with open_cache(path, read_only=True) as cache:
        con = cache._con  # this package's own: file access is switched off below
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        try:
            result = con.execute(query)
            columns = [d[0] for d in result.description or []]
            rows = result.fetchmany(MAX_ROWS)
        except duckdb.Error as exc:
            message = " ".join(str(exc).split())
            if "read-only" in message or "read only" in message:
                raise UsageError(f"sql is read-only: {message}") from exc
            if "external access" in message.lower() or "lock_configuration" in message:
                raise UsageError(f"sql cannot touch files or settings: {message}") from exc
            raise UsageError(f"the query failed: {message}") from exc
    return columns, rows

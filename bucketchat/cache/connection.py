"""Opening the DuckDB cache: migrations on open, retries while another process holds it.

DuckDB lets one process open a file for writing, and while it does no other process can
open it at all, not even read-only. So every command retries for a few seconds and then
says the cache is busy (exit 3); writers keep the cache open only for a batch.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb

from bucketchat.cache.migrations import apply_migrations
from bucketchat.errors import CacheBusy, CacheError

DEFAULT_WAIT_SECONDS = 10.0  # longer than a sync's longest transaction (sync.store)
WRITER_MEMORY_LIMIT = "512MB"
_LOCK_MESSAGES = ("Could not set lock", "Conflicting lock", "database is locked")


def _config(read_only: bool, private_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "extension_directory": str(private_dir),
    }
    if read_only:
        config["access_mode"] = "READ_ONLY"
    else:
        # Writers are syncs and upkeep: bounded memory (DuckDB spills the rest to disk)
        # keeps a sync of any size under its memory budget next to its verify workers.
        config["memory_limit"] = WRITER_MEMORY_LIMIT
        # A sync's transaction appends up to two row groups; DuckDB would otherwise keep up
        # to five in memory before writing them out, which the memory limit does not bound.
        config["write_buffer_row_group_count"] = 1
    return config


def _connect(path: Path, read_only: bool, wait_seconds: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + wait_seconds
    delay = 0.02
    private_dir = path.parent / ".duckdb-extensions"
    while True:
        try:
            con = duckdb.connect(str(path), config=_config(read_only, private_dir))
            _quiet(con)
            return con
        except duckdb.IOException as exc:
            if not any(message in str(exc) for message in _LOCK_MESSAGES):
                raise CacheError(f"cannot open the cache {path}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise CacheBusy(
                    f"the cache is busy (another bucketchat is syncing): {path}; "
                    "try again in a moment"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        except duckdb.Error as exc:
            raise CacheError(f"cannot open the cache {path}: {exc}") from exc


def _quiet(con: duckdb.DuckDBPyConnection) -> None:
    """No DuckDB progress bar: on a terminal it goes to stdout and corrupts --json output.

    Inside Jupyter, DuckDB refuses to touch the setting without ipywidgets; there the
    bar is a widget, not text on stdout, so it may stay as it is.
    """
    with contextlib.suppress(duckdb.Error):
        con.execute("SET enable_progress_bar = false")


class Cache:
    """An open cache. Use as a context manager so the file is released promptly."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
        self.con = con
        self.path = path
        self.read_only = read_only

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM cache_meta WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO cache_meta (key, value) VALUES (?, ?)", [key, value]
        )


def open_cache(
    path: Path, *, read_only: bool = False, wait_seconds: float = DEFAULT_WAIT_SECONDS
) -> Cache:
    """Open (creating and migrating as needed) the cache at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if read_only:
        if path.exists():
            con = _connect(path, True, wait_seconds)
            try:
                if not pending_migrations_read_only(con):
                    return Cache(con, path, True)
            except BaseException:
                con.close()
                raise
            con.close()
        open_cache(path, wait_seconds=wait_seconds).close()
        return Cache(_connect(path, True, wait_seconds), path, True)
    con = _connect(path, False, wait_seconds)
    try:
        apply_migrations(con)
    except BaseException:
        con.close()
        raise
    return Cache(con, path, False)


def pending_migrations_read_only(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether migrations wait; raises MigrationMismatch like a writable open would."""
    from bucketchat.cache.migrations import (
        APPLIED_MIGRATIONS,
        check_applied,
        shipped_migrations,
    )

    tables = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations'"
    ).fetchone()
    if not tables or tables[0] == 0:
        return True
    shipped = shipped_migrations()
    applied = con.execute(APPLIED_MIGRATIONS).fetchall()
    check_applied(applied, shipped)
    done = {row[0] for row in applied}
    return any(migration.version not in done for migration in shipped)

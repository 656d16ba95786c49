"""Opening the DuckDB cache: migrations on open, retries while another process holds it.

DuckDB lets one process open a file for writing, and while it does no other process can
open it at all, not even read-only. So every command retries for a few seconds and then
says the cache is busy (exit 3); writers keep the cache open only for a batch.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import duckdb

from bucketchat.cache.migrations import apply_migrations
from bucketchat.errors import CacheBusy, CacheError

if TYPE_CHECKING:
    import pyarrow as pa

#: What the API's ``connect`` hands to notebooks: DuckDB's own connection, read-only.
Connection = duckdb.DuckDBPyConnection
Params = Sequence[Any] | Mapping[str, Any] | None
_MEMORY_SIZE = re.compile(r"\d+(\.\d+)?\s*[KMGT]i?B")

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
    """An open cache: the one way the rest of bucketchat runs SQL on it.

    Every method wraps DuckDB's errors into ``CacheError`` (one line naming the cache), so no
    driver exception reaches a front end; the connection itself stays inside this package.
    Use it as a context manager so the file is released promptly: while a process holds it
    for writing, no other process can open it at all.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
        self._con = con
        self.path = path
        self.read_only = read_only

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- running SQL ------------------------------------------------------------------

    def _run(self, sql: str, params: Params = None) -> duckdb.DuckDBPyConnection:
        try:
            return self._con.execute(sql, params)
        except duckdb.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc: duckdb.Error) -> CacheError:
        return CacheError(f"the cache {self.path}: {' '.join(str(exc).split())}")

    def execute(self, sql: str, params: Params = None) -> None:
        """Run one statement for its effect."""
        self._run(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._con.executemany(sql, list(rows))
        except duckdb.Error as exc:
            raise self._error(exc) from exc

    def one(self, sql: str, params: Params = None) -> tuple[Any, ...] | None:
        """The first row, or None."""
        result = self._run(sql, params)
        try:
            return result.fetchone()
        except duckdb.Error as exc:
            raise self._error(exc) from exc

    def value(self, sql: str, params: Params = None, default: Any = None) -> Any:
        """The first column of the first row (``default`` when there is no row or it is null)."""
        row = self.one(sql, params)
        return default if row is None or row[0] is None else row[0]

    def rows(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        result = self._run(sql, params)
        try:
            return result.fetchall()
        except duckdb.Error as exc:
            raise self._error(exc) from exc

    def records(self, sql: str, params: Params = None) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name."""
        columns, rows = self.table(sql, params)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def table(
        self, sql: str, params: Params = None, limit: int | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """(column names, rows), at most ``limit`` rows."""
        result = self._run(sql, params)
        try:
            columns = [d[0] for d in result.description or []]
            rows = result.fetchall() if limit is None else result.fetchmany(limit)
        except duckdb.Error as exc:
            raise self._error(exc) from exc
        return columns, rows

    def arrow(self, sql: str, params: Params = None) -> pa.Table:
        result = self._run(sql, params)
        try:
            return result.to_arrow_table()
        except duckdb.Error as exc:
            raise self._error(exc) from exc

    def batches(
        self, sql: str, params: Params = None, size: int = 10_000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows ``size`` at a time, fetched as they are consumed."""
        result = self._run(sql, params)
        while True:
            try:
                rows = result.fetchmany(size)
            except duckdb.Error as exc:
                raise self._error(exc) from exc
            if not rows:
                return
            yield rows

    def register(self, name: str, table: pa.Table) -> None:
        """Make an Arrow table visible to SQL as ``name`` until ``unregister``."""
        try:
            self._con.register(name, table)
        except duckdb.Error as exc:
            raise self._error(exc) from exc

    def unregister(self, name: str) -> None:
        self._con.unregister(name)

    @contextlib.contextmanager
    def registered(self, name: str, table: pa.Table) -> Iterator[None]:
        """An Arrow table visible to SQL as ``name`` while the block runs."""
        self.register(name, table)
        try:
            yield
        finally:
            self.unregister(name)

    def beside(self) -> Cache:
        """A second cursor on the same open database, for work on another thread."""
        return Cache(self._con.cursor(), self.path, self.read_only)

    # -- transactions and settings ------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.begin()
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def begin(self) -> None:
        self.execute("BEGIN TRANSACTION")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back the open transaction; a failed statement may have ended it already."""
        with contextlib.suppress(duckdb.Error):
            self._con.execute("ROLLBACK")

    def limit_memory(self, size: str) -> None:
        """Bound DuckDB's memory for what follows (it spills the rest to disk)."""
        if not _MEMORY_SIZE.fullmatch(size):
            raise ValueError(f"not a memory size: {size!r}")
        self.execute(f"SET memory_limit = '{size}'")

    def limit_threads(self, threads: int) -> None:
        self.execute(f"SET threads = {int(threads)}")

    def meta(self, key: str) -> str | None:
        row = self.one("SELECT value FROM cache_meta WHERE key = ?", [key])
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.execute("INSERT OR REPLACE INTO cache_meta (key, value) VALUES (?, ?)", [key, value])


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
    except duckdb.Error as exc:
        con.close()
        raise CacheError(f"cannot migrate the cache {path}: {' '.join(str(exc).split())}") from exc
    except BaseException:
        con.close()
        raise
    return Cache(con, path, False)


def read_only_connection(cache: Cache) -> Connection:
    """The DuckDB connection of a read-only ``cache``, handed over to its new owner (a
    notebook's ``bucketchat.connect()``), who closes it."""
    if not cache.read_only:
        raise CacheError("only a read-only open of the cache is handed out")
    return cache._con


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

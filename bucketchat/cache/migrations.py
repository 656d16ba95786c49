"""The migrations runner: versioned SQL files applied forward-only, each in one transaction.

Each ``migrations/NNNN_name.sql`` is applied together with its ``schema_migrations`` row
(version, name, sha256, applied_at). A cache whose applied migration no longer matches the
shipped file is refused (``MigrationMismatch``): silently running on a schema that differs
from the code's idea of it is how caches get corrupted.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bucketchat.errors import MigrationMismatch
from bucketchat.timeutil import utc_now

if TYPE_CHECKING:
    import duckdb

MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       VARCHAR NOT NULL,
    sha256     VARCHAR NOT NULL,
    applied_at TIMESTAMP NOT NULL
)
"""
APPLIED_MIGRATIONS = "SELECT version, name, sha256 FROM schema_migrations ORDER BY version"
RECORD_MIGRATION = (
    "INSERT INTO schema_migrations (version, name, sha256, applied_at) VALUES (?, ?, ?, ?)"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def migrations_dir() -> Path:
    """The shipped migrations: ``migrations/`` in a checkout, ``_migrations`` in a wheel."""
    packaged = resources.files("bucketchat").joinpath("_migrations")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "migrations"


def shipped_migrations(folder: Path | None = None) -> list[Migration]:
    folder = folder or migrations_dir()
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if match:
            found.append(Migration(int(match[1]), match[2], path.read_text("utf-8")))
    return found


def check_applied(applied: list[tuple[Any, ...]], shipped: list[Migration]) -> None:
    """Raise MigrationMismatch if an applied migration is unknown or differs from its file."""
    by_version = {migration.version: migration for migration in shipped}
    for version, name, digest in applied:
        migration = by_version.get(version)
        if migration is None:
            raise MigrationMismatch(
                f"the cache has migration {version:04d}_{name}, which this bucketchat does not "
                "know: upgrade bucketchat, or use another --db"
            )
        if migration.sha256 != digest:
            raise MigrationMismatch(
                f"migration {version:04d}_{name} changed since it was applied to this cache, "
                "so another bucketchat build made it: sync into a new cache (--db NEW) and "
                "move this one aside"
            )


def pending_migrations(
    con: duckdb.DuckDBPyConnection, shipped: list[Migration] | None = None
) -> list[Migration]:
    """Migrations not yet applied; raises if an applied one differs from what ships."""
    shipped = shipped if shipped is not None else shipped_migrations()
    con.execute(CREATE_MIGRATIONS_TABLE)
    applied = con.execute(APPLIED_MIGRATIONS).fetchall()
    check_applied(applied, shipped)
    done = {row[0] for row in applied}
    return [migration for migration in shipped if migration.version not in done]


def apply_migrations(
    con: duckdb.DuckDBPyConnection, shipped: list[Migration] | None = None
) -> list[Migration]:
    applied = []
    for migration in pending_migrations(con, shipped):
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(migration.sql)
            con.execute(
                RECORD_MIGRATION,
                [migration.version, migration.name, migration.sha256, utc_now()],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        applied.append(migration)
    return applied

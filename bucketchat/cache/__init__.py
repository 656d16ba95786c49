"""The DuckDB cache: connection, migrations and upkeep; the only importer of duckdb.

Everything else runs SQL through ``Cache``'s methods, which turn DuckDB's errors into
``CacheError``; the raw connection never leaves this package.
"""

from bucketchat.cache.connection import Cache, Connection, open_cache, read_only_connection

__all__ = ["Cache", "Connection", "open_cache", "read_only_connection"]

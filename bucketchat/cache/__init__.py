"""The DuckDB cache: connection, migrations and bulk writes; the only importer of duckdb."""

from bucketchat.cache.connection import Cache, open_cache

__all__ = ["Cache", "open_cache"]

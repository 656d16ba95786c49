"""Exports (CLI.md): jsonl, parquet, csv, markdown, html and bundle, from the cache.

    jsonl · bundle   the original signed lines (re-verifiable); a redacted event's line
                     becomes a stub that keeps its chain checkable
    parquet · csv    columns for analysis; redacted content is null
    markdown · html  current text for people, threads indented

One module per format; ``common`` holds what they share.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bucketchat.errors import UsageError
from bucketchat.export.common import ExportOptions, ExportResult, Progress, resolve_rooms

if TYPE_CHECKING:
    from bucketchat.cache import Cache

__all__ = ["FORMATS", "ExportOptions", "ExportResult", "Progress", "export", "resolve_rooms"]

FORMATS = ("jsonl", "parquet", "csv", "markdown", "html", "bundle")


# format → (module, function): a format's module, and what it imports, load only when used
WRITERS = {
    "jsonl": ("bucketchat.export.jsonl", "export_jsonl"),
    "parquet": ("bucketchat.export.parquet", "export_parquet"),
    "csv": ("bucketchat.export.csv", "export_csv"),
    "markdown": ("bucketchat.export.markdown", "export_markdown"),
    "html": ("bucketchat.export.html", "export_html"),
    "bundle": ("bucketchat.export.bundle", "write_bundle"),
}


def export(
    cache: Cache,
    fmt: str,
    output: Path,
    options: ExportOptions,
    progress: Progress | None = None,
) -> ExportResult:
    """Write ``options.rooms`` of ``cache`` to ``output`` in ``fmt``."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    module, function = WRITERS[fmt]
    writer: Callable[[Cache, Path, ExportOptions, Progress | None], ExportResult] = getattr(
        importlib.import_module(module), function
    )
    return writer(cache, output, options, progress)

"""``bucketchat sql``: read-only SQL over the cache's views, as a table, JSON or CSV."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from bucketchat.cli.context import open_session, out, print_json
from bucketchat.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command()(sql)


def sql(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="A read-only SQL query over the cache's views."),
    output_format: str = typer.Option("table", "--format", help="table, json or csv."),
) -> None:
    """Read-only SQL over the cache (writes and file access are refused)."""
    if output_format not in ("table", "json", "csv"):
        raise UsageError(f"--format {output_format!r}: use table, json or csv")
    columns, rows = open_session(ctx, identity=False, bucket=False).sql(query)
    if output_format == "json":
        print_json([dict(zip(columns, row, strict=True)) for row in rows])
    elif output_format == "csv":
        import csv
        import sys

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        table = Table(*[escape(c) for c in columns], box=None)
        for row in rows:
            table.add_row(*[escape("" if v is None else str(v)) for v in row])
        out().print(table)

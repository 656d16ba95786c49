"""``bucketchat cache``: migrate, rebuild and describe the local DuckDB cache."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from bucketchat.cli.context import open_session, out, print_json, state
from bucketchat.cli.sync import JSON, print_report, progress_bar

cache_app = typer.Typer(name="cache", help="The local DuckDB cache.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")


@cache_app.command("migrate")
def cache_migrate(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be applied."),
) -> None:
    """Apply the schema migrations this bucketchat ships."""
    from bucketchat.cache.maintenance import migrate

    applied = migrate(state(ctx).settings.cache_path(), dry_run=dry_run)
    verb = "would apply" if dry_run else "applied"
    if not applied:
        out().print("the cache is up to date")
    for name in applied:
        out().print(f"{verb} {escape(name)}")


@cache_app.command("rebuild")
def cache_rebuild(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Drop the events and ingest the bucket again (the memory of files survives)."""
    from bucketchat.cache.maintenance import clear_events

    session = open_session(ctx, identity=False)
    clear_events(session.cache_path)
    update, stage, bar = progress_bar()
    try:
        report = session.sync(progress=update, stage=stage)
    finally:
        bar.stop()
    print_report(report, as_json)


@cache_app.command("info")
def cache_info(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Where the cache is, its size and its counts."""
    from bucketchat.cache.maintenance import info

    details = info(state(ctx).settings.cache_path())
    if as_json:
        print_json(details)
        return
    table = Table(box=None, show_header=False)
    for key, value in details.items():
        table.add_row(key, escape(str(value)))
    out().print(table)

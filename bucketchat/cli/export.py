"""Exporting commands: export (every format of CLI.md) and verify (a bundle, offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from bucketchat.cli.context import err, print_json
from bucketchat.cli.read import JSON, SINCE, UNTIL, reader, times
from bucketchat.errors import BucketchatError, UsageError
from bucketchat.present import one_line

OUTPUT = typer.Option(..., "--output", "-o", help="The file (or folder) to write.")
BUNDLE = typer.Argument(..., help="A folder made by `export --format bundle`.")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("verify")(verify)


def export(
    ctx: typer.Context,
    room: str | None = typer.Argument(None, help="The room to export (or --all)."),
    all_rooms: bool = typer.Option(False, "--all", help="Every room in the cache."),
    fmt: str = typer.Option(
        ..., "--format", "-f", help="jsonl, parquet, csv, markdown, html or bundle."
    ),
    output: Path = OUTPUT,
    include_redacted: bool = typer.Option(
        False, "--include-redacted", help="Keep redacted events' original lines and text."
    ),
    since: str | None = SINCE,
    until: str | None = UNTIL,
    as_json: bool = JSON,
) -> None:
    """Export ROOM (or --all) as jsonl, parquet, csv, markdown, html or a bundle."""
    from bucketchat.export import FORMATS, ExportOptions, resolve_rooms
    from bucketchat.export import export as run_export

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    since_ms, until_ms = times(since, until)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn(f"exporting {fmt}"), BarColumn(), MofNCompleteColumn(),
        console=err(), transient=True,
    )
    task: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not task:
            if total < 5000 and fmt != "parquet":
                return
            bar.start()
            task.append(bar.add_task("export", total=total))
        bar.update(task[0], completed=done, total=total)

    with reader(ctx).open_fresh() as cache:
        options = ExportOptions(
            rooms=resolve_rooms(cache, room, all_rooms),
            include_redacted=include_redacted,
            since_ms=since_ms,
            until_ms=until_ms,
            all_rooms=all_rooms,
        )
        try:
            result = run_export(cache, fmt, output, options, progress)
        finally:
            bar.stop()
    summary = {
        "format": result.format,
        "output": str(result.output),
        "rooms": result.rooms,
        "events": result.events,
        "files": result.files,
    }
    if as_json:
        print_json(summary)
        return
    err().print(
        f"exported {result.events} item(s) of {len(result.rooms)} room(s) as {fmt} to "
        f"{one_line(str(result.output))}",
        markup=False,
    )


def verify(
    ctx: typer.Context,
    bundle: Path = BUNDLE,
    as_json: bool = JSON,
) -> None:
    """Re-check an exported bundle offline: manifest, signatures, keys, chains, digests."""
    from bucketchat.audit.bundle import verify_bundle

    del ctx
    report = verify_bundle(bundle)
    if as_json:
        print_json(report)
    else:
        from bucketchat.cli.render import print_verify

        print_verify(report)
    if not report["ok"]:
        # an error, not typer.Exit: run() drops the return code of standalone_mode=False
        raise BucketchatError(f"the bundle {bundle} failed verification")

"""Cache-side commands: sync (and --watch), rooms, audit, sql, cache migrate/rebuild/info."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from bucketchat.cli.context import err, out, print_json, state
from bucketchat.cli.session import make_client
from bucketchat.errors import UsageError

if TYPE_CHECKING:
    from bucketchat.sync.pull import Progress, Stage, SyncReport

JSON = typer.Option(False, "--json", help="Print one JSON document.")
cache_app = typer.Typer(name="cache", help="The local DuckDB cache.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command()(sync)
    app.command()(rooms)
    app.command()(audit)
    app.command()(sql)
    app.add_typer(cache_app, name="cache")


PROGRESS_SECONDS = 0.1  # at most so often is the bar told how far the sync is


def progress_bar() -> tuple[Progress, Stage, Any]:
    """Sync progress callbacks drawing a Rich bar on stderr once there is much to read:
    files and events as they are read, then the step the sync is at."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgress

    bar = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TextColumn("{task.fields[events]:,} events"),
        TimeRemainingColumn(),
        console=err(),
        transient=True,
        # Rich redraws 10 times a second by default: 4% of the main process's time during a
        # large sync, which the verify workers need more than the bar needs smoothness
        refresh_per_second=2,
    )
    task: list[Any] = []
    last = [0.0]

    def update(done: int, total: int, events: int) -> None:
        if not task:
            if total < 20:
                return
            bar.start()
            task.append(bar.add_task("syncing", total=total, events=0))
        # sync reports every file; Rich's update takes ~50 µs, which for 20,000 one-event
        # files was ~0.7 s of the main process
        now = time.monotonic()
        if done < total and now - last[0] < PROGRESS_SECONDS:
            return
        last[0] = now
        bar.update(task[0], completed=done, events=events)

    def stage(name: str) -> None:
        if task:  # only a sync big enough for the bar: the rest is quick as well
            bar.update(task[0], description=name)

    return update, stage, bar


def _print_report(report: SyncReport, as_json: bool, stream: bool = False) -> None:
    if as_json and stream:  # --watch --json: one compact document per line (JSON Lines)
        import json

        print(json.dumps(report.as_json()), flush=True)
        return
    if as_json:
        print_json(report.as_json())
        return
    line = (
        f"{report.files_ingested} new file(s) of {report.files_scanned}: "
        f"{report.events_ingested} event(s) ingested, {report.events_rejected} rejected, "
        f"{report.duplicates} duplicate(s) in {report.seconds:.2f}s"
    )
    if report.findings:
        line += "; new findings: " + ", ".join(f"{k} {v}" for k, v in report.findings.items())
    err().print(line)
    for problem in report.errors:
        err().print(f"[yellow]warning:[/] {escape(problem)}")


def sync(
    ctx: typer.Context,
    room: str | None = typer.Option(None, "--room", help="Only this room.", show_default=False),
    watch: bool = typer.Option(False, "--watch", help="Keep following new files (Ctrl-C stops)."),
    interval: float = typer.Option(
        10.0, "--interval", help="Seconds between polls of a cloud bucket with --watch."
    ),
    as_json: bool = JSON,
) -> None:
    """Ingest what is new in the bucket into the cache, verifying everything."""
    client = make_client(ctx, identity=False)
    if room:
        from bucketchat.protocol.naming import check_room_id

        check_room_id(room)
    if watch:
        from bucketchat.sync.watch import follow

        err().print("following the bucket; Ctrl-C stops")
        try:
            follow(
                client,
                room=room,
                interval=interval,
                on_report=lambda report: _print_report(report, as_json, stream=True),
            )
        except KeyboardInterrupt:
            err().print("stopped")
        return
    update, stage, bar = progress_bar()
    try:
        report = client.sync(room=room, progress=update, stage=stage)
    finally:
        bar.stop()
    _print_report(report, as_json)


ROOMS = """
SELECT r.room_id, m.name, count(e.event_hash) AS events, count(DISTINCT e.sender_id) AS senders,
       max(e.timestamp_ms) AS last_timestamp_ms
FROM (SELECT room_id FROM event_rows UNION SELECT room_id FROM room_meta) r
LEFT JOIN room_meta m ON m.room_id = r.room_id
LEFT JOIN events e ON e.room_id = r.room_id AND e.trust <> 'invalid'
GROUP BY r.room_id, m.name ORDER BY r.room_id
"""


def rooms(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Rooms in the bucket and the cache, with counts and last activity."""
    from bucketchat.cache import open_cache

    settings = state(ctx).settings
    if settings.bucket:
        make_client(ctx, identity=False).sync()
    with open_cache(settings.cache_path(), read_only=True) as cache:
        rows = cache.con.execute(ROOMS).fetchall()
    items = [
        {"room_id": r[0], "name": r[1], "events": r[2], "senders": r[3], "last_timestamp_ms": r[4]}
        for r in rows
    ]
    if as_json:
        print_json(items)
        return
    from bucketchat.timeutil import format_ms

    table = Table("room", "name", "events", "senders", "last activity", box=None)
    for item in items:
        last = item["last_timestamp_ms"]
        table.add_row(
            escape(item["room_id"]),
            escape(item["name"] or ""),
            str(item["events"]),
            str(item["senders"]),
            format_ms(last) if last is not None else "—",
        )
    out().print(table)


SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def audit(
    ctx: typer.Context,
    room: str | None = typer.Option(None, "--room", help="Only this room.", show_default=False),
    output_format: str = typer.Option("table", "--format", help="table or json."),
    fail_on: str = typer.Option("error", "--fail-on", help="error, warning or never."),
    check_lock: bool = typer.Option(
        False, "--check-lock", help="Also ask the bucket which objects are really write-once."
    ),
) -> None:
    """The verification report: findings, chains, keys and room digests."""
    from bucketchat.audit import FAIL_ON, audit_report, fails
    from bucketchat.cache import open_cache

    if output_format not in ("table", "json"):
        raise UsageError(f"--format {output_format!r}: use table or json")
    if fail_on not in FAIL_ON:
        raise UsageError(f"--fail-on {fail_on!r}: use error, warning or never")
    settings = state(ctx).settings
    with open_cache(settings.cache_path(), read_only=True) as cache:
        report = audit_report(cache, room)
    if check_lock:
        from bucketchat.audit import add_lock_findings
        from bucketchat.storage import open_bucket

        add_lock_findings(
            report, open_bucket(settings.require_bucket(), settings), settings.cache_path(), room
        )
    if output_format == "json":
        print_json(report)
    else:
        _render_audit(report)
    if fails(report, fail_on):
        raise typer.Exit(1)


def _render_audit(report: dict[str, Any]) -> None:
    console = out()
    summary = report["summary"]
    console.print(
        f"[bold]{summary['events']}[/] events from [bold]{summary['senders']}[/] senders: "
        f"[bold red]{summary['error']}[/] errors, [yellow]{summary['warning']}[/] warnings, "
        f"[cyan]{summary['info']}[/] info"
    )
    if report["findings"]:
        table = Table("severity", "kind", "room", "sender", "where", "detail", box=None)
        for finding in report["findings"]:
            where = finding["event_id"] or finding["file"] or ""
            if finding["file"] and finding["line"] is not None:
                where = f"{finding['file']}:{finding['line']}"
            kind = finding["kind"] + (f" ({finding['reason']})" if finding["reason"] else "")
            style = SEVERITY_STYLE[finding["severity"]]
            table.add_row(
                f"[{style}]{finding['severity']}[/]",
                escape(kind),
                escape(finding["room_id"] or ""),
                escape(finding["sender_id"] or ""),
                escape(where),
                escape(finding["detail"] or ""),
            )
        console.print(table)
    senders = Table("room", "sender", "key", "events", "trust", "chain", box=None)
    for sender in report["senders"]:
        key = sender["public_key"] or "—"
        chain = ", ".join(sender["chain"]) or "sound"
        senders.add_row(
            escape(sender["room_id"]),
            escape(sender["sender_id"]),
            escape(key[:12]),
            str(sender["events"]),
            sender["trust"],
            chain,
        )
    console.print(senders)
    rooms_table = Table("room", "events", "digest", box=None)
    rooms_table.columns[2].overflow = "fold"
    for item in report["rooms"]:
        rooms_table.add_row(escape(item["room_id"]), str(item["events"]), item["digest"])
    console.print(rooms_table)


def sql(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="A read-only SQL query over the cache's views."),
    output_format: str = typer.Option("table", "--format", help="table, json or csv."),
) -> None:
    """Read-only SQL over the cache (writes and file access are refused)."""
    from bucketchat.cache.readonly import run_read_only
    from bucketchat.query_state import ensure_fresh

    if output_format not in ("table", "json", "csv"):
        raise UsageError(f"--format {output_format!r}: use table, json or csv")
    path = state(ctx).settings.cache_path()
    ensure_fresh(path)  # the timeline views read rows a crashed sync may have left behind
    columns, rows = run_read_only(path, query)
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

    client = make_client(ctx, identity=False)
    clear_events(client.cache_path)
    update, stage, bar = progress_bar()
    try:
        report = client.sync(progress=update, stage=stage)
    finally:
        bar.stop()
    _print_report(report, as_json)


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

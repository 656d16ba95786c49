"""``bucketchat sync`` (and ``--watch``): the progress bar and the report of each sync."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from bucketchat.cli.context import err, open_session, print_json

if TYPE_CHECKING:
    from bucketchat.sync.report import Progress, Stage, SyncReport

JSON = typer.Option(False, "--json", help="Print one JSON document.")


def register(app: typer.Typer) -> None:
    app.command()(sync)


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
    last = [-float("inf")]  # the first update always shows, however soon after boot

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


def print_report(report: SyncReport, as_json: bool, stream: bool = False) -> None:
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
    session = open_session(ctx, identity=False)
    if room:
        from bucketchat.protocol.naming import check_room_id

        check_room_id(room)
    if watch:
        err().print("following the bucket; Ctrl-C stops")
        try:
            session.follow(
                room=room,
                interval=interval,
                on_report=lambda report: print_report(report, as_json, stream=True),
            )
        except KeyboardInterrupt:
            err().print("stopped")
        return
    update, stage, bar = progress_bar()
    try:
        report = session.sync(room=room, progress=update, stage=stage)
    finally:
        bar.stop()
    print_report(report, as_json)

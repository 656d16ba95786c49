"""``bucketchat demo``: make a demo bucket, sync it, show a timeline and the audit."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
from rich.markup import escape
from rich.panel import Panel

from bucketchat.cli.context import out


def register(app: typer.Typer) -> None:
    app.command()(demo)


DIR_OPTION = typer.Option(
    Path("bucketchat-demo"), "--dir", help="Where to put the demo bucket and its cache."
)
EXAMPLE_QUERY = "select sender_id, count(*) as events from events group by all"


def demo(
    directory: Path = DIR_OPTION,
    force: bool = typer.Option(False, "--force", help="Replace an earlier demo in --dir."),
) -> None:
    """Make a local demo bucket (3 rooms, 3 senders, one tampered file) and explore it."""
    from bucketchat.demo import PEOPLE, build_demo
    from bucketchat.session import Session

    result = build_demo(directory, force=force)
    console = out()
    console.print(
        Panel.fit(
            f"[bold]bucket[/]  {escape(str(result.bucket))}\n"
            f"[bold]cache[/]   {escape(str(result.cache))}\n"
            f"[bold]rooms[/]   {', '.join(result.rooms)}\n"
            f"[bold]people[/]  {', '.join(PEOPLE)} (throwaway keys in "
            f"{escape(str(result.directory / 'identities.json'))})\n"
            f"[bold]events[/]  {result.events_written} written through the outbox, "
            f"{result.report.events_ingested} synced into the cache\n"
            f"[bold]tampered[/] {escape(result.tampered_file)} (one line changed after signing)",
            title="bucketchat demo",
        )
    )
    from bucketchat.cli.render import print_timeline

    session = Session(None, result.cache)
    items = session.timeline("general", limit=20)
    report = session.findings()
    console.print("\n[bold]#general[/]")
    print_timeline(items)
    summary = report["summary"]
    console.print(
        f"\n[bold]audit[/]: {summary['events']} events from {summary['senders']} senders — "
        f"[bold red]{summary['error']}[/] error(s), [yellow]{summary['warning']}[/] warning(s)"
    )
    for finding in report["findings"]:
        console.print(
            f"  [red]{finding['kind']}[/] {escape(finding['sender_id'] or '')} "
            f"{escape(finding['file'] or '')}:{finding['line']} — {escape(finding['detail'] or '')}"
        )
    env = f"--bucket {result.bucket} --db {result.cache}"
    console.print("\n[bold]Try next[/]:")
    for command in (
        f"bucketchat {env} log general",
        f"bucketchat {env} search cafe",
        f"bucketchat {env} export general --format html --output general.html",
        f"bucketchat {env} audit",
        f"bucketchat {env} sql " + shlex.quote(EXAMPLE_QUERY),
        f"bucketchat {env} rooms",
    ):
        console.print(f"  {escape(command)}", soft_wrap=True)

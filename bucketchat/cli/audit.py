"""``bucketchat audit``: the verification report, as a table or JSON, and its exit status."""

from __future__ import annotations

import typer

from bucketchat.cli.context import open_session, print_json
from bucketchat.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command()(audit)


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
    from bucketchat.audit.report import FAIL_ON, fails

    if output_format not in ("table", "json"):
        raise UsageError(f"--format {output_format!r}: use table or json")
    if fail_on not in FAIL_ON:
        raise UsageError(f"--fail-on {fail_on!r}: use error, warning or never")
    session = open_session(ctx, identity=False, bucket=check_lock)
    report = session.findings(room)
    if check_lock:
        session.check_locks(report, room)
    if output_format == "json":
        print_json(report)
    else:
        from bucketchat.cli.render import print_audit

        print_audit(report)
    if fails(report, fail_on):
        raise typer.Exit(1)

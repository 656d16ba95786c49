"""The ``bucketchat`` entry point: global settings, sub-apps, and the one error boundary.

Setting flags (``--bucket``, ``--db``, ``--user``, ``--debug``) work before and after the
command name: ``run`` moves them in front of the command before typer parses, because
click only accepts group options before the subcommand. Heavy modules (duckdb, pyarrow,
nacl) are imported inside commands so that start-up stays fast.
"""

from __future__ import annotations

import sys
import traceback
from importlib.metadata import PackageNotFoundError, version

import typer

from bucketchat.cli.context import AppState, err
from bucketchat.errors import BucketchatError

SETTING_FLAGS_WITH_VALUE = ("--bucket", "--db", "--user")
SETTING_SWITCHES = ("--debug",)

app = typer.Typer(
    name="bucketchat",
    help="Serverless chat in a bucket: sync, search, audit and chat over signed JSONL logs.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version() -> str:
    try:
        return version("bucketchat")
    except PackageNotFoundError:
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        print(f"bucketchat {_version()}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    bucket: str | None = typer.Option(
        None, "--bucket", help="Bucket URL: a folder, file://, s3://, gs:// or az://.",
        show_default=False,
    ),
    db: str | None = typer.Option(None, "--db", help="The DuckDB cache file.", show_default=False),
    user: str | None = typer.Option(None, "--user", help="Your sender id.", show_default=False),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    show_version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version."
    ),
) -> None:
    ctx.obj = AppState(bucket=bucket, db=db, user=user, debug=debug)


_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    from bucketchat.cli import commands

    commands.register(app)
    _registered = True


def hoist_setting_flags(argv: list[str]) -> list[str]:
    """Move setting flags found after the command name to the front (never after ``--``)."""
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            rest.extend(argv[index:])
            break
        name = arg.split("=", 1)[0]
        if name in SETTING_FLAGS_WITH_VALUE:
            if "=" in arg:
                front.append(arg)
            elif index + 1 < len(argv):
                front.extend(argv[index : index + 2])
                index += 1
            else:
                rest.append(arg)
        elif arg in SETTING_SWITCHES:
            front.append(arg)
        else:
            rest.append(arg)
        index += 1
    return front + rest


def run(argv: list[str] | None = None) -> None:
    args = hoist_setting_flags(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in args
    _register()
    try:
        # Without standalone mode click hands back a command's exit code instead of exiting.
        code = app(args=args, prog_name="bucketchat", standalone_mode=False)
    except BucketchatError as exc:
        if debug:
            traceback.print_exc()
        err().print(f"[bold red]error:[/] {_one_line(str(exc))}", markup=True, highlight=False)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err().print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err().print("interrupted")
        sys.exit(130)
    except Exception as exc:
        # Usage errors come from the click that typer bundles, not necessarily the
        # standalone package: recognise them by what they can do.
        show, exit_code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            sys.exit(exit_code)
        if debug:
            traceback.print_exc()
        err().print(
            f"[bold red]error:[/] unexpected {type(exc).__name__}: {_one_line(str(exc))} "
            "(run with --debug for the traceback)",
            markup=True,
            highlight=False,
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(text: str) -> str:
    from rich.markup import escape

    return escape(" ".join(text.split()))

"""What every command shares: resolved settings, the session, the two consoles, JSON output.

People-facing output goes through Rich on stdout; ``--json`` prints exactly one JSON
document on stdout; progress, notices and warnings go to stderr.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from bucketchat.config import Settings

if TYPE_CHECKING:
    from bucketchat.session import Session


@dataclass
class AppState:
    bucket: str | None = None
    db: str | None = None
    user: str | None = None
    debug: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.resolve(bucket=self.bucket, db=self.db, user=self.user)
        return self._settings


def state(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj


def open_session(ctx: typer.Context, *, identity: bool = True, bucket: bool = True) -> Session:
    """The session of the command's settings: with ``identity`` the user and device key
    (writing), with ``bucket`` the bucket (syncing); reading needs neither."""
    from bucketchat.session import Session

    return Session.from_settings(state(ctx).settings, identity=identity, bucket=bucket)


def out() -> Console:
    return Console(highlight=False, soft_wrap=False)


def err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2, default=str))
    sys.stdout.write("\n")
    sys.stdout.flush()

"""Which command lives in which module; each module adds its commands to the app."""

from __future__ import annotations

import importlib

import typer

AREAS = (
    "bucketchat.cli.keys",
    "bucketchat.cli.write",
    "bucketchat.cli.sync",
    "bucketchat.cli.rooms",
    "bucketchat.cli.audit",
    "bucketchat.cli.sql",
    "bucketchat.cli.cache",
    "bucketchat.cli.read",
    "bucketchat.cli.export",
    "bucketchat.cli.demo",
)


def register(app: typer.Typer) -> None:
    for name in AREAS:
        importlib.import_module(name).register(app)

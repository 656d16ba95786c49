"""The ``keys`` commands: make, show, list, pin, export and import device keys.

The key material stays in ``bucketchat.keystore``; these commands only ever show public
keys and fingerprints. The one way a private key leaves the keystore is
``keys export --private``, as passphrase-encrypted PKCS#8, and never onto a terminal.
The keystore is imported inside each command so ``bucketchat --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from bucketchat.cli.context import err, out, print_json, state
from bucketchat.errors import MissingSetting, UsageError

if TYPE_CHECKING:
    from bucketchat.keystore import Keystore
    from bucketchat.protocol.signing import SigningKey

EXPORT_PASSPHRASE_ENV = "BUCKETCHAT_EXPORT_PASSPHRASE"

keys_app = typer.Typer(
    name="keys",
    help="Make and keep this device's signing key; pin other senders' keys.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

USER_OPTION = typer.Option(
    None, "--user", help="The sender id the key signs as.", show_default=False
)
JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document.")
FORCE_OPTION = typer.Option(False, "--force", help="Replace an existing device key.")
OUTPUT_OPTION = typer.Option(
    None, "--output", "-o", help="Write to this file instead of stdout.", show_default=False
)
IMPORT_FILE_ARGUMENT = typer.Argument(..., help="A file from `keys export --private`.")


def register(app: typer.Typer) -> None:
    if any(group.typer_instance is keys_app for group in app.registered_groups):
        return  # run() registers on every call; in-process callers call it repeatedly
    app.add_typer(keys_app, name="keys")


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _key_rows(key: SigningKey) -> list[tuple[str, str]]:
    from bucketchat.keystore import describe_key

    shown = describe_key(key)
    return [("public key", shown["public_key"]), ("fingerprint", shown["fingerprint"])]


def _print_key(title: str, key: SigningKey, store: Keystore) -> None:
    console = out()
    console.print(escape(title), soft_wrap=True)
    for label, value in [*_key_rows(key), ("kept in", store.description)]:
        console.print(f"  {label:<12} {escape(value)}", soft_wrap=True)


@keys_app.command("init")
def init(
    ctx: typer.Context,
    user: str | None = USER_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Make this device's Ed25519 key for a user id and keep it in the keystore."""
    from bucketchat import keystore

    user_id = user or state(ctx).settings.user
    if not user_id:
        raise MissingSetting(
            "keys init needs --user ID: the sender id this device signs as (e.g. you@example.com)"
        )
    store = keystore.open_keystore()
    key = keystore.create_device_key(user_id, store, replace=force)
    keystore.remember_user(user_id)
    _print_key(f"Made a device key for {user_id}", key, store)
    out().print(
        "Next: `bucketchat join ROOM` publishes it; "
        "`bucketchat keys export --private --output FILE` moves it to another device.",
        markup=False,
        soft_wrap=True,
    )


@keys_app.command("show")
def show(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Show your public key and its fingerprint."""
    from bucketchat import keystore

    user_id = keystore.resolve_user(state(ctx).settings.user)
    store = keystore.open_keystore()
    key = keystore.load_device_key(user_id, store)
    if as_json:
        print_json(
            {"user_id": user_id, **keystore.describe_key(key), "keystore": store.description}
        )
        return
    _print_key(user_id, key, store)


@keys_app.command("list")
def list_keys(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List your own keys and the keys you pinned for other senders."""
    from bucketchat import keystore
    from bucketchat.protocol.signing import fingerprint

    store = keystore.open_keystore()
    default = keystore.default_user()
    own: list[dict[str, Any]] = []
    for user_id in store.users():
        key = keystore.load_device_key(user_id, store)
        own.append(
            {"user_id": user_id, **keystore.describe_key(key), "default": user_id == default}
        )
    pinned = [
        {"sender_id": sender, "public_key": key, "fingerprint": fingerprint(key)}
        for sender, keys in keystore.pinned_keys().items()
        for key in keys
    ]
    if as_json:
        print_json({"keystore": store.description, "own": own, "pinned": pinned})
        return
    console = out()
    console.print(f"Own keys, in {store.description}:", markup=False, soft_wrap=True)
    for row in own:
        mark = " (default)" if row["default"] else ""
        _print_listed(row["user_id"] + mark, row["public_key"], row["fingerprint"])
    if not own:
        console.print("  none: run `bucketchat keys init --user ID`", markup=False)
    console.print("Pinned keys:")
    for row in pinned:
        _print_listed(row["sender_id"], row["public_key"], row["fingerprint"])
    if not pinned:
        console.print("  none: pin one with `bucketchat keys trust SENDER PUBKEY`", markup=False)


def _print_listed(who: str, public_key: str, fingerprint: str) -> None:
    # Lines, not a table: a key must never wrap or be cut, so it copies whole from any
    # terminal width.
    console = out()
    console.print(f"  {who}", markup=False, soft_wrap=True)
    console.print(f"    {public_key}  fingerprint {fingerprint[:16]}", soft_wrap=True)


@keys_app.command("trust")
def trust(
    sender: str = typer.Argument(..., help="The sender id, e.g. bob@example.com."),
    public_key: str = typer.Argument(..., metavar="PUBKEY", help="Their base64 public key."),
) -> None:
    """Pin a sender's public key: their events signed with it count as trusted."""
    from bucketchat import keystore
    from bucketchat.protocol.signing import fingerprint

    added = keystore.pin_key(sender, public_key)
    verb = "Pinned" if added else "Already pinned:"
    out().print(
        f"{verb} {public_key} for {sender} (fingerprint {fingerprint(public_key)[:16]})",
        markup=False,
        soft_wrap=True,
    )


def _export_passphrase(confirm: bool) -> bytes:
    from_env = os.environ.get(EXPORT_PASSPHRASE_ENV)
    if from_env:
        return from_env.encode("utf-8")
    if not _stdin_is_terminal():
        raise MissingSetting(
            f"no passphrase for the key file: set {EXPORT_PASSPHRASE_ENV} or run in a terminal"
        )
    text: str = typer.prompt(
        "Passphrase for the key file", hide_input=True, confirmation_prompt=confirm, err=True
    )
    if not text:
        raise UsageError("an empty passphrase cannot protect a private key")
    return text.encode("utf-8")


def _write_new_private_file(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise UsageError(f"{path} exists: choose another file name") from exc
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@keys_app.command("export")
def export(
    ctx: typer.Context,
    private: bool = typer.Option(
        False, "--private", help="Export the private key, encrypted (PKCS#8 PEM)."
    ),
    output: Path | None = OUTPUT_OPTION,
) -> None:
    """Print your public key, or write your private key encrypted to move it elsewhere."""
    from bucketchat import keystore

    if private and output is None and _stdout_is_terminal():
        raise UsageError("refusing to print a private key to a terminal: pass --output FILE")
    user_id = keystore.resolve_user(state(ctx).settings.user)
    key = keystore.load_device_key(user_id, keystore.open_keystore())
    if not private:
        if output is None:
            out().print(key.public_key, markup=False, soft_wrap=True)
        else:
            output.write_text(key.public_key + "\n", encoding="utf-8")
        return
    pem = keystore.export_private_pem(key, _export_passphrase(confirm=True))
    if output is None:
        sys.stdout.buffer.write(pem)
        sys.stdout.flush()
        return
    _write_new_private_file(output, pem)
    err().print(
        f"Wrote the encrypted private key of {user_id} to {output}; on the other device run "
        f"`bucketchat keys import {output} --user {user_id}`.",
        markup=False,
        soft_wrap=True,
    )


@keys_app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = IMPORT_FILE_ARGUMENT,
    user: str | None = USER_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Keep a key exported on another device as this device's key."""
    from bucketchat import keystore

    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror}") from exc
    key = keystore.import_private_pem(data, _export_passphrase(confirm=False))
    user_id = keystore.resolve_user(user or state(ctx).settings.user)
    store = keystore.open_keystore()
    keystore.store_device_key(user_id, key, store, replace=force)
    keystore.remember_user(user_id)
    _print_key(f"Imported the device key of {user_id}", key, store)

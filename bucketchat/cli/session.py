"""From settings to a working session: the bucket, the cache path, the user and the key."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from bucketchat.cli.context import state

if TYPE_CHECKING:
    from bucketchat.client import Client


def make_client(ctx: typer.Context, *, identity: bool = True) -> Client:
    from bucketchat import keystore
    from bucketchat.auth import AttestationVerifier
    from bucketchat.client import Client
    from bucketchat.storage import open_bucket

    settings = state(ctx).settings
    bucket = open_bucket(settings.require_bucket(), settings)
    client = Client(
        bucket,
        settings.cache_path(),
        pinned=keystore.pinned_keys(),
        check_attestation=AttestationVerifier(settings.trusted_issuers()),
    )
    if identity:
        client.user = keystore.resolve_user(settings.user)
        client.key = keystore.load_device_key(client.user)
    return client

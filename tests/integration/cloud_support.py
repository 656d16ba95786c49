"""Helpers for the cloud end-to-end tests (this module holds no tests itself).

A ``Site`` is one backend as a *user* of the CLI meets it: the environment variables (or
config-file tables) that point bucketchat at the server, a way to make an empty bucket and
to put or list raw objects through the cloud's own SDK (never through bucketchat), and the
URL of a bucket by name. A ``User`` is one person on one device: a private
``BUCKETCHAT_HOME`` (keystore, pinned keys, config file) and a cache file of their own,
running the real CLI in subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_sync_support import PROJECT, Ran, error_lines

PREFIX = "chat"
NOWHERE_AWS = "/nonexistent/aws"  # keeps the developer's ~/.aws out of the tests


def servers() -> Any:
    """tests/servers/fixtures.py, loaded by tests/integration/conftest.py."""
    return sys.modules["bucketchat_test_servers"]


def unique_name() -> str:
    return f"bc-{uuid.uuid4().hex[:20]}"


@dataclass
class Site:
    """One backend, as the CLI and the cloud's own SDK reach it."""

    kind: str
    env: dict[str, str]  # what a user exports to point bucketchat at the server
    url: Callable[[str], str]  # the bucket URL for a bucket name
    make: Callable[[str], None]  # create an empty bucket with this name
    put: Callable[[str, str, bytes], None]  # (bucket, key below the prefix, bytes), raw
    keys: Callable[[str], list[str]]  # every key below the prefix, sorted
    config: str = ""  # config.toml text each user gets (tables such as [s3])
    cloud: bool = True
    sdk: Any = None  # the SDK client, for backend-specific checks

    def new_bucket(self) -> str:
        """Make an empty bucket; returns its name (``url(name)`` is what bucketchat gets)."""
        name = unique_name()
        self.make(name)
        return name


# ---------------------------------------------------------------------------- sites


def local_site(root: Path) -> Site:
    def make(name: str) -> None:
        (root / name / PREFIX).mkdir(parents=True)

    def put(name: str, key: str, data: bytes) -> None:
        path = root / name / PREFIX / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def keys(name: str) -> list[str]:
        base = root / name / PREFIX
        return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())

    return Site(
        "local",
        env={},
        url=lambda name: str(root / name / PREFIX),
        make=make,
        put=put,
        keys=keys,
        cloud=False,
    )


def s3_site(
    kind: str, endpoint: str, access: str, secret: str, *, via_config: bool = False
) -> Site:
    """An S3 server. With ``via_config`` the endpoint reaches bucketchat through the config
    file's [s3] table instead of AWS_ENDPOINT_URL."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 3}),
    )
    env = {
        "AWS_ACCESS_KEY_ID": access,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_CONFIG_FILE": f"{NOWHERE_AWS}/config",
        "AWS_SHARED_CREDENTIALS_FILE": f"{NOWHERE_AWS}/credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    config = ""
    if via_config:
        config = f'[s3]\nendpoint = "{endpoint}"\nregion = "us-east-1"\n'
    else:
        env["AWS_ENDPOINT_URL"] = endpoint

    def put(name: str, key: str, data: bytes) -> None:
        client.put_object(Bucket=name, Key=f"{PREFIX}/{key}", Body=data)

    def keys(name: str) -> list[str]:
        found = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=name, Prefix=f"{PREFIX}/"
        ):
            found += [obj["Key"][len(PREFIX) + 1 :] for obj in page.get("Contents", ())]
        return sorted(found)

    return Site(
        kind,
        env=env,
        url=lambda name: f"s3://{name}/{PREFIX}",
        make=lambda name: client.create_bucket(Bucket=name),
        put=put,
        keys=keys,
        config=config,
        sdk=client,
    )


def gcs_site(endpoint: str) -> Site:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )

    def put(name: str, key: str, data: bytes) -> None:
        client.bucket(name).blob(f"{PREFIX}/{key}").upload_from_string(data)

    def keys(name: str) -> list[str]:
        blobs = client.list_blobs(name, prefix=f"{PREFIX}/")
        return sorted(blob.name[len(PREFIX) + 1 :] for blob in blobs)

    return Site(
        "gcs",
        env={"STORAGE_EMULATOR_HOST": endpoint, "NO_GCE_CHECK": "true"},
        url=lambda name: f"gs://{name}/{PREFIX}",
        make=lambda name: client.create_bucket(name),
        put=put,
        keys=keys,
        sdk=client,
    )


def azure_site(azurite: Any) -> Site:
    from azure.storage.blob import BlobServiceClient

    connection = azurite.connection_string()
    service = BlobServiceClient.from_connection_string(connection)

    def put(name: str, key: str, data: bytes) -> None:
        service.get_container_client(name).upload_blob(f"{PREFIX}/{key}", data)

    def keys(name: str) -> list[str]:
        blobs = service.get_container_client(name).list_blobs(name_starts_with=f"{PREFIX}/")
        return sorted(blob.name[len(PREFIX) + 1 :] for blob in blobs)

    return Site(
        "azurite",
        env={"AZURE_STORAGE_CONNECTION_STRING": connection},
        url=lambda name: f"az://{name}/{PREFIX}",
        make=lambda name: service.create_container(name),
        put=put,
        keys=keys,
        sdk=service,
    )


CLOUD_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
)


def site_for(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Site:
    """The site of ``kind``, starting its server (session fixture) on first use."""
    mp: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    for name in CLOUD_ENV:  # only what a Site sets reaches the CLI
        mp.delenv(name, raising=False)
    if kind == "local":
        return local_site(tmp_path / "buckets")
    if kind == "moto":
        return s3_site("moto", request.getfixturevalue("moto_endpoint"), "testing", "testing")
    if kind == "ceph":
        gw = request.getfixturevalue("ceph_endpoint")
        return s3_site("ceph", gw.endpoint, gw.access_key, gw.secret_key, via_config=True)
    if kind == "gcs":
        return gcs_site(request.getfixturevalue("gcs_endpoint"))
    if kind == "azurite":
        return azure_site(request.getfixturevalue("azurite_blob"))
    raise AssertionError(kind)


# ---------------------------------------------------------------------------- users


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> Ran:
    done = subprocess.run(
        [sys.executable, "-m", "bucketchat", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        cwd=PROJECT,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


@dataclass
class User:
    """One person on one device: their own BUCKETCHAT_HOME and cache file."""

    user_id: str
    home: Path
    db: Path
    bucket: str
    site: Site
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls, user_id: str, folder: Path, bucket: str, site: Site) -> User:
        home = folder / user_id.split("@")[0]
        (home / "config").mkdir(parents=True)
        if site.config:
            (home / "config" / "config.toml").write_text(site.config, encoding="utf-8")
        return cls(user_id, home, home / "cache.duckdb", bucket, site)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.site.env,
            "BUCKETCHAT_HOME": str(self.home),
            **self.extra_env,
        }

    def run(self, *args: str, timeout: float = 120) -> Ran:
        """``bucketchat --bucket URL --db CACHE ARGS`` as this user."""
        return run_cli(["--bucket", self.bucket, "--db", str(self.db), *args], self.env(), timeout)

    def ok(self, *args: str) -> str:
        ran = self.run(*args)
        assert ran.code == 0, f"{args}: exit {ran.code}\n{ran.err}"
        return ran.out

    def event(self, *args: str) -> str:
        """A writing command; returns the event id it prints."""
        out = self.ok(*args).strip().splitlines()
        assert len(out) == 1, out
        return out[0]

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args))

    def keys_init(self) -> str:
        """Make the device key; returns the public key."""
        self.ok("keys", "init", "--user", self.user_id)
        return str(self.json("keys", "show", "--json")["public_key"])

    def sql(self, query: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.json("sql", "--format", "json", query)
        return rows

    def audit(self, *extra: str) -> dict[str, Any]:
        ran = self.run("audit", "--format", "json", "--fail-on", "never", *extra)
        assert ran.code == 0, ran.err
        report: dict[str, Any] = json.loads(ran.out)
        return report


def timed(call: Callable[[], Ran]) -> tuple[Ran, float]:
    started = time.monotonic()
    ran = call()
    return ran, time.monotonic() - started


def one_error_line(ran: Ran) -> str:
    """The single line a failing command leaves on stderr (the keystore notice aside)."""
    lines = error_lines(ran.err)
    assert len(lines) == 1, ran.err
    assert "Traceback" not in ran.err
    return lines[0]

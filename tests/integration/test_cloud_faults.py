"""Faults on real servers, through the real CLI (issue 5, "Faults").

- A sync killed with SIGKILL while it downloads thousands of objects from moto loses
  nothing: the next sync resumes and ends equal to a clean sync into a fresh cache.
- A missing bucket, bad credentials (azurite; Ceph, slow) and an unreachable endpoint (a
  closed 127.0.0.1 port, for each cloud) make ``sync`` and ``send`` exit 3 with one line on
  stderr, within 30 s.
- An upload that fails (a missing S3 bucket; an Azure SAS that may read but not write)
  keeps the events in the outbox, and the next ``send`` uploads them with its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cloud_support import Site, User, one_error_line, site_for, timed, unique_name
from test_sync_support import (
    ALICE,
    BASE_MS,
    BOB,
    MALLORY,
    PROJECT,
    Author,
    events_set,
    findings_list,
    line_of,
    log_key,
    query,
    trust_map,
)

ROOM = "yard"
LIMIT = 30.0  # seconds: every bucket fault must end a command within this


def make_site(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Site:
    return site_for(kind, request, tmp_path)


def pending(db: Path) -> list[tuple[str, str | None]]:
    return query(db, "SELECT event_id, last_error FROM outbox WHERE uploaded_at IS NULL")


def bodies(user: User) -> list[str]:
    rows = user.sql("SELECT body FROM timeline WHERE type = 'm.room.message' ORDER BY timestamp_ms")
    return [row["body"] for row in rows]


# ---------------------------------------------------------------- an interrupted sync

OBJECTS = 1200  # three batches of 400 files (sync/pull.py BATCH_FILES)


def one_event_objects(site: Site, bucket: str) -> None:
    """OBJECTS objects of one signed, chained event each (three senders who publish their
    keys first), uploaded in parallel with the SDK."""
    authors = [Author.of(ALICE), Author.of(BOB), Author.of(MALLORY)]
    objects: list[tuple[str, bytes]] = []
    for index in range(OBJECTS):
        author = authors[index % 3]
        at = BASE_MS + 1_000 * index
        if index < 3:
            event = author.join(ROOM, at)
        else:
            event = author.message(ROOM, at, f"message {index} from {author.sender}")
        key = log_key(ROOM, at, at, author.client_id)
        objects.append((key, (line_of(event) + "\n").encode()))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda item: site.put(bucket, *item), objects))


def snapshot(db: Path) -> tuple[Any, ...]:
    files = query(db, "SELECT path, size, version, sha256, state FROM files ORDER BY path")
    return events_set(db), findings_list(db), trust_map(db), files


def killed_sync(user: User, delay: float) -> bool:
    """Run ``sync`` as ``user`` and SIGKILL its process group after ``delay`` seconds; True
    if it was still running then."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bucketchat", "--bucket", user.bucket, "--db", str(user.db), "sync"],
        env=user.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=PROJECT,
        start_new_session=True,  # its own group: any verify workers die with it
    )
    try:
        process.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        return True
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.mark.slow
def test_a_sync_killed_while_downloading_resumes_and_loses_nothing(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    site = make_site("moto", request, tmp_path)
    bucket = site.new_bucket()
    one_event_objects(site, bucket)

    clean = User.make("clean@example.com", tmp_path, site.url(bucket), site)
    ran, seconds = timed(lambda: clean.run("sync", "--json"))
    assert ran.code == 0, ran.err
    assert json.loads(ran.out)["files_ingested"] == OBJECTS
    expected = snapshot(clean.db)
    assert len(expected[0]) == OBJECTS

    # Kill a sync into another cache part-way: some batches stored, the rest not yet read.
    # The delay is searched for, since how long the start and each batch take varies.
    low, high = 0.0, seconds
    for attempt in range(8):
        victim = User.make(f"victim{attempt}@example.com", tmp_path, site.url(bucket), site)
        delay = (low + high) / 2
        if not killed_sync(victim, delay):
            high = delay
            continue
        stored = query(victim.db, "SELECT count(*) FROM files")[0][0] if victim.db.exists() else 0
        if stored == 0:
            low = delay
        elif stored >= OBJECTS:
            high = delay
        else:
            break
    else:
        pytest.fail(f"no kill landed mid-sync in 8 tries (clean sync: {seconds:.1f} s)")
    events_before = query(victim.db, "SELECT count(*) FROM events")[0][0]
    assert 0 < events_before < OBJECTS

    resumed = victim.json("sync", "--json")
    assert resumed["files_ingested"] == OBJECTS - stored  # nothing read twice
    assert resumed["events_rejected"] == 0
    assert snapshot(victim.db) == expected
    assert query(victim.db, "SELECT count(*) FROM duplicate_lines")[0][0] == 0
    digests = [u.audit()["rooms"] for u in (clean, victim)]
    assert digests[0] == digests[1]
    again = victim.json("sync", "--json")
    assert (again["files_ingested"], again["events_ingested"]) == (0, 0)


# ---------------------------------------------------------------- one line, exit 3, < 30 s


def sync_and_send_fail(user: User) -> list[str]:
    """Run sync and send as ``user``; both must exit 3 with one line within LIMIT s.
    Returns the two lines."""
    lines = []
    for args in (("sync",), ("send", ROOM, "anyone there?")):
        ran, seconds = timed(lambda args=args: user.run(*args, timeout=LIMIT + 30))
        assert ran.code == 3, (args, ran.code, ran.err)
        assert seconds < LIMIT, (args, seconds)
        assert ran.out == ""
        lines.append(one_error_line(ran))
    return lines


@pytest.mark.parametrize("kind", ["moto", "gcs", "azurite"])
def test_a_missing_bucket_exits_3_and_the_send_waits_in_the_outbox(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    site = make_site(kind, request, tmp_path)
    name = unique_name()  # never made
    alice = User.make(ALICE, tmp_path, site.url(name), site)
    alice.keys_init()
    sync_line, send_line = sync_and_send_fail(alice)
    assert "does not exist" in sync_line, sync_line
    assert name in sync_line
    assert "outbox" in send_line and "does not exist" in send_line, send_line
    assert len(pending(alice.db)) == 2  # the join publishing alice's key, and the message

    site.make(name)  # the bucket appears: the next send uploads what waited, then its own
    alice.event("send", ROOM, "second try")
    assert pending(alice.db) == []
    assert bodies(alice) == ["anyone there?", "second try"]
    bob = User.make(BOB, tmp_path, site.url(name), site)
    bob.ok("sync")
    assert bodies(bob) == ["anyone there?", "second try"]


BAD_CREDENTIALS = [
    pytest.param("azurite", id="azurite"),
    pytest.param("ceph", id="ceph", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("kind", BAD_CREDENTIALS)
def test_bad_credentials_exit_3_with_one_line(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    site = make_site(kind, request, tmp_path)
    name = site.new_bucket()
    alice = User.make(ALICE, tmp_path, site.url(name), site)
    alice.keys_init()
    if kind == "azurite":
        wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
        azurite = request.getfixturevalue("azurite_blob")
        alice.extra_env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string(wrong)
    else:
        alice.extra_env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    for line in sync_and_send_fail(alice):
        assert "access denied" in line, line
    assert not site.keys(name)


def closed_endpoint_env(kind: str) -> dict[str, str]:
    servers = sys.modules["bucketchat_test_servers"]
    closed = f"http://127.0.0.1:{servers.closed_port()}"
    if kind == "s3":
        return {
            "AWS_ENDPOINT_URL": closed,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": "/nonexistent/aws/config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws/credentials",
        }
    if kind == "gs":
        return {"STORAGE_EMULATOR_HOST": closed}
    account = servers.AZURITE_ACCOUNT
    return {
        "AZURE_STORAGE_CONNECTION_STRING": (
            f"DefaultEndpointsProtocol=http;AccountName={account};"
            f"AccountKey={servers.AZURITE_KEY};BlobEndpoint={closed}/{account};"
        )
    }


@pytest.mark.parametrize("kind", ["s3", "gs", "az"])
def test_an_unreachable_endpoint_exits_3_with_one_line_within_30_s(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    site = make_site("local", request, tmp_path)  # only for its (empty) settings
    site.env = closed_endpoint_env(kind)
    alice = User.make(ALICE, tmp_path, f"{kind}://chat-bucket/{ROOM}", site)
    alice.keys_init()
    for line in sync_and_send_fail(alice):
        assert "cannot reach" in line, line
        assert "127.0.0.1" in line, line


# ---------------------------------------------------------------- a failed upload


def test_an_upload_refused_by_the_server_waits_in_the_outbox_for_the_next_send(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Azure: a SAS that may read and list but not create. The first send composes, fails
    to upload and exits 3; with a key that may write, the next send uploads both."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    site = make_site("azurite", request, tmp_path)
    azurite = request.getfixturevalue("azurite_blob")
    name = site.new_bucket()
    alice = User.make(ALICE, tmp_path, site.url(name), site)
    alice.keys_init()
    sas = generate_container_sas(
        azurite.account,
        name,
        account_key=azurite.key,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    read_only = f"BlobEndpoint={azurite.endpoint};SharedAccessSignature={sas}"
    alice.extra_env["AZURE_STORAGE_CONNECTION_STRING"] = read_only

    ran, seconds = timed(lambda: alice.run("send", ROOM, "first, refused", timeout=LIMIT + 30))
    assert ran.code == 3, ran.err
    assert seconds < LIMIT
    line = one_error_line(ran)
    assert "outbox" in line and "access denied" in line, line
    waiting = pending(alice.db)
    assert len(waiting) == 2 and all(error for _, error in waiting), waiting
    assert site.keys(name) == []

    del alice.extra_env["AZURE_STORAGE_CONNECTION_STRING"]  # back to the account key
    alice.event("send", ROOM, "second, fine")
    assert pending(alice.db) == []
    assert bodies(alice) == ["first, refused", "second, fine"]
    assert len(site.keys(name)) == 2  # the two waiting events in one file, then the new one
    bob = User.make(BOB, tmp_path, site.url(name), site)
    bob.ok("sync")
    assert bodies(bob) == ["first, refused", "second, fine"]
    assert bob.audit()["summary"]["error"] == 0

"""``audit --check-lock`` against moto's S3 server, through the real CLI (issue 5,
"Immutability audit").

A bucket made by ``room create --lock-days 1`` (a bucket name that does not exist yet:
bucketchat creates it with Object Lock and a default GOVERNANCE retention) keeps every
object write-once, which the S3 API confirms object by object, so the audit has no
``unlocked_object``. On an ordinary bucket every object the cache knows is an
``unlocked_object`` warning: exit 0 with ``--fail-on error``, 1 with ``--fail-on warning``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cloud_support import PREFIX, Site, User, one_error_line, site_for, unique_name

ALICE, BOB = "alice@example.com", "bob@example.com"
ROOM = "vault"


@pytest.fixture
def moto(request: pytest.FixtureRequest, tmp_path: Path) -> Site:
    return site_for("moto", request, tmp_path)


def chat(site: Site, name: str, tmp_path: Path, *create_flags: str) -> tuple[User, User]:
    """alice creates the room (with ``create_flags``), both write, both sync."""
    alice = User.make(ALICE, tmp_path, site.url(name), site)
    bob = User.make(BOB, tmp_path, site.url(name), site)
    alice.keys_init()
    bob.keys_init()
    alice.ok("room", "create", ROOM, *create_flags)
    first = alice.event("send", ROOM, "kept for a day at least")
    bob.event("send", ROOM, "so is this", "--reply-to", first)
    alice.event("react", first, "🔒")
    for user in (alice, bob):
        user.ok("sync")
    return alice, bob


def lock_audit(user: User, fail_on: str = "never") -> tuple[int, dict[str, Any]]:
    ran = user.run("audit", "--check-lock", "--format", "json", "--fail-on", fail_on)
    assert ran.code in (0, 1), ran.err
    report: dict[str, Any] = json.loads(ran.out)
    return ran.code, report


def unlocked(report: dict[str, Any]) -> list[str]:
    return sorted(f["file"] for f in report["findings"] if f["kind"] == "unlocked_object")


def test_a_bucket_made_with_object_lock_has_no_unlocked_object(moto: Site, tmp_path: Path):
    name = unique_name()  # does not exist: room create --lock-days makes it, locked
    alice, bob = chat(moto, name, tmp_path, "--lock-days", "1")
    s3 = moto.sdk

    config = s3.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"]
    assert config["ObjectLockEnabled"] == "Enabled"
    retention = config["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"]) == ("GOVERNANCE", 1)
    keys = moto.keys(name)
    assert f"rooms/{ROOM}/metadata.json" in keys
    assert len(keys) >= 4  # metadata, alice's uploads, bob's
    now = datetime.now(UTC)
    for key in keys:
        head = s3.head_object(Bucket=name, Key=f"{PREFIX}/{key}")
        assert head["ObjectLockMode"] == "GOVERNANCE", key
        until = head["ObjectLockRetainUntilDate"]
        assert now + timedelta(hours=23) < until <= now + timedelta(days=1, minutes=5), key
        with pytest.raises(ClientError) as refused:  # the lock holds against the owner
            s3.delete_object(Bucket=name, Key=f"{PREFIX}/{key}", VersionId=head["VersionId"])
        assert refused.value.response["Error"]["Code"] == "AccessDenied"

    for user in (alice, bob):
        code, report = lock_audit(user, fail_on="warning")
        assert unlocked(report) == []
        assert report["summary"]["error"] == 0
        assert report["findings"] == [], report["findings"]
        assert code == 0


def test_an_ordinary_bucket_has_every_object_unlocked(moto: Site, tmp_path: Path):
    name = moto.new_bucket()
    alice, _ = chat(moto, name, tmp_path)
    keys = moto.keys(name)

    code, report = lock_audit(alice, fail_on="error")
    assert code == 0
    assert unlocked(report) == keys  # every object the cache knows, metadata included
    assert {f["severity"] for f in report["findings"]} == {"warning"}
    assert report["summary"]["warning"] == len(keys)
    assert report["summary"]["by_kind"] == {"unlocked_object": len(keys)}
    assert report["summary"]["error"] == 0

    code, report = lock_audit(alice, fail_on="warning")
    assert code == 1
    assert unlocked(report) == keys

    # Without --check-lock the bucket is not asked, and the audit is clean.
    plain = alice.audit()
    assert plain["findings"] == []


def test_a_local_folder_cannot_be_locked(request: pytest.FixtureRequest, tmp_path: Path):
    site = site_for("local", request, tmp_path)
    alice = User.make(ALICE, tmp_path, site.url(site.new_bucket()), site)
    alice.keys_init()
    ran = alice.run("room", "create", ROOM, "--lock-days", "1")
    assert ran.code == 2, ran.err
    assert "cannot be locked" in one_error_line(ran)


def test_an_object_deleted_since_the_last_sync_does_not_stop_the_lock_audit(
    moto: Site, tmp_path: Path
):
    name = moto.new_bucket()
    alice, _ = chat(moto, name, tmp_path)
    keys = moto.keys(name)
    gone = next(key for key in keys if key.endswith(".jsonl"))
    moto.sdk.delete_object(Bucket=name, Key=f"{PREFIX}/{gone}")

    ran = alice.run("audit", "--check-lock", "--format", "json", "--fail-on", "never")
    assert ran.code == 0, ran.err
    report = json.loads(ran.out)
    assert unlocked(report) == [key for key in keys if key != gone]

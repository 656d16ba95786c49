"""One storage contract, run against every backend with its real client library and a real
server: a local folder, moto (S3), Ceph radosgw (S3, slow), fake-gcs-server (GCS) and
azurite (Azure Blob). Each test gets a new, empty bucket.

Backends differ only where the server does: moto and fake-gcs-server accept any
credentials, so "bad credentials" runs where they are checked (Ceph, azurite); Object
Lock runs on the S3 servers, which honour it.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bucketchat.config import Settings
from bucketchat.errors import (
    BucketAccessDenied,
    BucketError,
    BucketNotFound,
    BucketUnreachable,
    ObjectExists,
    UsageError,
)
from bucketchat.storage import (
    AzureBucket,
    Bucket,
    GCSBucket,
    LocalBucket,
    S3Bucket,
    open_bucket,
)
from bucketchat.storage.base import RetryPolicy, join_prefix

PREFIX = "chat"
KEY = "rooms/lobby/logs/2026-01-01/messages_1767225600000_1767225601000_alice_7f3a2c.jsonl"


def settings_with(**tables: dict[str, Any]) -> Settings:
    return Settings(file=dict(tables))


def unique_name() -> str:
    return f"bc-{uuid.uuid4().hex[:20]}"


@dataclass
class Harness:
    """How to reach one backend: open a bucket by name, create one, put raw objects."""

    name: str
    open: Callable[[str], Bucket]  # an existing or missing bucket, by name
    make: Callable[[str], None]  # create an empty bucket with this name
    raw_put: Callable[[Bucket, str, bytes], None]  # write through the SDK, bypassing create
    bad_credentials: Callable[[str], Bucket] | None = None
    unreachable: Callable[[], Bucket] | None = None
    s3_lock: bool = False
    cloud: bool = True
    notes: dict[str, Any] = field(default_factory=dict)

    def new(self) -> Bucket:
        name = unique_name()
        self.make(name)
        return self.open(name)


# -- one harness per backend -------------------------------------------------------------


def local_harness(tmp_path: Path) -> Harness:
    def make(name: str) -> None:
        (tmp_path / name).mkdir()

    def raw_put(bucket: Bucket, key: str, data: bytes) -> None:
        assert isinstance(bucket, LocalBucket)
        path = bucket.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return Harness(
        "local",
        open=lambda name: open_bucket(str(tmp_path / name)),
        make=make,
        raw_put=raw_put,
        cloud=False,
    )


def s3_raw_put(bucket: Bucket, key: str, data: bytes) -> None:
    assert isinstance(bucket, S3Bucket)
    bucket.s3.put_object(Bucket=bucket.bucket, Key=join_prefix(bucket.prefix, key), Body=data)


def s3_harness(
    name: str, endpoint: str, access: str, secret: str, mp: pytest.MonkeyPatch, checks: bool
) -> Harness:
    mp.setenv("AWS_ACCESS_KEY_ID", access)
    mp.setenv("AWS_SECRET_ACCESS_KEY", secret)
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        mp.delenv(var, raising=False)
    mp.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    table = {"endpoint": endpoint, "region": "us-east-1"}

    def open_(bucket: str) -> Bucket:
        return open_bucket(f"s3://{bucket}/{PREFIX}", settings_with(s3=table))

    def make(bucket: str) -> None:
        b = open_(bucket)
        assert isinstance(b, S3Bucket)
        b.s3.create_bucket(Bucket=bucket)

    def bad(bucket: str) -> Bucket:
        mp.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        return open_(bucket)

    def unreachable() -> Bucket:
        closed = f"http://127.0.0.1:{servers().closed_port()}"
        return open_bucket(f"s3://nowhere/{PREFIX}", settings_with(s3={"endpoint": closed}))

    return Harness(
        name,
        open=open_,
        make=make,
        raw_put=s3_raw_put,
        bad_credentials=bad if checks else None,
        unreachable=unreachable,
        s3_lock=True,
    )


def gcs_harness(endpoint: str, mp: pytest.MonkeyPatch) -> Harness:
    # The standard variable, as a user of the emulator would set it.
    mp.setenv("STORAGE_EMULATOR_HOST", endpoint)
    mp.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)

    def open_(bucket: str) -> Bucket:
        return open_bucket(f"gs://{bucket}/{PREFIX}", settings_with())

    def make(bucket: str) -> None:
        b = open_(bucket)
        assert isinstance(b, GCSBucket)
        b.client.create_bucket(bucket)

    def raw_put(bucket: Bucket, key: str, data: bytes) -> None:
        assert isinstance(bucket, GCSBucket)
        bucket.gcs_bucket.blob(join_prefix(bucket.prefix, key)).upload_from_string(data)

    def unreachable() -> Bucket:
        mp.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{servers().closed_port()}")
        return open_bucket(f"gs://nowhere/{PREFIX}", settings_with())

    return Harness("gcs", open=open_, make=make, raw_put=raw_put, unreachable=unreachable)


def azure_harness(azurite: Any, mp: pytest.MonkeyPatch) -> Harness:
    mp.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string())
    for var in ("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN"):
        mp.delenv(var, raising=False)

    def open_(container: str) -> Bucket:
        return open_bucket(f"az://{container}/{PREFIX}", settings_with())

    def make(container: str) -> None:
        b = open_(container)
        assert isinstance(b, AzureBucket)
        b.container_client.create_container()

    def raw_put(bucket: Bucket, key: str, data: bytes) -> None:
        assert isinstance(bucket, AzureBucket)
        bucket.container_client.upload_blob(join_prefix(bucket.prefix, key), data)

    def bad(container: str) -> Bucket:
        wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
        mp.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string(wrong))
        return open_(container)

    def unreachable() -> Bucket:
        closed = f"http://127.0.0.1:{servers().closed_port()}/devstoreaccount1"
        mp.setenv(
            "AZURE_STORAGE_CONNECTION_STRING",
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={azurite.key};BlobEndpoint={closed};",
        )
        return open_("nowhere")

    return Harness(
        "azurite",
        open=open_,
        make=make,
        raw_put=raw_put,
        bad_credentials=bad,
        unreachable=unreachable,
    )


def servers() -> Any:
    import sys

    return sys.modules["bucketchat_test_servers"]


BACKENDS = [
    pytest.param("local", id="local"),
    pytest.param("moto", id="moto"),
    pytest.param("ceph", id="ceph", marks=pytest.mark.slow),
    pytest.param("gcs", id="gcs"),
    pytest.param("azurite", id="azurite"),
]


def build(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    mp: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    if kind == "local":
        return local_harness(tmp_path)
    if kind == "moto":
        endpoint = request.getfixturevalue("moto_endpoint")
        return s3_harness("moto", endpoint, "testing", "testing", mp, checks=False)
    if kind == "ceph":
        gw = request.getfixturevalue("ceph_endpoint")
        return s3_harness("ceph", gw.endpoint, gw.access_key, gw.secret_key, mp, checks=True)
    if kind == "gcs":
        return gcs_harness(request.getfixturevalue("gcs_endpoint"), mp)
    if kind == "azurite":
        return azure_harness(request.getfixturevalue("azurite_blob"), mp)
    raise AssertionError(kind)


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return build(request.param, request, tmp_path)


@pytest.fixture
def bucket(harness: Harness) -> Bucket:
    return harness.new()


def only(*kinds: str) -> list[Any]:
    return [p for p in BACKENDS if p.id in kinds]


# -- the contract ---------------------------------------------------------------------


def test_create_then_read_and_list(bucket: Bucket) -> None:
    bucket.create(KEY, b'{"a":1}\n')
    bucket.create("rooms/lobby/metadata.json", b"{}")
    assert bucket.read(KEY) == b'{"a":1}\n'
    listed = {info.key: info for info in bucket.list()}
    assert set(listed) == {KEY, "rooms/lobby/metadata.json"}
    assert listed[KEY].size == 8
    assert listed[KEY].modified_at > 0
    assert bucket.exists(KEY)
    assert not bucket.exists("rooms/lobby/none.json")


def test_list_is_relative_to_the_prefix_and_filtered(harness: Harness, bucket: Bucket) -> None:
    bucket.create("rooms/a/metadata.json", b"{}")
    bucket.create("other/file", b"x")
    assert [i.key for i in bucket.list()] == ["rooms/a/metadata.json"]
    assert sorted(i.key for i in bucket.list("")) == ["other/file", "rooms/a/metadata.json"]
    assert list(bucket.list("rooms/zzz/")) == []
    if harness.cloud:  # the object really lies under the URL's prefix in the bucket
        assert bucket.url.endswith(f"/{PREFIX}")


def test_versions_are_non_empty_and_stable(bucket: Bucket) -> None:
    bucket.create("rooms/a/one.jsonl", b"1\n")
    bucket.create("rooms/a/two.jsonl", b"22\n")
    first = {i.key: i.version for i in bucket.list()}
    second = {i.key: i.version for i in bucket.list()}
    assert first == second
    assert all(first.values())


def test_create_is_create_only(bucket: Bucket) -> None:
    bucket.create(KEY, b"original\n")
    with pytest.raises(ObjectExists):
        bucket.create(KEY, b"intruder\n")
    assert bucket.read(KEY) == b"original\n"
    assert [i.key for i in bucket.list()] == [KEY]


def test_concurrent_creates_of_one_name_have_one_winner(bucket: Bucket) -> None:
    barrier = threading.Barrier(8)

    def attempt(n: int) -> bool:
        barrier.wait()
        try:
            bucket.create(KEY, f"writer {n}\n".encode())
        except ObjectExists:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(attempt, range(8)))
    assert wins.count(True) == 1
    assert bucket.read(KEY) == f"writer {wins.index(True)}\n".encode()


def test_missing_object_is_not_found(bucket: Bucket) -> None:
    with pytest.raises(BucketNotFound):
        bucket.read("rooms/nothing/here.jsonl")


def test_missing_bucket_is_not_found(harness: Harness) -> None:
    missing = harness.open(unique_name())
    with pytest.raises(BucketNotFound):
        list(missing.list())
    with pytest.raises(BucketNotFound):
        missing.read(KEY)
    if harness.cloud:
        with pytest.raises(BucketNotFound):
            missing.create(KEY, b"x\n")


def test_unicode_keys(bucket: Bucket) -> None:
    keys = [
        "rooms/café/metadata.json",
        "rooms/日本語/logs/2026-01-01/messages_1_2_ü.jsonl",
        "rooms/emoji/😀 space+plus%percent.jsonl",
    ]
    for n, key in enumerate(keys):
        bucket.create(key, f"{n}\n".encode())
    assert sorted(i.key for i in bucket.list()) == sorted(keys)
    for n, key in enumerate(keys):
        assert bucket.read(key) == f"{n}\n".encode()
        assert bucket.exists(key)


def test_listing_pages_past_1000_objects(
    harness: Harness, bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"rooms/big/logs/2026-01-01/m_{n:05d}.jsonl" for n in range(1100)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: harness.raw_put(bucket, k, b"x\n"), keys))
    pages = 0
    if harness.cloud:
        calls = bucket.calls  # type: ignore[attr-defined]
        run = calls.run

        def counting(what: str, *args: Any, **kwargs: Any) -> Any:
            nonlocal pages
            pages += what == "list"
            return run(what, *args, **kwargs)

        monkeypatch.setattr(calls, "run", counting)
    listed = [i.key for i in bucket.list()]
    assert sorted(listed) == keys
    if harness.cloud:
        assert pages == 2


def test_read_many_reads_all_in_parallel(
    harness: Harness, bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"rooms/r/logs/2026-01-01/m_{n:03d}.jsonl" for n in range(60)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: harness.raw_put(bucket, k, k.encode()), keys))
    in_flight = peak = 0
    lock = threading.Lock()
    read = bucket.read

    def watched(key: str) -> bytes:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            time.sleep(0.01)
            return read(key)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(bucket, "read", watched)
    results = dict(bucket.read_many([*keys, "rooms/r/missing.jsonl"]))
    assert set(results) == {*keys, "rooms/r/missing.jsonl"}
    for key in keys:
        assert results[key] == key.encode()
    assert isinstance(results["rooms/r/missing.jsonl"], BucketNotFound)
    if harness.cloud:
        assert peak > 1


@pytest.mark.parametrize("harness", only("moto", "gcs", "azurite"), indirect=True)
def test_read_many_streams_its_keys(bucket: Bucket) -> None:
    pulled = 0

    def keys() -> Iterator[str]:
        nonlocal pulled
        for n in range(100_000):
            pulled += 1
            yield f"rooms/none/{n}.jsonl"

    stream = bucket.read_many(keys())
    _key, result = next(iter(stream))
    assert isinstance(result, BucketNotFound)
    stream.close()  # type: ignore[attr-defined]
    assert pulled < 100


@pytest.mark.parametrize("harness", only("ceph", "azurite"), indirect=True)
def test_bad_credentials_are_access_denied(harness: Harness) -> None:
    name = unique_name()
    harness.make(name)
    assert harness.bad_credentials is not None
    denied = harness.bad_credentials(name)
    with pytest.raises(BucketAccessDenied) as info:
        list(denied.list())
    assert "\n" not in str(info.value)
    with pytest.raises(BucketAccessDenied):
        denied.create(KEY, b"x\n")


@pytest.mark.parametrize("harness", only("moto", "ceph", "gcs", "azurite"), indirect=True)
def test_unreachable_endpoint_gives_up_within_30_s(harness: Harness) -> None:
    assert harness.unreachable is not None
    start = time.monotonic()
    with pytest.raises(BucketUnreachable) as info:
        list(harness.unreachable().list())
    assert time.monotonic() - start < 30
    assert "127.0.0.1" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_a_server_that_never_answers_gives_up_within_30_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """A port that accepts connections (the kernel's backlog) and never answers: every
    backend's read timeout and retry budget end it with BucketUnreachable in < 30 s."""
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(256)
        endpoint = f"http://127.0.0.1:{mute.getsockname()[1]}"
        azure = servers().Azurite(f"{endpoint}/devstoreaccount1").connection_string()
        buckets: list[Bucket] = [
            S3Bucket("s3://mute", {"endpoint": endpoint}),
            GCSBucket("gs://mute", {"endpoint": endpoint}),
            AzureBucket("az://mute", {"connection_string": azure}),
        ]

        def attempt(bucket: Bucket) -> tuple[float, BaseException | None]:
            start = time.monotonic()
            try:
                list(bucket.list())
            except BaseException as exc:
                return time.monotonic() - start, exc
            return time.monotonic() - start, None

        with ThreadPoolExecutor(3) as pool:
            outcomes = list(pool.map(attempt, buckets))
    for bucket, (elapsed, error) in zip(buckets, outcomes, strict=True):
        assert isinstance(error, BucketUnreachable), (bucket.url, error)
        assert elapsed < 30, (bucket.url, elapsed)


def test_ordinary_objects_are_unlocked(bucket: Bucket) -> None:
    bucket.create(KEY, b"x\n")
    status = bucket.lock_status(KEY)
    assert (status.key, status.locked, status.legal_hold, status.bucket_default) == (
        KEY,
        False,
        False,
        False,
    )


@pytest.mark.parametrize("harness", only("moto", "ceph"), indirect=True)
def test_s3_object_lock_shows_locked_objects(harness: Harness) -> None:
    locked = harness.open(unique_name())
    assert isinstance(locked, S3Bucket)
    locked.ensure_locked_bucket(retention_days=1, mode="GOVERNANCE")
    locked.create(KEY, b"kept\n")
    status = locked.lock_status(KEY)
    assert status.locked and status.mode == "GOVERNANCE" and status.bucket_default
    assert status.retain_until is not None and status.retain_until > datetime.now(UTC)
    # Locked means locked: the server refuses to delete the version.
    head = locked.s3.head_object(Bucket=locked.bucket, Key=f"{PREFIX}/{KEY}")
    with pytest.raises(Exception, match=r"AccessDenied|locked|Forbidden|403"):
        locked.s3.delete_object(
            Bucket=locked.bucket, Key=f"{PREFIX}/{KEY}", VersionId=head["VersionId"]
        )
    # A legal hold alone also locks, in a bucket without default retention.
    plain = harness.open(unique_name())
    assert isinstance(plain, S3Bucket)
    plain.s3.create_bucket(Bucket=plain.bucket, ObjectLockEnabledForBucket=True)
    plain.create("rooms/a/held.json", b"{}")
    plain.create("rooms/a/free.json", b"{}")
    plain.s3.put_object_legal_hold(
        Bucket=plain.bucket, Key=f"{PREFIX}/rooms/a/held.json", LegalHold={"Status": "ON"}
    )
    held = plain.lock_status("rooms/a/held.json")
    assert held.locked and held.legal_hold and held.mode == "legal_hold"
    assert not held.bucket_default
    assert not plain.lock_status("rooms/a/free.json").locked


@pytest.mark.parametrize("harness", only("moto"), indirect=True)
def test_ensure_locked_bucket_turns_lock_on_for_an_existing_bucket(bucket: Bucket) -> None:
    assert isinstance(bucket, S3Bucket)
    # moto, unlike AWS, only turns Object Lock on for an empty bucket.
    bucket.ensure_locked_bucket(retention_days=2, mode="compliance")
    bucket.create("rooms/a/after.json", b"{}")
    after = bucket.lock_status("rooms/a/after.json")
    assert after.locked and after.mode == "COMPLIANCE"


@pytest.mark.parametrize("harness", only("local", "azurite"), indirect=True)
def test_backends_that_cannot_lock_say_so(bucket: Bucket) -> None:
    with pytest.raises(UsageError, match=r"immutability|cannot be locked"):
        bucket.ensure_locked_bucket(retention_days=1)  # type: ignore[attr-defined]


@pytest.mark.parametrize("harness", only("gcs"), indirect=True)
def test_gcs_retention_that_the_server_drops_is_reported(bucket: Bucket) -> None:
    """fake-gcs-server accepts a retention policy (and holds) and keeps none of them:
    ensure_locked_bucket checks what the server kept instead of trusting the 200."""
    assert isinstance(bucket, GCSBucket)
    with pytest.raises(UsageError, match="did not keep it"):
        bucket.ensure_locked_bucket(retention_days=1)


@pytest.mark.parametrize("harness", only("local"), indirect=True)
def test_a_local_write_that_fails_is_a_bucket_error(bucket: Bucket) -> None:
    assert isinstance(bucket, LocalBucket)
    (bucket.root / "rooms").write_bytes(b"a file where a folder should be")
    with pytest.raises(BucketError, match="cannot write") as info:
        bucket.create(KEY, b"x\n")
    assert "\n" not in str(info.value)


# -- configuration --------------------------------------------------------------------


def test_open_bucket_dispatches_on_the_scheme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        servers().Azurite("http://127.0.0.1:1/devstoreaccount1").connection_string(),
    )
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")
    s3 = settings_with(s3={"endpoint": "http://127.0.0.1:1"})
    assert isinstance(open_bucket(str(tmp_path)), LocalBucket)
    assert isinstance(open_bucket(tmp_path.as_uri()), LocalBucket)
    assert isinstance(open_bucket("s3://bkt/p", s3), S3Bucket)
    assert isinstance(open_bucket("gs://bkt/p", settings_with()), GCSBucket)
    assert isinstance(open_bucket("az://ctr/p", settings_with()), AzureBucket)
    for url in ("ftp://x/y", "s3://", "gs:///p"):
        with pytest.raises(UsageError):
            open_bucket(url, s3)


def test_s3_environment_beats_the_config_table(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    closed = f"http://127.0.0.1:{servers().closed_port()}"
    b = open_bucket("s3://env-wins", settings_with(s3={"endpoint": closed, "region": "eu-west-1"}))
    assert isinstance(b, S3Bucket)
    assert b.endpoint == moto_endpoint
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert open_bucket("s3://env-wins", settings_with(s3={"region": "eu-west-1"})).region == (  # type: ignore[attr-defined]
        "eu-central-1"
    )


def test_no_metadata_probes_with_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an endpoint configured, no SDK would ask a cloud metadata address: checked on
    the clients' configuration, so the test itself never sends anything anywhere."""
    from azure.identity import ManagedIdentityCredential
    from botocore.exceptions import UnknownCredentialError
    from google.auth.credentials import AnonymousCredentials

    for var in ("AWS_EC2_METADATA_DISABLED", "NO_GCE_CHECK", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    for var in (
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT",
        "STORAGE_EMULATOR_HOST",
    ):
        monkeypatch.delenv(var, raising=False)
    endpoint = "http://127.0.0.1:1"
    s3 = S3Bucket("s3://bkt", {"endpoint": endpoint})
    with pytest.raises(UnknownCredentialError):
        s3.botocore_session.get_component("credential_provider").get_provider("iam-role")
    gcs = GCSBucket("gs://bkt", {"endpoint": endpoint})
    assert isinstance(gcs.client._credentials, AnonymousCredentials)
    az = AzureBucket("az://ctr", {"endpoint": "https://127.0.0.1:1/devstoreaccount1"})
    chain = az.service.credential.credentials
    assert chain and not any(isinstance(c, ManagedIdentityCredential) for c in chain)


def test_gcs_endpoint_from_the_config_table(
    gcs_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    b = open_bucket("gs://table-bucket", settings_with(gs={"endpoint": gcs_endpoint}))
    assert isinstance(b, GCSBucket)
    b.client.create_bucket("table-bucket")
    b.create("rooms/a/metadata.json", b"{}")
    assert [i.key for i in b.list()] == ["rooms/a/metadata.json"]


def test_retries_throttling_then_succeeds() -> None:
    """The retry loop: transient faults are retried with backoff, then the call succeeds;
    a budget bounds it in time."""
    from bucketchat.storage.base import Calls, Diagnosis, Fault

    class Throttled(Exception):
        pass

    attempts = []

    def flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise Throttled("SlowDown")
        return "ok"

    calls = Calls(
        "s3://x",
        "S3",
        None,
        lambda e: Diagnosis(Fault.TRANSIENT, "SlowDown"),
        RetryPolicy(budget=10, base_delay=0.01, connect_timeout=1, read_timeout=1),
    )
    assert calls.run("list", flaky) == "ok" and len(attempts) == 3

    def always() -> str:
        raise Throttled("SlowDown")

    start = time.monotonic()
    with pytest.raises(BucketUnreachable, match="kept failing"):
        Calls(
            "s3://x",
            "S3",
            None,
            lambda e: Diagnosis(Fault.TRANSIENT, "SlowDown"),
            RetryPolicy(
                budget=3, base_delay=0.05, max_delay=0.2, connect_timeout=1, read_timeout=1
            ),
        ).run("list", always)
    assert 0.5 < time.monotonic() - start < 3

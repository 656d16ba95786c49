"""Google Cloud Storage: ``gs://bucket/prefix``.

Configuration is the one GCP users already have: Application Default Credentials
(``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default login``, the
metadata server on GCP), ``GOOGLE_CLOUD_PROJECT``, and ``STORAGE_EMULATOR_HOST`` for an
emulator; then the ``[gs]`` table of bucketchat's config file (``endpoint``, ``project``,
``credentials`` = a service-account JSON file). With an endpoint (emulator or table) and
no credentials file, the client is anonymous and never looks for the GCE metadata server
(the ``NO_GCE_CHECK`` behaviour). The client is built through cloudpathlib's ``GSClient``.

Create-only writes are uploads with ``if_generation_match=0``; the object's generation is
its ``version``. Every call passes ``retry=None``: ``Calls`` owns retries.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from bucketchat.errors import UsageError
from bucketchat.storage.base import (
    CONNECT_TIMEOUT,
    PAGE_SIZE,
    READ_TIMEOUT,
    READ_WORKERS,
    Calls,
    CloudBucket,
    Diagnosis,
    Fault,
    LockStatus,
    ObjectInfo,
    RetryPolicy,
    cloudpathlib_cache,
    content_type,
)

T = TypeVar("T")
TIMEOUT = (CONNECT_TIMEOUT, READ_TIMEOUT)
LIST_FIELDS = "items(name,size,generation,updated),nextPageToken"


def diagnose(exc: BaseException) -> Diagnosis | None:
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as aexc
    from google.resumable_media import common as rmc

    if isinstance(exc, gexc.GoogleAPICallError):
        detail = f"{exc.code} {exc.message}"
        if isinstance(exc, gexc.PreconditionFailed):
            return Diagnosis(Fault.EXISTS, detail)
        if isinstance(exc, gexc.NotFound):
            text = str(exc.message).lower()
            if getattr(exc, "bucket_missing", False) or ("bucket" in text and "object" not in text):
                return Diagnosis(Fault.BUCKET_MISSING, detail)
            return Diagnosis(Fault.OBJECT_MISSING, detail)
        if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
            return Diagnosis(Fault.DENIED, detail)
        if isinstance(
            exc, gexc.TooManyRequests | gexc.ServerError | gexc.RequestRangeNotSatisfiable
        ):
            return Diagnosis(Fault.TRANSIENT, detail)
        return Diagnosis(Fault.OTHER, detail)
    if isinstance(exc, aexc.TransportError):
        return Diagnosis(Fault.UNREACHABLE, str(exc))
    if isinstance(exc, aexc.GoogleAuthError):
        return Diagnosis(
            Fault.DENIED, f"{exc}; set GOOGLE_APPLICATION_CREDENTIALS or run gcloud auth"
        )
    if isinstance(exc, requests.exceptions.ReadTimeout | requests.exceptions.ChunkedEncodingError):
        return Diagnosis(Fault.TRANSIENT, str(exc))
    if isinstance(exc, requests.exceptions.ConnectionError):
        return Diagnosis(Fault.UNREACHABLE, str(exc))
    if isinstance(exc, rmc.DataCorruption):
        return Diagnosis(Fault.TRANSIENT, str(exc))
    if isinstance(exc, rmc.InvalidResponse):
        status = getattr(exc.response, "status_code", 0)
        if status == 412:
            return Diagnosis(Fault.EXISTS, str(status))
        if status in (401, 403):
            return Diagnosis(Fault.DENIED, str(status))
        if status == 404:
            return Diagnosis(Fault.BUCKET_MISSING, str(status))
        if status == 429 or status >= 500:
            return Diagnosis(Fault.TRANSIENT, str(status))
        return Diagnosis(Fault.OTHER, str(exc))
    if isinstance(exc, requests.exceptions.RequestException):
        return Diagnosis(Fault.OTHER, str(exc))
    return None


def _in_bucket(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a call that needs no existing object (a listing, a create-only upload): a 404
    from it means the bucket is missing, whatever its text (fake-gcs-server: "Not Found")."""
    from google.api_core import exceptions as gexc

    try:
        return call(*args, **kwargs)
    except gexc.NotFound as exc:
        exc.bucket_missing = True  # type: ignore[attr-defined]
        raise


def _endpoint_url(value: str) -> str:
    return value if "://" in value else f"http://{value}"


class GCSBucket(CloudBucket):
    """A Google Cloud Storage bucket (or a prefix in one) through google-cloud-storage."""

    scheme = "gs"

    def __init__(
        self,
        url: str,
        table: Mapping[str, Any] | None = None,
        *,
        workers: int = READ_WORKERS,
        policy: RetryPolicy | None = None,
    ) -> None:
        from cloudpathlib import GSClient
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        table = dict(table or {})
        super().__init__(url, workers)
        self.bucket = self.name
        env = os.environ
        endpoint = env.get("STORAGE_EMULATOR_HOST") or table.get("endpoint")
        self.endpoint: str | None = _endpoint_url(str(endpoint)) if endpoint else None
        project = env.get("GOOGLE_CLOUD_PROJECT") or table.get("project")
        key_file = env.get("GOOGLE_APPLICATION_CREDENTIALS") or table.get("credentials")
        if self.endpoint:
            credentials: Any = None
            if key_file:
                from google.oauth2 import service_account

                credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    os.path.expanduser(str(key_file)),
                    scopes=["https://www.googleapis.com/auth/devstorage.read_write"],
                )
            client = storage.Client(
                project=str(project) if project else "bucketchat",
                credentials=credentials or AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": self.endpoint},
            )
            self.cloud_client = GSClient(storage_client=client, **cloudpathlib_cache())
        else:
            try:
                self.cloud_client = GSClient(
                    project=str(project) if project else None,
                    application_credentials=(
                        None
                        if env.get("GOOGLE_APPLICATION_CREDENTIALS") or not key_file
                        else os.path.expanduser(str(key_file))
                    ),
                    **cloudpathlib_cache(),
                )
            except (OSError, ValueError) as exc:
                raise UsageError(f"{self.url}: cannot load GCS credentials: {exc}") from exc
        self.client: Any = self.cloud_client.client  # google.cloud.storage.Client
        self._widen_pool(workers + 4)
        self.gcs_bucket: Any = self.client.bucket(self.bucket)
        self.calls = Calls(self.url, "GCS", self.endpoint, diagnose, policy)
        self._bucket_meta: Any = None

    def _widen_pool(self, size: int) -> None:
        """requests keeps 10 connections per host; parallel reads want one per worker."""
        from requests.adapters import HTTPAdapter

        session = self.client._http  # the client's (authorized) requests session
        for scheme in ("http://", "https://"):
            session.mount(scheme, HTTPAdapter(pool_connections=4, pool_maxsize=size))

    def list(self, prefix: str = "rooms/") -> Iterator[ObjectInfo]:
        base = f"{self.prefix}/" if self.prefix else ""
        full = base + prefix
        token: str | None = None
        while True:
            items, token = self.calls.run("list", partial(self._page, full, token))
            for blob in items:
                yield ObjectInfo(
                    key=blob.name[len(base) :],
                    size=int(blob.size or 0),
                    version=str(blob.generation),
                    modified_at=blob.updated.timestamp() if blob.updated else 0.0,
                )
            if not token:
                return

    def _page(self, full: str, token: str | None) -> tuple[Sequence[Any], str | None]:
        iterator = self.client.list_blobs(
            self.gcs_bucket,
            prefix=full,
            page_size=PAGE_SIZE,
            page_token=token,
            fields=LIST_FIELDS,
            timeout=TIMEOUT,
            retry=None,
        )
        page = _in_bucket(partial(next, iterator.pages, None))
        items = list(page) if page is not None else []
        return items, iterator.next_page_token

    def _get(self, full: str) -> bytes:
        data: bytes = self.gcs_bucket.blob(full).download_as_bytes(timeout=TIMEOUT, retry=None)
        return data

    def read(self, key: str) -> bytes:
        return self.calls.run("read", partial(self._get, self._full(key)), key=key)

    def exists(self, key: str) -> bool:
        blob = self.gcs_bucket.blob(self._full(key))
        return bool(self.calls.run("check", partial(blob.exists, timeout=TIMEOUT, retry=None)))

    def create(self, key: str, data: bytes) -> None:
        full = self._full(key)
        upload = partial(
            _in_bucket,
            self.gcs_bucket.blob(full).upload_from_string,
            data,
            content_type=content_type(key),
            if_generation_match=0,
            timeout=TIMEOUT,
            retry=None,
        )
        self.calls.run("create", upload, key=key, on_retried_clash=lambda: self._get(full) == data)

    # -- immutability -------------------------------------------------------------------

    def _bucket_retention(self) -> int:
        """The bucket's retention period in seconds (0 without a retention policy)."""
        if self._bucket_meta is None:
            meta = self.client.bucket(self.bucket)
            self.calls.run(
                "read the retention policy of", partial(meta.reload, timeout=TIMEOUT, retry=None)
            )
            self._bucket_meta = meta
        return int(self._bucket_meta.retention_period or 0)

    def lock_status(self, key: str) -> LockStatus:
        """Holds (temporary, event-based), the bucket retention policy's expiration for
        this object, and object retention (``blob.retention``) where the bucket has it."""
        bucket_retention = self._bucket_retention()
        blob = self.gcs_bucket.blob(self._full(key))
        self.calls.run(
            "check the lock of", partial(blob.reload, timeout=TIMEOUT, retry=None), key=key
        )
        now = datetime.now(UTC)
        mode: str | None = None
        until: datetime | None = None
        expiry = blob.retention_expiration_time
        if expiry is not None and expiry > now:
            mode, until = "retention_policy", expiry
        retention = getattr(blob, "retention", None)
        object_until = getattr(retention, "retain_until_time", None) if retention else None
        if object_until is not None and object_until > now:
            mode = str(getattr(retention, "mode", None) or "object_retention")
            until = max(until, object_until) if until else object_until
        if blob.temporary_hold:
            mode = mode or "temporary_hold"
        if blob.event_based_hold:
            mode = mode or "event_based_hold"
        return LockStatus(
            key=key,
            locked=mode is not None,
            mode=mode,
            retain_until=until,
            legal_hold=bool(blob.temporary_hold or blob.event_based_hold),
            bucket_default=bucket_retention > 0,
        )

    def ensure_locked_bucket(self, retention_days: int, mode: str = "GOVERNANCE") -> None:
        """Create the bucket if needed and set a bucket retention policy of
        ``retention_days``. GOVERNANCE leaves the policy unlocked (an owner can still
        shorten or remove it); COMPLIANCE locks it, which is permanent: the period can
        then only grow and the bucket cannot be deleted while it holds objects."""
        from google.api_core import exceptions as gexc

        mode = mode.upper()
        if mode not in ("GOVERNANCE", "COMPLIANCE") or retention_days < 1:
            raise UsageError("a retention policy needs mode GOVERNANCE or COMPLIANCE and days >= 1")

        def create() -> None:
            with contextlib.suppress(gexc.Conflict):
                self.client.create_bucket(self.bucket, timeout=TIMEOUT, retry=None)

        self.calls.run("create", create)
        meta = self.client.bucket(self.bucket)
        self.calls.run("read", partial(meta.reload, timeout=TIMEOUT, retry=None))
        meta.retention_period = retention_days * 86400
        self.calls.run(
            "set a retention policy on", partial(meta.patch, timeout=TIMEOUT, retry=None)
        )
        self.calls.run("read", partial(meta.reload, timeout=TIMEOUT, retry=None))
        if int(meta.retention_period or 0) < retention_days * 86400:
            raise UsageError(
                f"{self.url}: the server accepted a retention policy but did not keep it "
                "(an emulator such as fake-gcs-server ignores them); objects are not locked"
            )
        if mode == "COMPLIANCE":
            self.calls.run(
                "lock the retention policy of",
                partial(meta.lock_retention_policy, timeout=TIMEOUT, retry=None),
            )
        self._bucket_meta = None

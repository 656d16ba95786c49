"""Azure Blob Storage: ``az://container/prefix``.

Configuration is the one Azure users already have, first match wins:
``AZURE_STORAGE_CONNECTION_STRING``; ``AZURE_STORAGE_ACCOUNT`` (the account URL
``https://ACCOUNT.blob.core.windows.net``) with ``AZURE_STORAGE_KEY`` or
``AZURE_STORAGE_SAS_TOKEN`` or else ``DefaultAzureCredential`` (``az login``, environment
service principal, workload/managed identity); then the ``[az]`` table of bucketchat's
config file (``connection_string``, ``endpoint`` = account URL, ``account``). With a custom
endpoint the managed-identity credential, which probes the instance metadata address, is
left out. The client is built through cloudpathlib's ``AzureBlobClient``.

Create-only writes are ``upload_blob(overwrite=False)`` (``If-None-Match: *``, 409
BlobAlreadyExists on a clash); the ETag is the ``version``. SDK retries are off
(``retry_total=0``): ``Calls`` owns retries.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

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

AZURE_SUFFIX = ".blob.core.windows.net"


def diagnose(exc: BaseException) -> Diagnosis | None:
    from azure.core import exceptions as aexc

    if isinstance(exc, aexc.HttpResponseError):
        code = str(getattr(exc, "error_code", None) or "")
        status = int(exc.status_code or 0)
        detail = f"{status} {code}".strip() or str(exc).splitlines()[0]
        if isinstance(exc, aexc.ClientAuthenticationError) or status in (401, 403):
            return Diagnosis(Fault.DENIED, detail or str(exc))
        if isinstance(exc, aexc.ResourceExistsError) or status in (409, 412):
            return Diagnosis(Fault.EXISTS, detail)
        if isinstance(exc, aexc.ResourceNotFoundError) or status == 404:
            if code == "ContainerNotFound":
                return Diagnosis(Fault.BUCKET_MISSING, detail)
            return Diagnosis(Fault.OBJECT_MISSING, detail)
        if status in (408, 429) or status >= 500:
            return Diagnosis(Fault.TRANSIENT, detail)
        return Diagnosis(Fault.OTHER, detail)
    if isinstance(exc, aexc.ClientAuthenticationError):  # a credential that raised by itself
        return Diagnosis(Fault.DENIED, str(exc).splitlines()[0] if str(exc) else "no credential")
    if isinstance(exc, aexc.ServiceRequestError):  # no connection: refused, DNS, connect timeout
        return Diagnosis(
            Fault.UNREACHABLE, str(exc).splitlines()[0] if str(exc) else "no connection"
        )
    if isinstance(exc, aexc.ServiceResponseError | aexc.IncompleteReadError):
        return Diagnosis(Fault.TRANSIENT, str(exc))
    if isinstance(exc, aexc.AzureError):
        return Diagnosis(Fault.OTHER, str(exc))
    return None


class AzureBucket(CloudBucket):
    """An Azure Blob container (or a prefix in one) through azure-storage-blob."""

    scheme = "az"

    def __init__(
        self,
        url: str,
        table: Mapping[str, Any] | None = None,
        *,
        workers: int = READ_WORKERS,
        policy: RetryPolicy | None = None,
    ) -> None:
        import requests
        from azure.core.pipeline.transport import RequestsTransport
        from azure.storage.blob import BlobServiceClient
        from cloudpathlib import AzureBlobClient
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        table = dict(table or {})
        super().__init__(url, workers)
        self.container = self.name
        # One requests session with a connection per worker and urllib3 retries off.
        session = requests.Session()
        adapter = HTTPAdapter(
            pool_maxsize=workers + 4,
            max_retries=Retry(total=False, redirect=False, raise_on_status=False),
        )
        for scheme in ("http://", "https://"):
            session.mount(scheme, adapter)
        options: dict[str, Any] = {
            "retry_total": 0,
            "transport": RequestsTransport(
                session=session,
                session_owner=False,
                connection_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
            ),
        }
        env = os.environ
        connection_string = env.get("AZURE_STORAGE_CONNECTION_STRING")
        account = env.get("AZURE_STORAGE_ACCOUNT")
        account_url: str | None = None
        if not connection_string and not account:
            connection_string = table.get("connection_string")
            account_url = table.get("endpoint") or table.get("account_url")
            account = account or table.get("account")
        if connection_string:
            service = BlobServiceClient.from_connection_string(str(connection_string), **options)
        else:
            if not account_url and account:
                account_url = f"https://{account}{AZURE_SUFFIX}"
            if not account_url:
                raise UsageError(
                    f"{self.url}: no Azure storage account: set AZURE_STORAGE_CONNECTION_STRING "
                    'or AZURE_STORAGE_ACCOUNT, or endpoint = "https://ACCOUNT.blob.core.'
                    'windows.net" in the [az] table of the config file (docs/clouds.md)'
                )
            account_url = str(account_url).rstrip("/")
            try:
                service = BlobServiceClient(
                    account_url, credential=self._credential(account_url), **options
                )
            except ValueError as exc:  # e.g. a token credential over plain http
                raise UsageError(f"{self.url}: {exc} ({account_url})") from exc
        self.endpoint: str | None = str(service.url).rstrip("/")
        self.cloud_client = AzureBlobClient(blob_service_client=service, **cloudpathlib_cache())
        self.service: Any = service
        self.container_client: Any = service.get_container_client(self.container)
        self.calls = Calls(self.url, "Azure Blob", self.endpoint, diagnose, policy)

    @staticmethod
    def _credential(account_url: str) -> Any:
        env = os.environ
        key = env.get("AZURE_STORAGE_KEY")
        name = env.get("AZURE_STORAGE_ACCOUNT")
        if key and name:
            from azure.core.credentials import AzureNamedKeyCredential

            return AzureNamedKeyCredential(name, key)
        sas = env.get("AZURE_STORAGE_SAS_TOKEN")
        if sas:
            return sas.lstrip("?")
        from azure.identity import DefaultAzureCredential

        host = account_url.split("://", 1)[-1].split("/", 1)[0]
        custom = not host.endswith(AZURE_SUFFIX)
        return DefaultAzureCredential(exclude_managed_identity_credential=custom)

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
                    version=str(blob.etag or "").strip('"'),
                    modified_at=blob.last_modified.timestamp() if blob.last_modified else 0.0,
                )
            if not token:
                return

    def _page(self, full: str, token: str | None) -> tuple[Sequence[Any], str | None]:
        pages = self.container_client.list_blobs(
            name_starts_with=full or None, results_per_page=PAGE_SIZE
        ).by_page(continuation_token=token)
        page = next(pages, None)
        items = list(page) if page is not None else []
        return items, pages.continuation_token

    def _get(self, full: str) -> bytes:
        data: bytes = self.container_client.download_blob(full, max_concurrency=1).readall()
        return data

    def read(self, key: str) -> bytes:
        return self.calls.run("read", partial(self._get, self._full(key)), key=key)

    def exists(self, key: str) -> bool:
        blob = self.container_client.get_blob_client(self._full(key))
        return bool(self.calls.run("check", blob.exists, key=key))

    def create(self, key: str, data: bytes) -> None:
        from azure.storage.blob import ContentSettings

        full = self._full(key)
        upload = partial(
            self.container_client.upload_blob,
            full,
            data,
            overwrite=False,
            content_settings=ContentSettings(content_type=content_type(key)),
        )
        self.calls.run("create", upload, key=key, on_retried_clash=lambda: self._get(full) == data)

    # -- immutability -------------------------------------------------------------------

    def lock_status(self, key: str) -> LockStatus:
        """A blob's version-level immutability policy and legal hold, and the container's
        own time-based policy or legal hold (which cover every blob in it)."""
        container = self.calls.run(
            "read the properties of", self.container_client.get_container_properties
        )
        blob = self.container_client.get_blob_client(self._full(key))
        props = self.calls.run("check the lock of", blob.get_blob_properties, key=key)
        now = datetime.now(UTC)
        policy = getattr(props, "immutability_policy", None)
        until = getattr(policy, "expiry_time", None) if policy else None
        mode: str | None = None
        if until is not None and until > now:
            mode = f"immutability_policy:{getattr(policy, 'policy_mode', None) or 'unlocked'}"
        else:
            until = None
        legal = bool(getattr(props, "has_legal_hold", False))
        container_policy = bool(getattr(container, "has_immutability_policy", False))
        container_hold = bool(getattr(container, "has_legal_hold", False))
        if mode is None and legal:
            mode = "legal_hold"
        if mode is None and container_hold:
            mode = "container_legal_hold"
        if mode is None and container_policy:
            mode = "container_immutability_policy"
        return LockStatus(
            key=key,
            locked=mode is not None,
            mode=mode,
            retain_until=until,
            legal_hold=legal or container_hold,
            bucket_default=container_policy,
        )

    def ensure_locked_bucket(self, retention_days: int, mode: str = "GOVERNANCE") -> None:
        """Create the container if needed, then insist that it is immutable.

        Immutability policies on Azure are set through the management plane (the storage
        account's resource provider), which a data-plane key or SAS cannot reach, so this
        cannot set one; it says how, unless the container already has one.
        """
        from azure.core.exceptions import ResourceExistsError

        def create() -> None:
            with contextlib.suppress(ResourceExistsError):
                self.container_client.create_container()

        self.calls.run("create", create)
        props = self.calls.run(
            "read the properties of", self.container_client.get_container_properties
        )
        if getattr(props, "has_immutability_policy", False) or getattr(
            props, "immutable_storage_with_versioning_enabled", False
        ):
            return
        raise UsageError(
            f"{self.url} has no immutability policy and the blob API cannot set one; run "
            f"az storage container immutability-policy create --resource-group GROUP "
            f"--account-name ACCOUNT "
            f"--container-name {self.container} --period {retention_days} "
            "(then lock it with az storage container immutability-policy lock)"
        )

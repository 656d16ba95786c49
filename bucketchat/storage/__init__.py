"""The bucket: list, read and create-only write of objects under a base URL (PROTOCOL.md §1).

``Bucket`` is the protocol every backend implements; ``open_bucket`` picks one from the
URL: a local folder or ``file://`` (``LocalBucket``), ``s3://bucket/prefix``
(``S3Bucket``), ``gs://bucket/prefix`` (``GCSBucket``), ``az://container/prefix``
(``AzureBucket``). Keys are relative to the prefix. This package is the only importer of
cloudpathlib and the cloud SDKs, and imports them lazily inside the backend classes, so
``import bucketchat.storage`` stays cheap. docs/clouds.md says how to configure each cloud.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

from bucketchat.errors import UsageError
from bucketchat.storage.azure import AzureBucket
from bucketchat.storage.base import (
    PAGE_SIZE,
    READ_WORKERS,
    Bucket,
    LockStatus,
    ObjectInfo,
    RetryPolicy,
)
from bucketchat.storage.gcs import GCSBucket
from bucketchat.storage.local import TEMP_FOLDER, LocalBucket, local_root
from bucketchat.storage.s3 import S3Bucket

if TYPE_CHECKING:
    from bucketchat.config import Settings

__all__ = [
    "PAGE_SIZE",
    "READ_WORKERS",
    "TEMP_FOLDER",
    "AzureBucket",
    "Bucket",
    "GCSBucket",
    "LocalBucket",
    "LockStatus",
    "ObjectInfo",
    "RetryPolicy",
    "S3Bucket",
    "local_root",
    "open_bucket",
]

CLOUD_BACKENDS: dict[str, type[S3Bucket] | type[GCSBucket] | type[AzureBucket]] = {
    "s3": S3Bucket,
    "gs": GCSBucket,
    "az": AzureBucket,
}


def open_bucket(url: str, settings: Settings | None = None) -> Bucket:
    """The bucket at ``url``. Cloud backends take their settings from the cloud's own
    environment variables and files first, then from the config file's ``[s3]``, ``[gs]``
    or ``[az]`` table (``settings``, or the config file when None)."""
    root = local_root(url)
    if root is not None:
        return LocalBucket(root.resolve(), url)
    scheme = urlparse(url).scheme
    backend = CLOUD_BACKENDS.get(scheme)
    if backend is None:
        raise UsageError(
            f"{url}: bucket URLs with {scheme}:// are not supported; use a local folder, "
            "file://, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"
        )
    if settings is None:
        from bucketchat.config import Settings

        settings = Settings.resolve()
    return backend(url, settings.cloud_table(scheme))

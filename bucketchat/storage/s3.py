"""S3 and S3-compatible servers (AWS, Ceph radosgw, MinIO, moto): ``s3://bucket/prefix``.

Configuration is the one AWS users already have: boto3 reads ``AWS_PROFILE``,
``AWS_ACCESS_KEY_ID``…, ``AWS_REGION``, ``~/.aws/config`` and ``~/.aws/credentials``; then
the ``[s3]`` table of bucketchat's config file fills what is still unset (``endpoint``,
``profile``, ``region``, ``addressing_style``). The client is built through cloudpathlib's
``S3Client`` on a botocore session whose default client config sets short connect
timeouts and turns botocore's own retries off (``Calls`` retries, once, with a budget).

Create-only writes are ``put_object(IfNoneMatch="*")`` on the boto3 client (cloudpathlib
drops that argument). With an endpoint configured the EC2 instance-metadata credential
provider is removed so nothing probes 169.254.169.254, the region defaults to us-east-1,
path-style addressing is used, and request checksums are sent only where required
(S3-compatible servers often reject the newer checksum trailers); Content-MD5 is always
sent, which also satisfies buckets with Object Lock.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator, Mapping
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

DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
    }
)
THROTTLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "ConditionalRequestConflict",  # a concurrent conditional write: retry, then 412
    }
)
NO_LOCK_CONFIG = "ObjectLockConfigurationNotFoundError"


def diagnose(exc: BaseException) -> Diagnosis | None:
    from botocore import exceptions as bexc
    from urllib3 import exceptions as uexc

    if isinstance(exc, bexc.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        detail = f"{code or status} {error.get('Message', '')}".strip()
        if code == "NoSuchBucket":
            return Diagnosis(Fault.BUCKET_MISSING, detail)
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            return Diagnosis(Fault.OBJECT_MISSING, detail)
        if code == "PreconditionFailed" or status == 412:
            return Diagnosis(Fault.EXISTS, detail)
        if code in DENIED_CODES or status in (401, 403):
            return Diagnosis(Fault.DENIED, detail)
        if code in THROTTLE_CODES or status in (429, 409) or status >= 500:
            return Diagnosis(Fault.TRANSIENT, detail)
        return Diagnosis(Fault.OTHER, detail)
    if isinstance(exc, bexc.NoCredentialsError | bexc.PartialCredentialsError):
        return Diagnosis(
            Fault.DENIED, f"{exc}: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(exc, bexc.ConnectTimeoutError | bexc.EndpointConnectionError):
        return Diagnosis(Fault.UNREACHABLE, str(exc))
    if isinstance(
        exc,
        bexc.ReadTimeoutError
        | bexc.ConnectionClosedError
        | bexc.ResponseStreamingError
        | bexc.IncompleteReadError
        | uexc.HTTPError,
    ):
        return Diagnosis(Fault.TRANSIENT, str(exc))
    if isinstance(exc, bexc.BotoCoreError):
        return Diagnosis(Fault.OTHER, str(exc))
    return None


class S3Bucket(CloudBucket):
    """An S3 bucket (or a prefix in one) through boto3, configured as AWS users expect."""

    scheme = "s3"

    def __init__(
        self,
        url: str,
        table: Mapping[str, Any] | None = None,
        *,
        workers: int = READ_WORKERS,
        policy: RetryPolicy | None = None,
    ) -> None:
        import boto3
        import botocore.session
        from botocore import exceptions as bexc
        from botocore.config import Config
        from cloudpathlib import S3Client

        table = dict(table or {})
        super().__init__(url, workers)
        self.bucket = self.name
        env = os.environ
        endpoint = (
            env.get("AWS_ENDPOINT_URL_S3")
            or env.get("AWS_ENDPOINT_URL")
            or table.get("endpoint")
            or table.get("endpoint_url")
        )
        self.endpoint: str | None = str(endpoint) if endpoint else None
        profile = None
        if not env.get("AWS_PROFILE") and not env.get("AWS_DEFAULT_PROFILE"):
            profile = table.get("profile")
        session = botocore.session.Session(profile=str(profile) if profile else None)
        try:
            region = env.get("AWS_REGION") or session.get_config_variable("region")
        except bexc.ProfileNotFound as exc:
            raise UsageError(
                f"{self.url}: the AWS profile {exc.kwargs.get('profile')!r} is not in "
                "~/.aws/config or ~/.aws/credentials"
            ) from exc
        region = region or table.get("region") or ("us-east-1" if self.endpoint else None)
        if region:
            session.set_config_variable("region", str(region))
        self.region: str | None = str(region) if region else None
        if self.endpoint:
            # Never ask an EC2 metadata address for credentials when talking to a custom
            # endpoint: it is either unreachable (a 1 s stall per try) or the wrong account.
            session.get_component("credential_provider").remove("iam-role")
        style = table.get("addressing_style") or ("path" if self.endpoint else None)
        checksums = "when_required" if self.endpoint else None
        session.set_default_client_config(
            Config(
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                retries={"total_max_attempts": 1, "mode": "standard"},
                max_pool_connections=max(10, workers + 4),
                s3={"addressing_style": style} if style else None,
                request_checksum_calculation=checksums,
                response_checksum_validation=checksums,
            )
        )
        self.botocore_session: Any = session
        self.cloud_client = S3Client(
            boto3_session=boto3.Session(botocore_session=session),
            endpoint_url=self.endpoint,
            **cloudpathlib_cache(),
        )
        self.s3: Any = self.cloud_client.client  # the boto3 S3 client
        self.calls = Calls(self.url, "S3", self.endpoint, diagnose, policy)
        self._lock_config: tuple[bool, bool] | None = None

    def list(self, prefix: str = "rooms/") -> Iterator[ObjectInfo]:
        """One paginated listing of everything under ``prefix`` (no per-folder walk)."""
        base = f"{self.prefix}/" if self.prefix else ""
        full = base + prefix
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full, "MaxKeys": PAGE_SIZE}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.calls.run("list", partial(self.s3.list_objects_v2, **kwargs))
            for obj in page.get("Contents", ()):
                yield ObjectInfo(
                    key=obj["Key"][len(base) :],
                    size=int(obj["Size"]),
                    version=str(obj.get("ETag", "")).strip('"'),
                    modified_at=obj["LastModified"].timestamp(),
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def _get(self, full: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.bucket, Key=full)["Body"].read()
        return body

    def read(self, key: str) -> bytes:
        return self.calls.run("read", partial(self._get, self._full(key)), key=key)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        full = self._full(key)

        def head() -> bool:
            try:
                self.s3.head_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
            return True

        return self.calls.run("check", head, key=key)

    def create(self, key: str, data: bytes) -> None:
        full = self._full(key)
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        put = partial(
            self.s3.put_object,
            Bucket=self.bucket,
            Key=full,
            Body=data,
            IfNoneMatch="*",
            ContentMD5=md5,
            ContentType=content_type(key),
        )
        self.calls.run("create", put, key=key, on_retried_clash=lambda: self._get(full) == data)

    # -- immutability -------------------------------------------------------------------

    def _bucket_lock(self) -> tuple[bool, bool]:
        """(Object Lock enabled, default retention set) for the bucket, asked once."""
        if self._lock_config is None:
            from botocore.exceptions import ClientError

            def fetch() -> dict[str, Any]:
                try:
                    answer: dict[str, Any] = self.s3.get_object_lock_configuration(
                        Bucket=self.bucket
                    )
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") == NO_LOCK_CONFIG:
                        return {}
                    raise
                return answer

            config = self.calls.run("read the lock configuration of", fetch).get(
                "ObjectLockConfiguration", {}
            )
            enabled = config.get("ObjectLockEnabled") == "Enabled"
            default = enabled and bool(config.get("Rule", {}).get("DefaultRetention"))
            self._lock_config = (enabled, default)
        return self._lock_config

    def lock_status(self, key: str) -> LockStatus:
        """Object Lock state: the object's retention and legal hold, from ``head_object``
        (moto does not implement GetObjectRetention; head returns the same fields)."""
        _, default = self._bucket_lock()
        full = self._full(key)
        head = self.calls.run(
            "check the lock of", partial(self.s3.head_object, Bucket=self.bucket, Key=full), key=key
        )
        mode = head.get("ObjectLockMode")
        until = head.get("ObjectLockRetainUntilDate")
        hold = head.get("ObjectLockLegalHoldStatus") == "ON"
        retained = bool(mode) and until is not None and until > datetime.now(UTC)
        return LockStatus(
            key=key,
            locked=retained or hold,
            mode=str(mode) if retained else ("legal_hold" if hold else None),
            retain_until=until if retained else None,
            legal_hold=hold,
            bucket_default=default,
        )

    def ensure_locked_bucket(self, retention_days: int, mode: str = "GOVERNANCE") -> None:
        """Create the bucket with Object Lock (or turn it on for an existing one, which
        needs versioning) and set a default retention that every new object inherits.

        GOVERNANCE can be lifted by a principal with s3:BypassGovernanceRetention;
        COMPLIANCE cannot be shortened or removed by anyone until it expires.
        """
        from botocore.exceptions import ClientError

        mode = mode.upper()
        if mode not in ("GOVERNANCE", "COMPLIANCE") or retention_days < 1:
            raise UsageError("Object Lock needs mode GOVERNANCE or COMPLIANCE and days >= 1")

        def create() -> None:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "ObjectLockEnabledForBucket": True}
            if self.region and self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                self.s3.create_bucket(**kwargs)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

        self.calls.run("create", create)
        self._lock_config = None
        enabled, _ = self._bucket_lock()
        if not enabled:
            self.calls.run(
                "enable versioning on",
                partial(
                    self.s3.put_bucket_versioning,
                    Bucket=self.bucket,
                    VersioningConfiguration={"Status": "Enabled"},
                ),
            )
        rule = {"DefaultRetention": {"Mode": mode, "Days": retention_days}}
        self.calls.run(
            "set Object Lock on",
            partial(
                self.s3.put_object_lock_configuration,
                Bucket=self.bucket,
                ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule},
            ),
        )
        self._lock_config = None
        if not self._bucket_lock()[1]:
            raise UsageError(f"{self.url}: the server did not keep the Object Lock configuration")

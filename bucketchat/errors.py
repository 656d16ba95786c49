"""The exception tree of bucketchat: every error a user can meet, and its exit code.

    BucketchatError                 exit 1 unless a subclass says otherwise
    ├── UsageError                  exit 2: bad flags, bad input on the command line
    │   ├── MissingSetting          a command needs --bucket / --user / … and has none
    │   └── BadIdentifier           a room id, event id or key that is not well formed
    ├── ExternalError               exit 3: something outside bucketchat failed
    │   ├── BucketError             the bucket: missing, denied, unreachable
    │   │   ├── BucketNotFound
    │   │   ├── BucketAccessDenied
    │   │   ├── BucketUnreachable
    │   │   └── ObjectExists        a create-only write met an existing name
    │   ├── CacheBusy               another process holds the DuckDB cache
    │   ├── UploadFailed            events stay in the outbox for the next command
    │   ├── KeystoreError           no usable key store, wrong passphrase
    │   └── LoginError              the identity provider refused or was unreachable
    └── CacheError                  exit 1: the cache itself is inconsistent
        └── MigrationMismatch       an applied migration changed since it was applied

Lower layers raise these (``raise BucketUnreachable(...) from exc``) so that no driver
exception reaches a user; the CLI boundary prints ``str(error)`` as one line.
"""

from __future__ import annotations


class BucketchatError(Exception):
    """Base of every error bucketchat raises on purpose."""

    exit_code = 1


class UsageError(BucketchatError):
    exit_code = 2


class MissingSetting(UsageError):
    pass


class BadIdentifier(UsageError):
    pass


class ExternalError(BucketchatError):
    exit_code = 3


class BucketError(ExternalError):
    pass


class BucketNotFound(BucketError):
    pass


class BucketAccessDenied(BucketError):
    pass


class BucketUnreachable(BucketError):
    pass


class ObjectExists(BucketError):
    """A create-only write found the name taken; the writer picks another name."""


class CacheBusy(ExternalError):
    pass


class UploadFailed(ExternalError):
    pass


class KeystoreError(ExternalError):
    pass


class LoginError(ExternalError):
    pass


class CacheError(BucketchatError):
    pass


class MigrationMismatch(CacheError):
    pass

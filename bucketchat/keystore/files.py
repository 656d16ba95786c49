"""What the key stores share: private files (mode 0600, replaced atomically), base64, the
``Keystore`` protocol and the rule for user ids."""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

from bucketchat.errors import BadIdentifier, KeystoreError


class Keystore(Protocol):
    """Where device seeds are kept, one per user id."""

    description: str

    def get_seed(self, user_id: str) -> bytes | None: ...

    def set_seed(self, user_id: str, seed: bytes) -> None: ...

    def users(self) -> list[str]: ...


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with a file only its owner can read (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)  # the umask cannot widen it, but be explicit on every platform
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"cannot read the {what} {path}: {exc}") from exc


def write_json(path: Path, document: Any) -> None:
    write_private(path, json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def unb64(text: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(text).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise KeystoreError(f"{what} is damaged: {exc}") from exc


def check_user_id(user_id: str) -> str:
    """A sender id as PROTOCOL.md allows it: 1 to 256 characters, no control characters."""
    if not 1 <= len(user_id) <= 256 or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in user_id):
        raise BadIdentifier(
            f"{user_id!r} is not a user id (1 to 256 characters, no control characters)"
        )
    return user_id

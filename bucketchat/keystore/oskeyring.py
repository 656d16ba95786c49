"""Seeds in the OS keyring (Secret Service, macOS Keychain, Windows Credential Locker):
the only importer of ``keyring``, lazily, since its backend discovery is slow."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from bucketchat import config
from bucketchat.errors import KeystoreError
from bucketchat.keystore.files import b64, read_json, unb64, write_json

KEYRING_SERVICE = "bucketchat"
# Device keys sit under their own prefix in the service so tokens (auth.py) can share it.
KEYRING_KEY_PREFIX = "device-key:"


class OsKeyring:
    """Seeds in the OS keyring, one entry per user id under the service ``bucketchat``.

    Keyrings cannot enumerate their entries, so the user ids (never the seeds) are also
    listed in ``data_dir()/keyring_users.json``.
    """

    def __init__(self, backend: Any = None, index_path: Path | None = None) -> None:
        if backend is None:
            import keyring

            backend = keyring.get_keyring()
        self.backend = backend
        self.index_path = index_path or config.data_dir() / "keyring_users.json"
        self.description = f"the OS keyring ({_backend_name(backend)})"

    def get_seed(self, user_id: str) -> bytes | None:
        from keyring.errors import KeyringError

        try:
            text = self.backend.get_password(KEYRING_SERVICE, KEYRING_KEY_PREFIX + user_id)
        except KeyringError as exc:
            raise KeystoreError(
                f"the OS keyring refused to read the key of {user_id}: {exc}"
            ) from exc
        return None if text is None else unb64(text, f"the keyring entry of {user_id}")

    def set_seed(self, user_id: str, seed: bytes) -> None:
        from keyring.errors import KeyringError

        try:
            self.backend.set_password(KEYRING_SERVICE, KEYRING_KEY_PREFIX + user_id, b64(seed))
        except KeyringError as exc:
            raise KeystoreError(
                f"the OS keyring refused to store the key of {user_id}: {exc}"
            ) from exc
        known = set(self._index())
        if user_id not in known:
            write_json(self.index_path, {"users": sorted(known | {user_id})})

    def _index(self) -> list[str]:
        document = read_json(self.index_path, "keyring index")
        users = document.get("users", []) if isinstance(document, dict) else []
        return [str(user) for user in users]

    def users(self) -> list[str]:
        # An entry deleted behind our back (e.g. in Seahorse) drops out of the list.
        return [user for user in self._index() if self.get_seed(user) is not None]


def _backend_name(backend: Any) -> str:
    cls = type(backend)
    return f"{cls.__module__.removeprefix('keyring.backends.')}.{cls.__name__}"


def working_keyring() -> Any | None:
    """The OS keyring backend if one really stores secrets here, else None.

    keyring falls back to ``fail.Keyring`` (or ``null.Keyring``) where nothing runs, and a
    Secret Service may be registered yet locked or broken; only a round trip tells.
    """
    import keyring

    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken PYTHON_KEYRING_BACKEND or plugin
        return None
    module = type(backend).__module__
    if module.startswith(("keyring.backends.fail", "keyring.backends.null")):
        return None
    probe = f"probe:{secrets.token_hex(8)}"
    value = secrets.token_hex(8)
    try:
        backend.set_password(KEYRING_SERVICE, probe, value)
        try:
            ok = backend.get_password(KEYRING_SERVICE, probe) == value
        finally:
            backend.delete_password(KEYRING_SERVICE, probe)
    except Exception:  # KeyringError, or secretstorage/jeepney errors on a broken bus
        return None
    return backend if ok else None

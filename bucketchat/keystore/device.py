"""The device key: which store keeps it (the OS keyring, else the encrypted file), making,
loading and keeping it, the default identity, and what may be shown of a key.

``open_keystore`` prefers the OS keyring and falls back to a file encrypted with a
passphrase where no keyring runs. A plaintext file exists only for throwaway identities and
only when asked for by name (``BUCKETCHAT_KEYSTORE=plaintext``, or the demo's own folder).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bucketchat import config
from bucketchat.errors import KeystoreError, MissingSetting, UsageError
from bucketchat.keystore.encrypted import KEYSTORE_ENV, PASSPHRASE_ENV, FileKeystore
from bucketchat.keystore.files import Keystore, check_user_id, read_json, write_json
from bucketchat.keystore.oskeyring import OsKeyring, working_keyring

if TYPE_CHECKING:
    from bucketchat.protocol.signing import SigningKey

KEYSTORE_CHOICES = ("keyring", "file", "plaintext")

_announced = False


def keystore_path() -> Path:
    return config.data_dir() / "keystore.json"


def _passphrase(path: Path) -> str:
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env:
        return from_env
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        try:
            passphrase = getpass.getpass(f"Passphrase for {path}: ")
            if not path.exists() and getpass.getpass("Repeat it: ") != passphrase:
                raise KeystoreError("the two passphrases differ: nothing was stored")
        except EOFError as exc:
            raise KeystoreError("no passphrase given") from exc
        if not passphrase:
            raise KeystoreError("an empty passphrase cannot protect the key file")
        return passphrase
    raise KeystoreError(
        f"no OS keyring and no passphrase: set {PASSPHRASE_ENV} to encrypt the key file "
        f"{path} (or run in a terminal to be asked)"
    )


def open_keystore(announce: bool = True) -> Keystore:
    """The keystore to use: the OS keyring if one works, else the encrypted file.

    ``BUCKETCHAT_KEYSTORE=keyring|file|plaintext`` forces a choice. With ``announce`` the
    choice is said once per process, as one line on stderr.
    """
    choice = os.environ.get(KEYSTORE_ENV, "").strip().lower()
    if choice not in ("", "auto", *KEYSTORE_CHOICES):
        raise UsageError(
            f"{KEYSTORE_ENV}={choice!r} is not one of keyring, file, plaintext (or unset)"
        )
    store: Keystore
    if choice == "plaintext":
        store = FileKeystore(keystore_path(), None)
    elif choice == "file":
        store = FileKeystore(keystore_path(), _passphrase(keystore_path()))
    else:
        backend = working_keyring()
        if backend is not None:
            store = OsKeyring(backend)
        elif choice == "keyring":
            raise KeystoreError(
                f"{KEYSTORE_ENV}=keyring but no OS keyring works here: unlock or start one "
                f"(Secret Service, Keychain), or unset {KEYSTORE_ENV}"
            )
        else:
            store = FileKeystore(keystore_path(), _passphrase(keystore_path()))
    if announce:
        _announce(store)
    return store


def _announce(store: Keystore) -> None:
    global _announced
    if _announced:
        return
    _announced = True
    sys.stderr.write(f"bucketchat: keys are kept in {store.description}\n")
    sys.stderr.flush()


def load_device_key(user_id: str, store: Keystore | None = None) -> SigningKey:
    store = store if store is not None else open_keystore()
    seed = store.get_seed(user_id)
    if seed is None:
        raise KeystoreError(
            f"no device key for {user_id}: run `bucketchat keys init --user {user_id}`"
        )
    try:
        from bucketchat.protocol.signing import SigningKey

        return SigningKey(seed)
    except ValueError as exc:
        raise KeystoreError(
            f"the device key of {user_id} in {store.description} is damaged"
        ) from exc


def store_device_key(
    user_id: str, key: SigningKey, store: Keystore | None = None, replace: bool = False
) -> SigningKey:
    """Keep ``key`` as the device key of ``user_id``; never silently replace another one."""
    check_user_id(user_id)
    store = store if store is not None else open_keystore()
    existing = store.get_seed(user_id)
    if existing is not None and existing != key.seed and not replace:
        from bucketchat.protocol.signing import SigningKey

        raise UsageError(
            f"{user_id} already has a device key ({SigningKey(existing).public_key}): pass "
            "--force to replace it (events it signed stay valid; it can sign no more here)"
        )
    store.set_seed(user_id, key.seed)
    return key


def create_device_key(
    user_id: str, store: Keystore | None = None, replace: bool = False
) -> SigningKey:
    """Make a new device key for ``user_id``; an existing one is replaced only if asked."""
    from bucketchat.protocol.signing import SigningKey

    return store_device_key(user_id, SigningKey.generate(), store, replace=replace)


def identity_path() -> Path:
    return config.data_dir() / "identity.json"


def default_user() -> str | None:
    """The user of the last ``keys init`` (or login), if any."""
    document = read_json(identity_path(), "identity file")
    user = document.get("user_id") if isinstance(document, dict) else None
    return str(user) if user else None


def remember_user(user_id: str) -> None:
    write_json(identity_path(), {"user_id": check_user_id(user_id)})


def resolve_user(settings_user: str | None) -> str:
    """The user to act as: the setting (flag, env, config), else the remembered one."""
    user = settings_user or default_user()
    if not user:
        raise MissingSetting(
            "no user: pass --user ID, set BUCKETCHAT_USER, or make a key with "
            "`bucketchat keys init --user ID`"
        )
    return user


def describe_key(key: SigningKey) -> dict[str, str]:
    """What may be shown of a key: public key and fingerprint, never the seed."""
    from bucketchat.protocol.signing import fingerprint

    return {"public_key": key.public_key, "fingerprint": fingerprint(key.public_key)}

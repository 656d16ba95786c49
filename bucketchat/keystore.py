"""The device key and the trust store: OS keyring, the encrypted file fallback, pinned keys.

A device key is an Ed25519 seed kept per user id in a ``Keystore``. ``open_keystore``
prefers the OS keyring (Secret Service, macOS Keychain, Windows Credential Locker) and
falls back to a file encrypted with a passphrase (scrypt + AES-256-GCM) where no keyring
runs, e.g. on a server or in CI. A plaintext file exists only for throwaway identities and
only when asked for by name (``BUCKETCHAT_KEYSTORE=plaintext``, or the demo's own folder).

Pinned keys (``keys trust``) live in ``data_dir()/trusted_keys.json``, beside the keystore
and not in the cache, so a cache rebuild never forgets whom the user chose to trust.

This is the only module that imports ``keyring`` (lazily: its backend discovery is slow)
and it never imports rich or typer: notices are one plain line on stderr.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bucketchat import config
from bucketchat.errors import BadIdentifier, KeystoreError, MissingSetting, UsageError

if TYPE_CHECKING:
    from bucketchat.protocol.signing import SigningKey

KEYRING_SERVICE = "bucketchat"
# Device keys sit under their own prefix in the service so tokens (auth.py) can share it.
KEYRING_KEY_PREFIX = "device-key:"
KEYSTORE_ENV = "BUCKETCHAT_KEYSTORE"
PASSPHRASE_ENV = "BUCKETCHAT_PASSPHRASE"
KEYSTORE_CHOICES = ("keyring", "file", "plaintext")

FILE_FORMAT = "bucketchat-keystore"
FILE_VERSION = 1
# scrypt cost for new files: 2**15 * 8 * 128 bytes = 32 MiB and ~0.1 s, OWASP's minimum.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_NONCE_BYTES = 12
_SALT_BYTES = 16

_announced = False


class Keystore(Protocol):
    """Where device seeds are kept, one per user id."""

    description: str

    def get_seed(self, user_id: str) -> bytes | None: ...

    def set_seed(self, user_id: str, seed: bytes) -> None: ...

    def users(self) -> list[str]: ...


# ---------------------------------------------------------------------------- small files


def _write_private(path: Path, data: bytes) -> None:
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


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"cannot read the {what} {path}: {exc}") from exc


def _write_json(path: Path, document: Any) -> None:
    _write_private(path, json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
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


# -------------------------------------------------------------------------- file keystore


class FileKeystore:
    """Seeds in one JSON file, encrypted as a whole with a passphrase (scrypt + AES-GCM).

    The whole map is one ciphertext so the file reveals neither user ids nor how many there
    are; the header (format, version, KDF parameters) is the AEAD's associated data, so a
    tampered header fails like a wrong passphrase. ``passphrase=None`` means plaintext and
    is only ever chosen explicitly.
    """

    def __init__(self, path: Path, passphrase: str | None, *, scrypt_n: int = SCRYPT_N) -> None:
        self.path = Path(path)
        self.passphrase = passphrase
        if passphrase is not None and not passphrase:
            raise KeystoreError("the key file passphrase is empty")
        self.description = (
            f"the encrypted key file {self.path}"
            if passphrase is not None
            else f"the UNENCRYPTED key file {self.path}"
        )
        self._kdf: dict[str, Any] = {
            "name": "scrypt",
            "salt": _b64(os.urandom(_SALT_BYTES)),
            "n": scrypt_n,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
        }
        self._key: bytes | None = None
        self._seeds: dict[str, str] = self._load()

    # The file's header is everything but the ciphertext; it is also the AEAD's AAD.
    def _header(self) -> dict[str, Any]:
        header: dict[str, Any] = {"format": FILE_FORMAT, "version": FILE_VERSION}
        if self.passphrase is not None:
            header["kdf"] = self._kdf
            header["cipher"] = "AES-256-GCM"
        return header

    @staticmethod
    def _aad(header: dict[str, Any]) -> bytes:
        return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def _derive(self) -> bytes:
        if self._key is None:
            from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

            assert self.passphrase is not None
            kdf = self._kdf
            try:
                self._key = Scrypt(
                    salt=_unb64(kdf["salt"], f"the key file {self.path}"),
                    length=32,
                    n=int(kdf["n"]),
                    r=int(kdf["r"]),
                    p=int(kdf["p"]),
                ).derive(self.passphrase.encode("utf-8"))
            except (KeyError, TypeError, ValueError) as exc:
                raise KeystoreError(f"the key file {self.path} has bad KDF settings") from exc
        return self._key

    def _load(self) -> dict[str, str]:
        document = _read_json(self.path, "key file")
        if document is None:
            return {}
        if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
            raise KeystoreError(f"{self.path} is not a bucketchat key file")
        if document.get("version") != FILE_VERSION:
            raise KeystoreError(
                f"the key file {self.path} has version {document.get('version')!r}; "
                "this bucketchat reads version 1: upgrade bucketchat"
            )
        encrypted = "ciphertext" in document
        if self.passphrase is None:
            if encrypted:
                raise KeystoreError(
                    f"the key file {self.path} is encrypted: set {PASSPHRASE_ENV} "
                    f"and unset {KEYSTORE_ENV}=plaintext"
                )
            seeds = document.get("seeds")
        else:
            if not encrypted:
                raise KeystoreError(
                    f"the key file {self.path} is not encrypted: use it with "
                    f"{KEYSTORE_ENV}=plaintext, or move it away"
                )
            seeds = self._decrypt(document)
        if not isinstance(seeds, dict):
            raise KeystoreError(f"the key file {self.path} is damaged")
        return {str(user): str(seed) for user, seed in seeds.items()}

    def _decrypt(self, document: dict[str, Any]) -> Any:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        kdf = document.get("kdf")
        if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
            raise KeystoreError(f"the key file {self.path} has an unknown KDF")
        self._kdf = kdf
        header = {k: v for k, v in document.items() if k not in ("nonce", "ciphertext")}
        nonce = _unb64(document.get("nonce"), f"the key file {self.path}")
        ciphertext = _unb64(document.get("ciphertext"), f"the key file {self.path}")
        try:
            plain = AESGCM(self._derive()).decrypt(nonce, ciphertext, self._aad(header))
        except (InvalidTag, ValueError) as exc:
            raise KeystoreError(
                f"wrong passphrase for the key file {self.path} (check {PASSPHRASE_ENV})"
            ) from exc
        return json.loads(plain)

    def _save(self) -> None:
        header = self._header()
        if self.passphrase is None:
            _write_json(self.path, {**header, "seeds": self._seeds})
            return
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps(self._seeds, sort_keys=True).encode("utf-8")
        ciphertext = AESGCM(self._derive()).encrypt(nonce, plain, self._aad(header))
        _write_json(self.path, {**header, "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)})

    def get_seed(self, user_id: str) -> bytes | None:
        text = self._seeds.get(user_id)
        return None if text is None else _unb64(text, f"the key of {user_id} in {self.path}")

    def set_seed(self, user_id: str, seed: bytes) -> None:
        self._seeds[user_id] = _b64(seed)
        self._save()

    def users(self) -> list[str]:
        return sorted(self._seeds)


# ---------------------------------------------------------------------------- OS keyring


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
        return None if text is None else _unb64(text, f"the keyring entry of {user_id}")

    def set_seed(self, user_id: str, seed: bytes) -> None:
        from keyring.errors import KeyringError

        try:
            self.backend.set_password(KEYRING_SERVICE, KEYRING_KEY_PREFIX + user_id, _b64(seed))
        except KeyringError as exc:
            raise KeystoreError(
                f"the OS keyring refused to store the key of {user_id}: {exc}"
            ) from exc
        known = set(self._index())
        if user_id not in known:
            _write_json(self.index_path, {"users": sorted(known | {user_id})})

    def _index(self) -> list[str]:
        document = _read_json(self.index_path, "keyring index")
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


# ------------------------------------------------------------------------- choosing one


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


# --------------------------------------------------------------------------- device keys


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


# ------------------------------------------------------------------------ default identity


def identity_path() -> Path:
    return config.data_dir() / "identity.json"


def default_user() -> str | None:
    """The user of the last ``keys init`` (or login), if any."""
    document = _read_json(identity_path(), "identity file")
    user = document.get("user_id") if isinstance(document, dict) else None
    return str(user) if user else None


def remember_user(user_id: str) -> None:
    _write_json(identity_path(), {"user_id": check_user_id(user_id)})


def resolve_user(settings_user: str | None) -> str:
    """The user to act as: the setting (flag, env, config), else the remembered one."""
    user = settings_user or default_user()
    if not user:
        raise MissingSetting(
            "no user: pass --user ID, set BUCKETCHAT_USER, or make a key with "
            "`bucketchat keys init --user ID`"
        )
    return user


# -------------------------------------------------------------------------- pinned keys


def trusted_keys_path() -> Path:
    return config.data_dir() / "trusted_keys.json"


def pinned_keys() -> dict[str, list[str]]:
    """Sender id → the public keys the user pinned for it (``keys trust``)."""
    document = _read_json(trusted_keys_path(), "trust store")
    raw = document.get("pinned", {}) if isinstance(document, dict) else {}
    if not isinstance(raw, dict):
        raise KeystoreError(f"the trust store {trusted_keys_path()} is damaged")
    return {str(sender): [str(key) for key in keys] for sender, keys in sorted(raw.items())}


def pin_key(sender_id: str, public_key: str) -> bool:
    """Pin ``public_key`` for ``sender_id``; True if it was new. Weak keys are refused."""
    check_user_id(sender_id)
    from bucketchat.protocol.signing import public_key_problem

    problem = public_key_problem(public_key)
    if problem is not None:
        raise BadIdentifier(f"cannot pin that key for {sender_id}: {problem}")
    pinned = pinned_keys()
    keys = pinned.setdefault(sender_id, [])
    if public_key in keys:
        return False
    keys.append(public_key)
    _write_json(trusted_keys_path(), {"version": 1, "pinned": pinned})
    return True


# ------------------------------------------------------------------ moving a key elsewhere


def export_private_pem(key: SigningKey, passphrase: bytes) -> bytes:
    """The key as passphrase-encrypted PKCS#8 PEM (readable by OpenSSL and most tools)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not passphrase:
        raise UsageError("an exported private key needs a non-empty passphrase")
    private = Ed25519PrivateKey.from_private_bytes(key.seed)
    return private.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.BestAvailableEncryption(passphrase),
    )


def import_private_pem(data: bytes, passphrase: bytes) -> SigningKey:
    """Read a key written by ``export_private_pem`` (any encrypted PKCS#8 Ed25519 PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        private = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError as exc:  # not encrypted, or encrypted and no passphrase
        raise KeystoreError(f"cannot read the key file: {exc}") from exc
    except ValueError as exc:
        raise KeystoreError(
            "cannot read the key file: wrong passphrase, or not a PKCS#8 PEM private key"
        ) from exc
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for odd key types
        raise UsageError(f"cannot read the key file: {exc}") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise UsageError("the key file holds no Ed25519 key")
    from bucketchat.protocol.signing import SigningKey

    return SigningKey(private.private_bytes_raw())


def describe_key(key: SigningKey) -> dict[str, str]:
    """What may be shown of a key: public key and fingerprint, never the seed."""
    from bucketchat.protocol.signing import fingerprint

    return {"public_key": key.public_key, "fingerprint": fingerprint(key.public_key)}

"""The encrypted key file: seeds in one JSON file, encrypted with a passphrase (scrypt +
AES-256-GCM), for machines where no OS keyring runs (servers, CI)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bucketchat.errors import KeystoreError
from bucketchat.keystore.files import b64, read_json, unb64, write_json

PASSPHRASE_ENV = "BUCKETCHAT_PASSPHRASE"
KEYSTORE_ENV = "BUCKETCHAT_KEYSTORE"
FILE_FORMAT = "bucketchat-keystore"
FILE_VERSION = 1
# scrypt cost for new files: 2**15 * 8 * 128 bytes = 32 MiB and ~0.1 s, OWASP's minimum.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_NONCE_BYTES = 12
_SALT_BYTES = 16


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
            "salt": b64(os.urandom(_SALT_BYTES)),
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
                    salt=unb64(kdf["salt"], f"the key file {self.path}"),
                    length=32,
                    n=int(kdf["n"]),
                    r=int(kdf["r"]),
                    p=int(kdf["p"]),
                ).derive(self.passphrase.encode("utf-8"))
            except (KeyError, TypeError, ValueError) as exc:
                raise KeystoreError(f"the key file {self.path} has bad KDF settings") from exc
        return self._key

    def _load(self) -> dict[str, str]:
        document = read_json(self.path, "key file")
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
        nonce = unb64(document.get("nonce"), f"the key file {self.path}")
        ciphertext = unb64(document.get("ciphertext"), f"the key file {self.path}")
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
            write_json(self.path, {**header, "seeds": self._seeds})
            return
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps(self._seeds, sort_keys=True).encode("utf-8")
        ciphertext = AESGCM(self._derive()).encrypt(nonce, plain, self._aad(header))
        write_json(self.path, {**header, "nonce": b64(nonce), "ciphertext": b64(ciphertext)})

    def get_seed(self, user_id: str) -> bytes | None:
        text = self._seeds.get(user_id)
        return None if text is None else unb64(text, f"the key of {user_id} in {self.path}")

    def set_seed(self, user_id: str, seed: bytes) -> None:
        self._seeds[user_id] = b64(seed)
        self._save()

    def users(self) -> list[str]:
        return sorted(self._seeds)

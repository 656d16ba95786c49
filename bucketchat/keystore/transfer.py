"""Moving a device key to another device: passphrase-encrypted PKCS#8 PEM."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bucketchat.errors import KeystoreError, UsageError

if TYPE_CHECKING:
    from bucketchat.protocol.signing import SigningKey


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

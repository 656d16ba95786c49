"""Ed25519 signing and strict verification (PROTOCOL.md §4).

Verification goes through libsodium (PyNaCl), which rejects small-order and
non-canonical points and ``S >= L``; OpenSSL through ``cryptography`` accepts a
small-order key with a universal signature and must never be the verifier. Malformed
input is a ``False``/reason, never an exception.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from nacl import bindings
from nacl.exceptions import BadSignatureError, CryptoError

SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
SEED_BYTES = 32


def strict_b64decode(text: str, length: int) -> bytes | None:
    """Decode canonical padded standard base64 of exactly ``length`` bytes, else None."""
    try:  # what base64.b64decode(validate=True) calls, without its wrapper (once an event)
        raw = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError, TypeError):
        return None
    if len(raw) != length or binascii.b2a_base64(raw, newline=False).decode("ascii") != text:
        return None
    return raw


def public_key_problem(public_key: str) -> str | None:
    """Why a published key is unusable (``weak_key``), or None for a valid prime-order point."""
    raw = strict_b64decode(public_key, PUBLIC_KEY_BYTES)
    if raw is None:
        return "not canonical base64 of 32 bytes"
    if not bindings.crypto_core_ed25519_is_valid_point(raw):
        return "not a valid point of prime order"
    return None


def verify(public_key: str, signature: str, message: bytes) -> bool:
    raw_key = strict_b64decode(public_key, PUBLIC_KEY_BYTES)
    raw_sig = strict_b64decode(signature, SIGNATURE_BYTES)
    if raw_key is None or raw_sig is None:
        return False
    return verify_raw(raw_key, raw_sig, message)


def verify_raw(raw_key: bytes, raw_sig: bytes, message: bytes) -> bool:
    """Verify with already-decoded bytes; the key must have passed ``public_key_problem``."""
    try:
        bindings.crypto_sign_open(raw_sig + message, raw_key)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True


def fingerprint(public_key: str) -> str:
    """Hex sha256 of the raw key: names a device (file names use its first six digits)."""
    raw = strict_b64decode(public_key, PUBLIC_KEY_BYTES)
    return hashlib.sha256(raw if raw is not None else public_key.encode()).hexdigest()


@dataclass(frozen=True)
class SigningKey:
    """A device's Ed25519 key pair; ``seed`` is the 32-byte private seed."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise ValueError("an Ed25519 seed has 32 bytes")

    @classmethod
    def generate(cls) -> SigningKey:
        import os

        return cls(os.urandom(SEED_BYTES))

    @property
    def public_raw(self) -> bytes:
        public, _secret = bindings.crypto_sign_seed_keypair(self.seed)
        return bytes(public)

    @property
    def public_key(self) -> str:
        return base64.b64encode(self.public_raw).decode("ascii")

    def sign(self, message: bytes) -> str:
        _public, secret = bindings.crypto_sign_seed_keypair(self.seed)
        signed = bindings.crypto_sign(message, secret)
        return base64.b64encode(signed[:SIGNATURE_BYTES]).decode("ascii")

    def __repr__(self) -> str:  # never show the seed, not even in --debug tracebacks
        return f"SigningKey(public_key={self.public_key!r})"

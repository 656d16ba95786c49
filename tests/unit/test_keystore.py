"""The keystore: encrypted file fallback, device keys, pinned keys, PKCS#8 export."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bucketchat import config, keystore
from bucketchat.errors import BadIdentifier, KeystoreError, MissingSetting, UsageError
from bucketchat.keystore import device as keystore_device
from bucketchat.protocol.signing import SigningKey, verify

SMALL_ORDER_ZERO = base64.b64encode(bytes(32)).decode()  # 'AAAA…=': order 4
SMALL_ORDER_IDENTITY = base64.b64encode(bytes.fromhex("01" + "00" * 31)).decode()  # the identity
FAST_N = 2**10  # scrypt cost for tests that open many files


@pytest.fixture(autouse=True)
def fresh_announcement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keystore_device, "_announced", False)
    monkeypatch.delenv("BUCKETCHAT_KEYSTORE", raising=False)


class NotATerminal:
    def isatty(self) -> bool:
        return False


@pytest.fixture
def seed() -> bytes:
    return bytes(range(32))


# ------------------------------------------------------------------------- FileKeystore


def test_file_keystore_round_trip_is_encrypted(tmp_path: Path, seed: bytes) -> None:
    path = tmp_path / "keystore.json"
    store = keystore.FileKeystore(path, "correct horse", scrypt_n=FAST_N)
    store.set_seed("alice@example.com", seed)

    raw = path.read_bytes()
    assert b"alice" not in raw  # neither the user ids…
    assert base64.b64encode(seed) not in raw and seed not in raw  # …nor the seeds show
    document = json.loads(raw)
    assert document["kdf"]["name"] == "scrypt" and document["cipher"] == "AES-256-GCM"

    again = keystore.FileKeystore(path, "correct horse")
    assert again.get_seed("alice@example.com") == seed
    assert again.get_seed("bob@example.com") is None
    assert again.users() == ["alice@example.com"]
    assert "encrypted key file" in again.description


def test_each_save_uses_a_fresh_nonce(tmp_path: Path, seed: bytes) -> None:
    path = tmp_path / "keystore.json"
    store = keystore.FileKeystore(path, "pw", scrypt_n=FAST_N)
    store.set_seed("a", seed)
    first = json.loads(path.read_bytes())["nonce"]
    store.set_seed("b", seed)
    assert json.loads(path.read_bytes())["nonce"] != first
    assert keystore.FileKeystore(path, "pw").users() == ["a", "b"]


def test_wrong_passphrase_is_one_line_keystore_error(tmp_path: Path, seed: bytes) -> None:
    path = tmp_path / "keystore.json"
    keystore.FileKeystore(path, "right", scrypt_n=FAST_N).set_seed("alice", seed)
    with pytest.raises(KeystoreError, match="wrong passphrase") as caught:
        keystore.FileKeystore(path, "wrong")
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 3


def test_tampered_header_fails_like_a_wrong_passphrase(tmp_path: Path, seed: bytes) -> None:
    path = tmp_path / "keystore.json"
    keystore.FileKeystore(path, "pw", scrypt_n=FAST_N).set_seed("alice", seed)
    document = json.loads(path.read_bytes())
    document["cipher"] = "AES-256-GCM "  # bound as associated data
    path.write_text(json.dumps(document))
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        keystore.FileKeystore(path, "pw")


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_key_file_mode_is_0600(tmp_path: Path, seed: bytes) -> None:
    path = tmp_path / "nested" / "keystore.json"
    old = os.umask(0)  # the mode must not depend on the umask
    try:
        keystore.FileKeystore(path, "pw", scrypt_n=FAST_N).set_seed("alice", seed)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["keystore.json"]  # no temp file left


def test_plaintext_only_when_asked(tmp_path: Path, seed: bytes) -> None:
    path = tmp_path / "keystore.json"
    plain = keystore.FileKeystore(path, None)
    plain.set_seed("demo", seed)
    assert json.loads(path.read_bytes())["seeds"] == {"demo": base64.b64encode(seed).decode()}
    assert "UNENCRYPTED" in plain.description
    # A passphrase never silently reads (or rewrites) a plaintext file…
    with pytest.raises(KeystoreError, match="not encrypted"):
        keystore.FileKeystore(path, "pw")
    # …and no passphrase never reads an encrypted one.
    other = tmp_path / "enc.json"
    keystore.FileKeystore(other, "pw", scrypt_n=FAST_N).set_seed("a", seed)
    with pytest.raises(KeystoreError, match="is encrypted"):
        keystore.FileKeystore(other, None)
    with pytest.raises(KeystoreError, match="empty"):
        keystore.FileKeystore(tmp_path / "x.json", "")


def test_open_keystore_without_keyring_uses_the_encrypted_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = keystore.open_keystore()
    assert isinstance(store, keystore.FileKeystore)
    assert store.passphrase == "test-passphrase"
    assert store.path == keystore.keystore_path()
    keystore.open_keystore()
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # said once per process
    assert "encrypted key file" in err


def test_open_keystore_plaintext_is_an_explicit_opt_in(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BUCKETCHAT_PASSPHRASE")
    monkeypatch.setattr(sys, "stdin", NotATerminal())  # no prompt
    with pytest.raises(KeystoreError, match="no OS keyring and no passphrase"):
        keystore.open_keystore()
    monkeypatch.setenv("BUCKETCHAT_KEYSTORE", "plaintext")
    store = keystore.open_keystore(announce=False)
    assert isinstance(store, keystore.FileKeystore) and store.passphrase is None
    assert capsys.readouterr().err == ""


def test_open_keystore_forced_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUCKETCHAT_KEYSTORE", "keyring")
    with pytest.raises(KeystoreError, match="no OS keyring works"):
        keystore.open_keystore(announce=False)
    monkeypatch.setenv("BUCKETCHAT_KEYSTORE", "file")
    assert isinstance(keystore.open_keystore(announce=False), keystore.FileKeystore)
    monkeypatch.setenv("BUCKETCHAT_KEYSTORE", "vault")
    with pytest.raises(UsageError, match="not one of"):
        keystore.open_keystore(announce=False)


# --------------------------------------------------------------------------- OsKeyring


class MemoryBackend:
    """Stands in for a keyring backend; the real one is in tests/integration."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, name: str) -> str | None:
        return self.entries.get((service, name))

    def set_password(self, service: str, name: str, value: str) -> None:
        self.entries[(service, name)] = value

    def delete_password(self, service: str, name: str) -> None:
        del self.entries[(service, name)]


def test_os_keyring_keeps_seeds_in_the_backend_and_ids_in_the_index(seed: bytes) -> None:
    backend = MemoryBackend()
    store = keystore.OsKeyring(backend)
    store.set_seed("alice@example.com", seed)
    store.set_seed("bob@example.com", seed)
    assert store.get_seed("alice@example.com") == seed
    assert ("bucketchat", "device-key:alice@example.com") in backend.entries
    assert store.users() == ["alice@example.com", "bob@example.com"]
    index = store.index_path.read_text()
    assert "alice@example.com" in index and base64.b64encode(seed).decode() not in index
    del backend.entries[("bucketchat", "device-key:bob@example.com")]
    assert store.users() == ["alice@example.com"]


def test_working_keyring_refuses_the_fail_backend() -> None:
    assert keystore.working_keyring() is None  # conftest sets keyring.backends.fail.Keyring


# --------------------------------------------------------------------- device keys


def test_create_load_and_refuse_to_replace(tmp_path: Path) -> None:
    store = keystore.FileKeystore(tmp_path / "k.json", "pw", scrypt_n=FAST_N)
    with pytest.raises(KeystoreError, match=r"keys init --user alice@example.com"):
        keystore.load_device_key("alice@example.com", store)
    key = keystore.create_device_key("alice@example.com", store)
    loaded = keystore.load_device_key("alice@example.com", store)
    assert loaded == key
    assert verify(loaded.public_key, loaded.sign(b"hi"), b"hi")
    with pytest.raises(UsageError, match="--force"):
        keystore.create_device_key("alice@example.com", store)
    assert keystore.load_device_key("alice@example.com", store) == key
    replaced = keystore.create_device_key("alice@example.com", store, replace=True)
    assert replaced != key
    assert keystore.load_device_key("alice@example.com", store) == replaced
    # storing the very same key again is not a replacement
    keystore.store_device_key("alice@example.com", replaced, store)


def test_user_ids_follow_the_protocol(tmp_path: Path) -> None:
    store = keystore.FileKeystore(tmp_path / "k.json", "pw", scrypt_n=FAST_N)
    for bad in ("", "a\nb", "x" * 257):
        with pytest.raises(BadIdentifier):
            keystore.create_device_key(bad, store)


def test_default_and_resolved_user(monkeypatch: pytest.MonkeyPatch) -> None:
    assert keystore.default_user() is None
    with pytest.raises(MissingSetting, match="keys init --user"):
        keystore.resolve_user(None)
    keystore.remember_user("alice@example.com")
    assert keystore.default_user() == "alice@example.com"
    assert keystore.resolve_user(None) == "alice@example.com"
    assert keystore.resolve_user("bob@example.com") == "bob@example.com"


# ------------------------------------------------------------------------ pinned keys


def test_pin_key_is_idempotent_and_survives_in_the_data_dir(vector_keys: dict[str, Any]) -> None:
    bob = vector_keys["bob@example.com"]["public_key"]
    assert keystore.pinned_keys() == {}
    assert keystore.pin_key("bob@example.com", bob) is True
    assert keystore.pin_key("bob@example.com", bob) is False
    assert keystore.pinned_keys() == {"bob@example.com": [bob]}
    assert keystore.trusted_keys_path().parent == config.data_dir()


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (SMALL_ORDER_ZERO, "prime order"),
        (SMALL_ORDER_IDENTITY, "prime order"),
        ("AAAA", "32 bytes"),
        ("not base64!", "32 bytes"),
    ],
)
def test_pin_key_refuses_weak_keys(key: str, reason: str) -> None:
    with pytest.raises(BadIdentifier, match=reason) as caught:
        keystore.pin_key("mallory@example.com", key)
    assert caught.value.exit_code == 2
    assert keystore.pinned_keys() == {}


# --------------------------------------------------------------------------- PKCS#8


def test_pkcs8_round_trip(vector_keys: dict[str, Any]) -> None:
    alice = vector_keys["alice@example.com"]
    key = SigningKey(bytes.fromhex(alice["seed_hex"]))
    pem = keystore.export_private_pem(key, b"move me")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert bytes.fromhex(alice["seed_hex"]) not in pem
    back = keystore.import_private_pem(pem, b"move me")
    assert back == key and back.public_key == alice["public_key"]
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        keystore.import_private_pem(pem, b"not me")
    with pytest.raises(UsageError):
        keystore.export_private_pem(key, b"")


def test_pkcs8_interoperates_with_openssl(tmp_path: Path) -> None:
    """The exported file is standard PKCS#8: OpenSSL reads it and derives the same key."""
    key = SigningKey(bytes(range(32)))
    pem = tmp_path / "key.pem"
    pem.write_bytes(keystore.export_private_pem(key, b"pw"))
    try:
        result = subprocess.run(
            [
                "openssl",
                "pkey",
                "-in",
                str(pem),
                "-passin",
                "pass:pw",
                "-pubout",
                "-outform",
                "DER",
            ],
            capture_output=True,
            check=True,
        )
    except FileNotFoundError:
        pytest.skip("no openssl command line tool")
    assert result.stdout[-32:] == key.public_raw


def test_import_refuses_other_key_types() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(UsageError, match="no Ed25519 key"):
        keystore.import_private_pem(other, b"pw")
    with pytest.raises(KeystoreError):
        keystore.import_private_pem(b"garbage", b"pw")


def test_signing_key_repr_hides_the_seed(seed: bytes) -> None:
    key = SigningKey(seed)
    assert seed.hex() not in repr(key) and base64.b64encode(seed).decode() not in repr(key)
    assert keystore.describe_key(key)["public_key"] == key.public_key


def test_keystore_imports_no_ui_and_keyring_lazily() -> None:
    code = (
        "import sys, bucketchat.keystore; "
        "print(sorted(m for m in ('rich', 'typer', 'keyring') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"

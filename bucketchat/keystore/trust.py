"""Pinned keys (``keys trust``): ``data_dir()/trusted_keys.json``, beside the keystore and
not in the cache, so a cache rebuild never forgets whom the user chose to trust."""

from __future__ import annotations

from pathlib import Path

from bucketchat import config
from bucketchat.errors import BadIdentifier, KeystoreError
from bucketchat.keystore.files import check_user_id, read_json, write_json


def trusted_keys_path() -> Path:
    return config.data_dir() / "trusted_keys.json"


def pinned_keys() -> dict[str, list[str]]:
    """Sender id → the public keys the user pinned for it (``keys trust``)."""
    document = read_json(trusted_keys_path(), "trust store")
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
    write_json(trusted_keys_path(), {"version": 1, "pinned": pinned})
    return True

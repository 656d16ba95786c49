"""Attested keys (PROTOCOL.md §5) through a real sync: ID tokens signed by an issuer key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from bucketchat.attestation import AttestationVerifier, IssuerKeys, key_nonce
from bucketchat.cache import open_cache
from bucketchat.config import OidcIssuer
from bucketchat.session import sync_bucket
from bucketchat.storage import LocalBucket
from tests.chatbuilder import ChatBuilder

ISSUER = "https://login.example.test"
CLIENT = "bucketchat-cli"


@pytest.fixture()
def issuer_key(tmp_path: Path) -> tuple[RSAKey, IssuerKeys]:
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
    store = IssuerKeys(tmp_path / "issuer-keys", fetch=False)
    store.remember(ISSUER, {"keys": [key.as_dict(private=False)]})
    return key, store


def token(key: RSAKey, **claims: Any) -> str:
    body = {"iss": ISSUER, "aud": CLIENT, "iat": 1_767_225_600, "exp": 1_767_229_200, **claims}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, body, key)


def attested_join(builder: ChatBuilder, sender: str, room: str, id_token: str) -> dict[str, Any]:
    device = builder.device(sender)
    device.joined.add(room)
    content = {
        "membership": "join",
        "public_key": device.key.public_key,
        "attestation": {"type": "oidc", "issuer": ISSUER, "id_token": id_token},
    }
    return builder.event(sender, room, "m.room.member", content)


def sync_trust(root: Path, cache: Path, store: IssuerKeys) -> dict[str, Any]:
    verifier = AttestationVerifier([OidcIssuer(ISSUER, (CLIENT,))], store)
    sync_bucket(LocalBucket(root), cache, check_attestation=verifier)
    with open_cache(cache, read_only=True) as opened:
        trust = dict(
            opened.rows(
                "SELECT sender_id, any_value(trust) FROM events WHERE type = 'm.room.message' "
                "GROUP BY sender_id"
            )
        )
        kinds = [row[0] for row in opened.rows("SELECT kind FROM findings")]
    return {"trust": trust, "findings": kinds}


def test_a_valid_attestation_makes_the_key_attested(tmp_path: Path, issuer_key: Any) -> None:
    key, store = issuer_key
    builder = ChatBuilder(tmp_path / "bucket")
    alice = builder.device("alice@example.com")
    id_token = token(
        key, email="alice@example.com", email_verified=True, nonce=key_nonce(alice.key.public_key)
    )
    attested_join(builder, "alice@example.com", "room", id_token)
    builder.message("alice@example.com", "room", "signed and attested")
    builder.flush()
    outcome = sync_trust(tmp_path / "bucket", tmp_path / "cache.duckdb", store)
    assert outcome["trust"] == {"alice@example.com": "attested"}
    assert "attestation_invalid" not in outcome["findings"]


@pytest.mark.parametrize(
    "claims, why",
    [
        ({"email": "alice@example.com", "nonce": "wrong"}, "nonce"),
        ({"email": "mallory@example.com"}, "identity"),
        ({"email": "alice@example.com", "aud": "another-client"}, "audience"),
        ({"email": "alice@example.com", "email_verified": False}, "unverified email"),
        ({"email": "alice@example.com", "iat": 1_900_000_000}, "issued after the event"),
    ],
)
def test_a_failing_attestation_is_reported_and_the_key_judged_without_it(
    tmp_path: Path, issuer_key: Any, claims: dict[str, Any], why: str
) -> None:
    key, store = issuer_key
    builder = ChatBuilder(tmp_path / "bucket")
    alice = builder.device("alice@example.com")
    claims = {"nonce": key_nonce(alice.key.public_key), **claims}
    attested_join(builder, "alice@example.com", "room", token(key, **claims))
    builder.message("alice@example.com", "room", "hello")
    builder.flush()
    outcome = sync_trust(tmp_path / "bucket", tmp_path / "cache.duckdb", store)
    assert outcome["findings"].count("attestation_invalid") == 1, why
    assert outcome["trust"] == {"alice@example.com": "tofu"}, why


def test_a_token_signed_by_another_key_does_not_verify(tmp_path: Path, issuer_key: Any) -> None:
    _, store = issuer_key
    forger = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
    builder = ChatBuilder(tmp_path / "bucket")
    alice = builder.device("alice@example.com")
    forged = token(forger, email="alice@example.com", nonce=key_nonce(alice.key.public_key))
    attested_join(builder, "alice@example.com", "room", forged)
    builder.message("alice@example.com", "room", "hello")
    builder.flush()
    outcome = sync_trust(tmp_path / "bucket", tmp_path / "cache.duckdb", store)
    assert "attestation_invalid" in outcome["findings"]


def test_an_attested_key_outranks_an_earlier_first_use(tmp_path: Path, issuer_key: Any) -> None:
    """Mallory introduces a key for alice first; alice's attested key still wins."""
    key, store = issuer_key
    builder = ChatBuilder(tmp_path / "bucket")
    builder.device("alice@example.com")
    squatter = ChatBuilder(tmp_path / "bucket", start_ms=builder.clock)
    squatter.devices["alice@example.com"] = squatter.device("alice-squatter")
    squatter.devices["alice@example.com"].sender_id = "alice@example.com"
    squatter.join("alice@example.com", "room")
    squatter.message("alice@example.com", "room", "I am alice, trust me")
    squatter.flush()
    builder.tick(60_000)
    real = builder.device("alice@example.com")
    id_token = token(key, email="alice@example.com", nonce=key_nonce(real.key.public_key))
    attested_join(builder, "alice@example.com", "room", id_token)
    builder.message("alice@example.com", "room", "the real alice")
    builder.flush()
    cache = tmp_path / "cache.duckdb"
    sync_trust(tmp_path / "bucket", cache, store)
    with open_cache(cache, read_only=True) as opened:
        rows = dict(
            opened.rows(
                "SELECT body, trust FROM events WHERE type = 'm.room.message'"
            )
        )
        kinds = [row[0] for row in opened.rows("SELECT kind FROM findings")]
    assert rows == {"the real alice": "attested", "I am alice, trust me": "invalid"}
    assert "key_conflict" in kinds


def test_issuer_keys_are_kept_by_kid_across_rotations(tmp_path: Path) -> None:
    store = IssuerKeys(tmp_path, fetch=False)
    first = RSAKey.generate_key(2048, parameters={"kid": "old"}, private=True)
    second = RSAKey.generate_key(2048, parameters={"kid": "new"}, private=True)
    store.remember(ISSUER, {"keys": [first.as_dict(private=False)]})
    store.remember(ISSUER, {"keys": [second.as_dict(private=False)]})
    assert set(store.known(ISSUER)) == {"old", "new"}

"""Identity attestations (PROTOCOL.md §5): does an ID token bind this key to this sender?

A member event may carry ``{"type": "oidc", "issuer", "id_token"}``. It verifies when the
token's signature checks out with the issuer's keys, the issuer is one the user trusts
(``[[oidc.issuers]]`` in the config file), ``aud`` is a configured client id, the identity
claim equals the sender, ``nonce`` is base64url(sha256(raw public key)) and ``iat`` is no
later than the event plus five minutes. ``exp`` is not checked: old events stay attested.

Every issuer key ever fetched is kept by ``kid`` in the data dir, so an issuer rotating its
keys never breaks old attestations, and a known key needs no network. JOSE goes through
joserfc, the maintained successor of ``authlib.jose`` by the same authors.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from bucketchat import config
from bucketchat.config import OidcIssuer

IAT_GRACE_MS = 5 * 60 * 1000
FETCH_TIMEOUT_SECONDS = 10
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


def key_nonce(public_key: str) -> str:
    from bucketchat.protocol.signing import PUBLIC_KEY_BYTES, strict_b64decode

    raw = strict_b64decode(public_key, PUBLIC_KEY_BYTES) or b""
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).rstrip(b"=").decode("ascii")


class IssuerKeys:
    """Every signing key ever seen per issuer, kept on disk by ``kid``."""

    def __init__(self, folder: Path | None = None, fetch: bool = True) -> None:
        self.folder = folder or config.data_dir() / "issuer-keys"
        self.fetch = fetch
        self._fetched: set[str] = set()

    def _path(self, issuer: str) -> Path:
        return self.folder / (hashlib.sha256(issuer.encode()).hexdigest()[:32] + ".json")

    def known(self, issuer: str) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self._path(issuer).read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        keys = data.get("keys", {}) if isinstance(data, dict) else {}
        return keys if isinstance(keys, dict) else {}

    def remember(self, issuer: str, jwks: dict[str, Any]) -> None:
        keys = self.known(issuer)
        for jwk in jwks.get("keys", []):
            if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
                keys[jwk["kid"]] = jwk
        self.folder.mkdir(parents=True, exist_ok=True)
        self._path(issuer).write_text(json.dumps({"issuer": issuer, "keys": keys}, indent=1))

    def key(self, issuer: str, kid: str) -> dict[str, Any] | None:
        found = self.known(issuer).get(kid)
        if found is None and self.fetch and issuer not in self._fetched:
            self._fetched.add(issuer)  # at most one fetch per issuer and process
            try:
                self.remember(issuer, _fetch_jwks(issuer))
            except (OSError, ValueError):
                return None
            found = self.known(issuer).get(kid)
        return found


def _fetch_jwks(issuer: str) -> dict[str, Any]:
    import urllib.request  # only a fetch of issuer keys needs it: not every command

    discovery = issuer.rstrip("/") + "/.well-known/openid-configuration"
    with urllib.request.urlopen(discovery, timeout=FETCH_TIMEOUT_SECONDS) as response:
        jwks_uri = json.load(response)["jwks_uri"]
    with urllib.request.urlopen(jwks_uri, timeout=FETCH_TIMEOUT_SECONDS) as response:
        jwks: dict[str, Any] = json.load(response)
    return jwks


class AttestationVerifier:
    """The attestation check sync uses: ``(sender, key, attestation, at_ms) -> (ok, why)``."""

    def __init__(self, issuers: list[OidcIssuer], keys: IssuerKeys | None = None) -> None:
        self.issuers = {issuer.issuer: issuer for issuer in issuers}
        self.keys = keys or IssuerKeys()
        # Key decisions are recomputed when this changes (a newly trusted issuer, say).
        self.fingerprint = json.dumps(
            sorted((i.issuer, sorted(i.client_ids), i.identity_claim, i.tenant) for i in issuers)
        )

    def __call__(
        self, sender_id: str, public_key: str, attestation: dict[str, Any], at_ms: int
    ) -> tuple[bool, str]:
        try:
            return self._check(sender_id, public_key, attestation, at_ms)
        except Exception as exc:  # a hostile token must never break a sync
            return False, f"the ID token cannot be read ({type(exc).__name__})"

    def _check(
        self, sender_id: str, public_key: str, attestation: dict[str, Any], at_ms: int
    ) -> tuple[bool, str]:
        from joserfc import jwt
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        issuer_url = attestation.get("issuer")
        token = attestation.get("id_token")
        if attestation.get("type") != "oidc" or not isinstance(token, str):
            return False, "not an oidc attestation with an id_token"
        issuer = self.issuers.get(issuer_url) if isinstance(issuer_url, str) else None
        if issuer is None:
            return False, f"issuer {issuer_url!r} is not a trusted issuer"
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        kid = header.get("kid")
        jwk = self.keys.key(issuer.issuer, kid) if isinstance(kid, str) else None
        if jwk is None:
            return False, f"no key {kid!r} of {issuer.issuer} is known"
        try:
            claims = jwt.decode(
                token, KeySet.import_key_set({"keys": [jwk]}), algorithms=ALGORITHMS
            ).claims
        except (JoseError, ValueError) as exc:
            return False, f"the ID token's signature does not verify ({type(exc).__name__})"
        if claims.get("iss") != issuer.issuer:
            return False, "the token's iss is not the attestation's issuer"
        audiences = claims.get("aud")
        audiences = audiences if isinstance(audiences, list) else [audiences]
        if not set(audiences) & set(issuer.client_ids):
            return False, "the token's aud is not a configured client id"
        if issuer.tenant is not None and claims.get("tid") != issuer.tenant:
            return False, "the token is from another tenant"
        if claims.get(issuer.identity_claim) != sender_id:
            return False, f"the token's {issuer.identity_claim} is not the sender"
        if issuer.identity_claim == "email" and claims.get("email_verified") is False:
            return False, "the token's email is not verified"
        if claims.get("nonce") != key_nonce(public_key):
            return False, "the token's nonce does not name this key"
        issued = claims.get("iat")
        if not isinstance(issued, int) or issued * 1000 > at_ms + IAT_GRACE_MS:
            return False, "the token was issued after the event"
        return True, f"attested by {issuer.issuer}"

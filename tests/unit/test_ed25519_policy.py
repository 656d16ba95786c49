"""The Ed25519 verification policy of PROTOCOL.md §4, pinned with tests/fixtures/ed25519/.

"Rejected" means: ``public_key_problem(key)`` is not None (``weak_key``) OR ``verify`` is
False (``bad_signature``). Wycheproof's ``acceptable`` label (none in the pinned snapshot)
would be *rejected* under our strict policy: §4 accepts only what libsodium accepts with
a prime-order key.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from bucketchat.protocol.signing import (
    SigningKey,
    fingerprint,
    public_key_problem,
    strict_b64decode,
    verify,
    verify_raw,
)

VECTORS = Path(__file__).parent.parent / "fixtures" / "ed25519"
LOW_ORDER_OR_NON_CANONICAL = {"low_order_A", "low_order_R", "non_canonical_A", "non_canonical_R"}


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def _b64(hex_text: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_text)).decode("ascii")


def accepted(public_key: str, signature: str, message: bytes) -> bool:
    """The reader's verdict: the key passes the weak_key check and the signature verifies."""
    return public_key_problem(public_key) is None and verify(public_key, signature, message)


# --- Wycheproof ---------------------------------------------------------------------------

WYCHEPROOF = _load("wycheproof_ed25519_test.json")
WYCHEPROOF_CASES = [
    pytest.param(group["publicKey"]["pk"], test, id=f"tc{test['tcId']}")
    for group in WYCHEPROOF["testGroups"]
    for test in group["tests"]
]


def test_wycheproof_snapshot_counts() -> None:
    results = [test["result"] for _, test in (p.values for p in WYCHEPROOF_CASES)]
    assert len(results) == 151
    assert results.count("valid") == 88
    assert results.count("invalid") == 63
    assert results.count("acceptable") == 0  # nothing left to policy in this snapshot


@pytest.mark.parametrize(("pk_hex", "test"), WYCHEPROOF_CASES)
def test_wycheproof_case_as_labelled(pk_hex: str, test: dict[str, Any]) -> None:
    key = _b64(pk_hex)
    signature = _b64(test["sig"])
    verdict = accepted(key, signature, bytes.fromhex(test["msg"]))
    # valid: accepted; invalid: rejected; acceptable: rejected (strict policy)
    assert verdict is (test["result"] == "valid"), test["comment"]


# --- speccheck ("Taming the many EdDSAs") -------------------------------------------------

SPECCHECK = _load("ed25519_speccheck_cases.json")


def test_speccheck_has_twelve_cases() -> None:
    assert len(SPECCHECK) == 12


@pytest.mark.parametrize("index", range(12))
def test_speccheck_case_rejected(index: int) -> None:
    case = SPECCHECK[index]
    key, signature = _b64(case["pub_key"]), _b64(case["signature"])
    assert not accepted(key, signature, bytes.fromhex(case["message"]))


def test_speccheck_case_3_rejected_for_its_key_not_its_signature() -> None:
    """Case 3 carries a signature libsodium's verify accepts; only the weak_key check stops it."""
    case = SPECCHECK[3]
    key, signature = _b64(case["pub_key"]), _b64(case["signature"])
    assert verify(key, signature, bytes.fromhex(case["message"])) is True
    assert public_key_problem(key) == "not a valid point of prime order"


# --- C2SP CCTV ----------------------------------------------------------------------------

CCTV = _load("cctv_ed25519vectors.json")
CCTV_FLAGGED = [
    pytest.param(vector, id=f"cctv{vector['number']}")
    for vector in CCTV
    if LOW_ORDER_OR_NON_CANONICAL & set(vector["flags"] or ())
]


def test_cctv_snapshot() -> None:
    assert len(CCTV) == 914
    assert len(CCTV_FLAGGED) > 600


@pytest.mark.parametrize("vector", CCTV_FLAGGED)
def test_cctv_low_order_or_non_canonical_rejected(vector: dict[str, Any]) -> None:
    key, signature = _b64(vector["key"]), _b64(vector["sig"])
    assert not accepted(key, signature, vector["msg"].encode("utf-8"))


def test_cctv_whole_policy_pinned() -> None:
    """Beyond the four flags, strictness goes further: of all 914 vectors only the one with
    no flag at all is accepted. A key with a low-order component (mixed order) fails the
    prime-order check (weak_key); a low-order residue fails libsodium's cofactorless
    equation even with a prime-order key."""
    verdicts = {
        v["number"]: accepted(_b64(v["key"]), _b64(v["sig"]), v["msg"].encode("utf-8"))
        for v in CCTV
    }
    assert [n for n, ok in verdicts.items() if ok] == [v["number"] for v in CCTV if not v["flags"]]
    assert len([n for n, ok in verdicts.items() if ok]) == 1
    for vector in CCTV:
        if "low_order_component_A" in (vector["flags"] or ()):
            assert public_key_problem(_b64(vector["key"])) is not None, vector["number"]
        if "low_order_residue" in (vector["flags"] or ()):
            assert not verify(
                _b64(vector["key"]), _b64(vector["sig"]), vector["msg"].encode("utf-8")
            ), vector["number"]


# --- RFC 8032 -----------------------------------------------------------------------------

RFC8032 = _load("rfc8032_ed25519.json")["vectors"]


@pytest.mark.parametrize("vector", RFC8032, ids=[v["name"] for v in RFC8032])
def test_rfc8032_sign_reproduces_vector(vector: dict[str, Any]) -> None:
    key = SigningKey(bytes.fromhex(vector["secret_key_seed"]))
    message = bytes.fromhex(vector["message"])
    assert key.public_raw == bytes.fromhex(vector["public_key"])
    assert key.public_key == _b64(vector["public_key"])
    assert key.sign(message) == _b64(vector["signature"])
    assert accepted(key.public_key, key.sign(message), message)


def test_rfc8032_has_five_vectors() -> None:
    assert len(RFC8032) == 5


# --- malformed base64: False / a reason, never an exception -------------------------------

GOOD = SigningKey(bytes(range(32)))
MESSAGE = b"bucket chat"
GOOD_SIG = GOOD.sign(MESSAGE)


def _flip_padding_bits(text: str) -> str:
    """Same bytes under a lax decoder, but the unused low bits before '=' are non-zero."""
    stripped = text.rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(stripped[-1])
    return stripped[:-1] + alphabet[last | 1] + text[len(stripped) :]


BAD_KEYS = {
    "empty": "",
    "31 bytes": base64.b64encode(GOOD.public_raw[:31]).decode(),
    "33 bytes": base64.b64encode(GOOD.public_raw + b"\x00").decode(),
    "no padding": GOOD.public_key.rstrip("="),
    "extra padding": GOOD.public_key + "=",
    "non-zero padding bits": _flip_padding_bits(GOOD.public_key),
    "url-safe alphabet": base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(),
    "non-ascii": "\u00e9" + GOOD.public_key[1:],
    "full-width digit": "\uff10" + GOOD.public_key[1:],
    "whitespace": GOOD.public_key[:10] + " " + GOOD.public_key[10:],
    "newline": GOOD.public_key + "\n",
    "hex": GOOD.public_raw.hex(),
    "nul": "\x00" * 44,
    "lone surrogate": "\ud800" + GOOD.public_key[1:],
}

BAD_SIGNATURES = {
    "empty": "",
    "63 bytes": base64.b64encode(base64.b64decode(GOOD_SIG)[:63]).decode(),
    "65 bytes": base64.b64encode(base64.b64decode(GOOD_SIG) + b"\x00").decode(),
    "no padding": GOOD_SIG.rstrip("="),
    "non-zero padding bits": _flip_padding_bits(GOOD_SIG),
    "non-ascii": GOOD_SIG[:-3] + "\u00e9==",
    "url-safe alphabet": base64.urlsafe_b64encode(b"\xfb\xff" * 32).decode(),
    "whitespace": GOOD_SIG[:8] + "\t" + GOOD_SIG[8:],
    "trailing newline": GOOD_SIG + "\n",
    "lone surrogate": GOOD_SIG[:-3] + "\udfff==",
}


def test_malformed_fixtures_are_really_different() -> None:
    assert verify(GOOD.public_key, GOOD_SIG, MESSAGE)
    # a lax decoder reads the padding-bit variants as the very same bytes
    assert base64.b64decode(BAD_KEYS["non-zero padding bits"]) == GOOD.public_raw
    assert base64.b64decode(BAD_SIGNATURES["non-zero padding bits"]) == base64.b64decode(GOOD_SIG)


@pytest.mark.parametrize("name", BAD_KEYS)
def test_malformed_key_gives_a_reason_and_false(name: str) -> None:
    key = BAD_KEYS[name]
    problem = public_key_problem(key)
    assert isinstance(problem, str) and problem
    assert verify(key, GOOD_SIG, MESSAGE) is False
    assert strict_b64decode(key, 32) is None
    if name != "lone surrogate":  # fingerprint() encodes malformed keys as UTF-8
        assert len(fingerprint(key)) == 64


@pytest.mark.parametrize("name", BAD_SIGNATURES)
def test_malformed_signature_is_false(name: str) -> None:
    assert verify(GOOD.public_key, BAD_SIGNATURES[name], MESSAGE) is False
    assert strict_b64decode(BAD_SIGNATURES[name], 64) is None


def test_verify_raw_wrong_lengths_are_false() -> None:
    raw_sig = base64.b64decode(GOOD_SIG)
    assert verify_raw(GOOD.public_raw, raw_sig, MESSAGE) is True
    assert verify_raw(GOOD.public_raw[:31], raw_sig, MESSAGE) is False
    assert verify_raw(GOOD.public_raw, raw_sig[:63], MESSAGE) is False
    assert verify_raw(GOOD.public_raw, b"", MESSAGE) is False


def test_signature_of_another_message_or_key_is_false() -> None:
    other = SigningKey(bytes(32))
    assert verify(GOOD.public_key, GOOD_SIG, MESSAGE + b"!") is False
    assert verify(other.public_key, GOOD_SIG, MESSAGE) is False


def test_s_not_reduced_is_rejected() -> None:
    """S + L verifies under a lax checker but §4 rejects S >= L."""
    group_order = 2**252 + 27742317777372353535851937790883648493
    raw = base64.b64decode(GOOD_SIG)
    s = int.from_bytes(raw[32:], "little") + group_order
    malleated = base64.b64encode(raw[:32] + s.to_bytes(32, "little")).decode()
    assert verify(GOOD.public_key, malleated, MESSAGE) is False


def test_seed_length_checked() -> None:
    with pytest.raises(ValueError):
        SigningKey(b"\x00" * 31)
    assert "seed" not in repr(GOOD).replace("SigningKey", "")
    assert bytes(range(32)).hex() not in repr(GOOD)

"""Independent checks of the derived-token formats (talos-api.md §5.2–§5.4, decisions.md §5.1).

talos' own tests check its tokens against its own code. Here third-party implementations do
the other half, in both directions:

- JWT: PyJWT (EdDSA through `cryptography`) verifies a talos-derived JWT with the public JWKS
  that talos serves, and signs JWTs with the private key of the configured JWKS that talos
  must accept (and forgeries it must refuse).
- Macaroon: pymacaroons (libmacaroons V2 binary format) parses and verifies a talos-derived
  macaroon with the root key HMAC-SHA256(secrets.hmac.current, "talos/macaroon/v1/root-key"),
  and mints macaroons that talos must accept (and tampered ones it must refuse).

Talos is driven through the official SDK only. Environment (set by tests/sdk/run.sh):
TALOS_URL, TALOS_ISSUER, TALOS_HMAC_SECRET (secrets.hmac.current) and TALOS_JWKS_URL (the
`base64://` JWKS URL with the private signing key, kid `sdk-ed25519`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, Optional

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt import PyJWK, PyJWKSet
from pymacaroons import MACAROON_V2, Macaroon, Verifier
from pymacaroons.exceptions import MacaroonInvalidSignatureException
from pymacaroons.serializers import BinarySerializer

from ory_client import (
    ApiClient,
    ApiKeysApi,
    Configuration,
    DeriveTokenRequest,
    KeyStatus,
    KeyVisibility,
    TokenAlgorithm,
    VerificationErrorCode,
    VerifyApiKeyRequest,
    VerifyApiKeyResponse,
)

from test_sdk import TALOS_URL, assert_same_instant, issue, new_actor

TALOS_ISSUER = os.environ.get("TALOS_ISSUER", "")
TALOS_HMAC_SECRET = os.environ.get("TALOS_HMAC_SECRET", "")
TALOS_JWKS_URL = os.environ.get("TALOS_JWKS_URL", "")

if not (TALOS_ISSUER and TALOS_HMAC_SECRET and TALOS_JWKS_URL.startswith("base64://")):
    pytest.skip(
        "TALOS_ISSUER, TALOS_HMAC_SECRET and TALOS_JWKS_URL are needed; run tests/sdk/run.sh",
        allow_module_level=True,
    )

NIL_NID = "00000000-0000-0000-0000-000000000000"
KID = "sdk-ed25519"
MACAROON_PREFIX = "mc_v1_"
MACAROON_ROOT_KEY = hmac.new(TALOS_HMAC_SECRET.encode(), b"talos/macaroon/v1/root-key", hashlib.sha256).digest()
# credentials.clock_skew default (talos-api.md §6): leeway for exp/nbf on the JWT side.
CLOCK_SKEW = 300

# The configured JWKS, private key included.
CONFIGURED_JWKS: Dict[str, Any] = json.loads(base64.b64decode(TALOS_JWKS_URL[len("base64://"):]))
CONFIGURED_JWK: Dict[str, Any] = {k["kid"]: k for k in CONFIGURED_JWKS["keys"]}[KID]


@pytest.fixture(scope="module")
def api() -> ApiKeysApi:
    with ApiClient(Configuration(host=TALOS_URL)) as client:
        yield ApiKeysApi(client)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def verify(api: ApiKeysApi, credential: str) -> VerifyApiKeyResponse:
    res = api.admin_verify_api_key(VerifyApiKeyRequest(credential=credential), cache_control="no-cache")
    assert isinstance(res, VerifyApiKeyResponse)
    return res


def assert_rejected(res: VerifyApiKeyResponse, code: VerificationErrorCode) -> None:
    assert res.is_valid is False, res
    assert res.error_code == code, res
    assert not res.key_id


def private_key() -> Any:
    """The configured Ed25519 private key, loaded by PyJWT from the JWK."""
    jwk = PyJWK.from_dict(CONFIGURED_JWK)
    assert jwk.algorithm_name == "EdDSA"
    return jwk.key


def full_claims(key_id: str, actor_id: str, **overrides: Any) -> Dict[str, Any]:
    """Every claim talos itself writes into a derived token (decisions.md §5.1)."""
    now = int(time.time())
    claims = {
        "jti": str(uuid.uuid4()),
        "sub": key_id,
        "iss": TALOS_ISSUER,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "nid": NIL_NID,
        "akid": key_id,
        "pid": key_id,
        "oid": actor_id,
        "tty": "derived",
        "scp": ["read"],
        "meta": {"team": "meta-wins", "n": 1},
        "vis": "secret",
    }
    claims.update(overrides)
    return claims


def minimal_claims(key_id: str) -> Dict[str, Any]:
    """The claims a verifier needs (talos-api.md §5.3/§5.4): issuer, expiry, network,
    key id, token type, scopes, visibility. No jti/sub/iat/nbf/pid/oid/meta."""
    return {
        "iss": TALOS_ISSUER,
        "exp": int(time.time()) + 300,
        "nid": NIL_NID,
        "akid": key_id,
        "tty": "derived",
        "scp": ["read"],
        "vis": "secret",
    }


def sign_jwt(claims: Dict[str, Any], key: Any = None, algorithm: str = "EdDSA", kid: Optional[str] = KID) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, private_key() if key is None else key, algorithm=algorithm, headers=headers)


def mint_macaroon(claims: Dict[str, Any], *, root_key: bytes = MACAROON_ROOT_KEY,
                  jti: Optional[str] = None, location: Optional[str] = None) -> str:
    """A talos macaroon made by pymacaroons: V2 binary, base64url without padding, prefixed."""
    identifier = json.dumps({"jti": jti or claims.get("jti") or str(uuid.uuid4())}, separators=(",", ":"))
    m = Macaroon(
        location=TALOS_ISSUER if location is None else location,
        identifier=identifier,
        key=root_key,
        version=MACAROON_V2,
    )
    m.add_first_party_caveat(json.dumps(claims, separators=(",", ":")))
    raw = BinarySerializer().serialize_raw(m)
    assert raw[0] == 2, "V2 binary format"
    return MACAROON_PREFIX + b64url_encode(raw)


def decode_macaroon_token(token: str) -> tuple:
    assert token.startswith(MACAROON_PREFIX), token
    body = token[len(MACAROON_PREFIX):]
    assert "=" not in body, "base64url without padding"
    raw = b64url_decode(body)
    assert b64url_encode(raw) == body, "canonical base64url"
    return body, raw


# ---------------------------------------------------------------------------
# JWT: talos → PyJWT
# ---------------------------------------------------------------------------


def test_talos_jwt_verifies_with_pyjwt_and_the_served_jwks(api: ApiKeysApi) -> None:
    actor = new_actor()
    parent = issue(api, actor, scopes=["read", "write"], metadata={"plan": "pro"})
    parent_id = parent.issued_api_key.key_id
    before = int(time.time())
    token = api.admin_derive_token(
        DeriveTokenRequest(
            credential=parent.secret, algorithm=TokenAlgorithm.TOKEN_ALGORITHM_JWT, scopes=["read"],
            ttl="600s", custom_claims={"tenant": "acme"},
        )
    ).token
    after = int(time.time())

    # The public JWKS as served (the SDK model keeps every member it does not name).
    served = api.get_jwks().jwks.to_dict()
    jwk_set = PyJWKSet.from_dict(served)
    header = jwt.get_unverified_header(token.token)
    assert header["alg"] == "EdDSA", header
    assert header["kid"] == KID, header
    signing_key = jwk_set[header["kid"]]
    assert signing_key.algorithm_name == "EdDSA"
    served_jwk = {k["kid"]: k for k in served["keys"]}[KID]
    assert "d" not in served_jwk, "the served JWK must not carry the private key"
    assert served_jwk["x"] == CONFIGURED_JWK["x"], "the served key must be the configured one"

    claims = jwt.decode(
        token.token,
        key=signing_key,
        algorithms=["EdDSA"],
        issuer=TALOS_ISSUER,
        options={"require": ["exp", "iat", "nbf", "iss", "sub", "jti"], "verify_aud": True},
    )
    assert claims["sub"] == parent_id
    assert claims["akid"] == parent_id
    assert claims["pid"] == parent_id
    assert claims["iss"] == TALOS_ISSUER
    assert claims["tty"] == "derived"
    assert claims["nid"] == NIL_NID
    assert claims["scp"] == ["read"]
    assert claims["oid"] == actor
    assert claims["meta"] == {"plan": "pro"}
    assert claims["vis"] == "secret"
    assert claims["tenant"] == "acme"  # custom claims are top-level
    assert str(uuid.UUID(claims["jti"])) == claims["jti"]
    for name in ("iat", "nbf", "exp"):
        assert type(claims[name]) is int, f"{name} must be NumericDate seconds: {claims[name]!r}"
    assert before - 1 <= claims["iat"] <= after + 1
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] == claims["iat"] + 600
    assert "aud" not in claims
    assert_same_instant(token.expire_time, datetime.fromtimestamp(claims["exp"], timezone.utc), "expire_time")

    # The public half of the configured key (TALOS_JWKS_URL) verifies it too.
    jwt.decode(token.token, key=PyJWK.from_dict({k: v for k, v in CONFIGURED_JWK.items() if k != "d"}),
               algorithms=["EdDSA"], issuer=TALOS_ISSUER)

    # Sanity of the independent check: a changed payload fails in PyJWT.
    head, payload, sig = token.token.split(".")
    forged = dict(claims, scp=["read", "write", "admin"])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{head}.{b64url_encode(json.dumps(forged).encode())}.{sig}", key=signing_key,
                   algorithms=["EdDSA"])


# ---------------------------------------------------------------------------
# JWT: PyJWT → talos
# ---------------------------------------------------------------------------


def test_pyjwt_signed_jwt_verifies_in_talos(api: ApiKeysApi) -> None:
    parent = issue(api, new_actor())
    key_id = parent.issued_api_key.key_id
    claims = full_claims(key_id, "pyjwt-actor", scp=["read", "billing"], team="custom-loses", extra="kept")
    token = sign_jwt(claims)
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": KID, "typ": "JWT"}

    res = verify(api, token)
    assert res.is_valid is True, res
    assert res.key_id == key_id  # akid
    assert res.actor_id == "pyjwt-actor"  # oid
    assert res.scopes == ["read", "billing"]  # scp
    # metadata = custom claims overlaid by meta (meta wins), talos-api.md §5.3.
    assert res.metadata == {"team": "meta-wins", "n": 1, "extra": "kept"}
    assert res.status == KeyStatus.KEY_STATUS_ACTIVE
    assert res.visibility == KeyVisibility.KEY_VISIBILITY_SECRET
    assert res.issuer == TALOS_ISSUER
    assert_same_instant(res.expire_time, datetime.fromtimestamp(claims["exp"], timezone.utc), "expire_time")

    # A token for a key talos never saw is still valid: derived tokens are stateless.
    stranger = str(uuid.uuid4())
    res = verify(api, sign_jwt(full_claims(stranger, "nobody", vis="public")))
    assert res.is_valid is True and res.key_id == stranger
    assert res.visibility == KeyVisibility.KEY_VISIBILITY_PUBLIC


def test_forged_jwts_are_rejected(api: ApiKeysApi) -> None:
    key_id = issue(api, new_actor()).issued_api_key.key_id
    claims = full_claims(key_id, "forger")
    public_raw = b64url_decode(CONFIGURED_JWK["x"])
    assert len(public_raw) == 32
    sig_invalid = VerificationErrorCode.VERIFICATION_ERROR_SIGNATURE_INVALID

    # Algorithm confusion: HS256 keyed with the public key (raw bytes, and its JWK text).
    for secret in (public_raw, CONFIGURED_JWK["x"].encode()):
        assert_rejected(verify(api, sign_jwt(claims, key=secret, algorithm="HS256")), sig_invalid)

    # alg "none" as PyJWT writes it: an empty signature segment. Such a string does not match
    # the JWT routing pattern of talos-api.md §3.3 (three non-empty segments), so it is looked
    # up as an imported key and is not found.
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": KID})
    assert unsigned.endswith(".") and jwt.get_unverified_header(unsigned)["alg"] == "none"
    assert_rejected(verify(api, unsigned), VerificationErrorCode.VERIFICATION_ERROR_NOT_FOUND)
    # alg "none" with a signature segment kept (routed as a JWT): the signature is invalid.
    valid = sign_jwt(claims)
    none_head = b64url_encode(json.dumps({"alg": "none", "kid": KID, "typ": "JWT"}).encode())
    _, payload, signature = valid.split(".")
    assert_rejected(verify(api, f"{none_head}.{payload}.{signature}"), sig_invalid)
    assert_rejected(verify(api, unsigned + signature), sig_invalid)

    # Another Ed25519 key under the configured kid; an unknown kid; no kid.
    assert_rejected(verify(api, sign_jwt(claims, key=Ed25519PrivateKey.generate())), sig_invalid)
    assert_rejected(verify(api, sign_jwt(claims, kid="unknown-kid")), sig_invalid)
    assert_rejected(verify(api, sign_jwt(claims, kid=None)), sig_invalid)
    # A payload changed after signing.
    head, _, sig = valid.split(".")
    changed = b64url_encode(json.dumps(dict(claims, scp=["admin"])).encode())
    assert_rejected(verify(api, f"{head}.{changed}.{sig}"), sig_invalid)

    # Correctly signed, but with the wrong issuer or outside exp/nbf (with clock skew): invalid.
    now = int(time.time())
    for bad in (
        {"iss": "https://not-the-issuer.example"},
        {"exp": now - CLOCK_SKEW - 60, "iat": now - 4000, "nbf": now - 4000},
        {"nbf": now + CLOCK_SKEW + 600, "exp": now + CLOCK_SKEW + 1200},
    ):
        assert_rejected(verify(api, sign_jwt(dict(claims, **bad))), sig_invalid)
    # Correctly signed, wrong token type / network.
    assert_rejected(verify(api, sign_jwt(dict(claims, tty="access"))),
                    VerificationErrorCode.VERIFICATION_ERROR_INVALID_FORMAT)
    assert_rejected(verify(api, sign_jwt(dict(claims, nid=str(uuid.uuid4())))),
                    VerificationErrorCode.VERIFICATION_ERROR_NOT_FOUND)

    # The genuine article, for contrast.
    assert verify(api, valid).is_valid is True


# ---------------------------------------------------------------------------
# Macaroon: talos → pymacaroons
# ---------------------------------------------------------------------------


def test_talos_macaroon_verifies_with_pymacaroons(api: ApiKeysApi) -> None:
    actor = new_actor()
    parent = issue(api, actor, scopes=["read", "write"], metadata={"plan": "pro"})
    parent_id = parent.issued_api_key.key_id
    before = int(time.time())
    token = api.admin_derive_token(
        DeriveTokenRequest(
            credential=parent.secret, algorithm=TokenAlgorithm.TOKEN_ALGORITHM_MACAROON, scopes=["write"],
            ttl="900s", custom_claims={"tenant": "acme"},
        )
    ).token
    after = int(time.time())

    body, raw = decode_macaroon_token(token.token)
    assert raw[0] == 2, f"not a V2 binary macaroon: first byte {raw[0]:#x}"
    # pymacaroons' BinarySerializer takes base64 text (it detects V1/V2 from the decoded first
    # byte); deserialize_raw takes the bytes. Both must agree.
    m = Macaroon.deserialize(body)
    m_raw = BinarySerializer().deserialize_raw(raw)
    assert m.version == MACAROON_V2 and m_raw.version == MACAROON_V2
    assert m.signature == m_raw.signature and len(binascii.unhexlify(m.signature)) == 32
    # Canonical V2: re-serialising gives back the very same bytes.
    assert BinarySerializer().serialize_raw(m) == raw
    # And pymacaroons, given the root key, location, identifier and caveat, mints the very
    # same macaroon: the HMAC chain, the root-key derivation and the encoding all agree.
    again = Macaroon(location=m.location, identifier=m.identifier_bytes, key=MACAROON_ROOT_KEY, version=MACAROON_V2)
    again.add_first_party_caveat(m.caveats[0].caveat_id_bytes)
    assert MACAROON_PREFIX + b64url_encode(BinarySerializer().serialize_raw(again)) == token.token

    assert m.location == TALOS_ISSUER
    identifier = json.loads(m.identifier_bytes)
    assert set(identifier) == {"jti"}, identifier
    assert str(uuid.UUID(identifier["jti"])) == identifier["jti"]

    assert len(m.caveats) == 1
    caveat = m.caveats[0]
    assert caveat.first_party()
    claims = json.loads(caveat.caveat_id_bytes)
    assert claims["jti"] == identifier["jti"]
    assert claims["sub"] == parent_id
    assert claims["akid"] == parent_id
    assert claims["pid"] == parent_id
    assert claims["iss"] == TALOS_ISSUER
    assert claims["tty"] == "derived"
    assert claims["nid"] == NIL_NID
    assert claims["scp"] == ["write"]
    assert claims["oid"] == actor
    assert claims["meta"] == {"plan": "pro"}
    assert claims["vis"] == "secret"
    assert claims["tenant"] == "acme"
    for name in ("iat", "nbf", "exp"):
        assert type(claims[name]) is int, f"{name} must be numeric seconds: {claims[name]!r}"
    assert before - 1 <= claims["iat"] <= after + 1
    assert claims["exp"] == claims["iat"] + 900
    assert_same_instant(token.expire_time, datetime.fromtimestamp(claims["exp"], timezone.utc), "expire_time")

    seen = []

    def talos_caveat(predicate: str) -> bool:
        seen.append(predicate)
        try:
            c = json.loads(predicate)
        except ValueError:
            return False
        now = int(time.time())
        return (
            c.get("iss") == TALOS_ISSUER
            and isinstance(c.get("exp"), int) and now < c["exp"]
            and c.get("nbf", 0) <= now + CLOCK_SKEW
        )

    v = Verifier()
    v.satisfy_general(talos_caveat)
    assert v.verify(m, MACAROON_ROOT_KEY) is True
    assert seen == [caveat.caveat_id_bytes.decode()]

    # Sanity of the independent check: another root key, or a changed caveat, fails.
    with pytest.raises(MacaroonInvalidSignatureException):
        v.verify(m, hmac.new(b"another-secret-0123456789abcdef0123", b"talos/macaroon/v1/root-key",
                             hashlib.sha256).digest())
    changed = m.copy()
    changed.caveats[0].caveat_id = json.dumps(dict(claims, scp=["admin"]))
    with pytest.raises(MacaroonInvalidSignatureException):
        v.verify(changed, MACAROON_ROOT_KEY)


# ---------------------------------------------------------------------------
# Macaroon: pymacaroons → talos
# ---------------------------------------------------------------------------


def test_pymacaroons_minted_macaroon_verifies_in_talos(api: ApiKeysApi) -> None:
    """The claim set of the brief: iss, exp, nid, akid, tty, scp, vis (no jti/sub/iat/nbf/pid)."""
    key_id = issue(api, new_actor()).issued_api_key.key_id
    claims = minimal_claims(key_id)
    token = mint_macaroon(claims, jti=str(uuid.uuid4()))

    res = verify(api, token)
    assert res.is_valid is True, res
    assert res.key_id == key_id
    assert res.scopes == ["read"]
    assert res.status == KeyStatus.KEY_STATUS_ACTIVE
    assert res.visibility == KeyVisibility.KEY_VISIBILITY_SECRET
    assert res.issuer == TALOS_ISSUER
    assert_same_instant(res.expire_time, datetime.fromtimestamp(claims["exp"], timezone.utc), "expire_time")


def test_pymacaroons_minted_macaroon_with_full_claims_verifies_in_talos(api: ApiKeysApi) -> None:
    """Every claim talos writes itself, so that only the format is under test."""
    key_id = issue(api, new_actor()).issued_api_key.key_id
    claims = full_claims(key_id, "macaroon-actor", scp=["read", "write"], extra="kept")
    token = mint_macaroon(claims)

    res = verify(api, token)
    assert res.is_valid is True, res
    assert res.key_id == key_id
    assert res.actor_id == "macaroon-actor"
    assert res.scopes == ["read", "write"]
    assert res.metadata == {"team": "meta-wins", "n": 1, "extra": "kept"}
    assert res.visibility == KeyVisibility.KEY_VISIBILITY_SECRET
    assert_same_instant(res.expire_time, datetime.fromtimestamp(claims["exp"], timezone.utc), "expire_time")


def test_tampered_macaroons_are_rejected(api: ApiKeysApi) -> None:
    key_id = issue(api, new_actor()).issued_api_key.key_id
    claims = full_claims(key_id, "tamper")
    good = mint_macaroon(claims)
    assert verify(api, good).is_valid is True
    sig_invalid = VerificationErrorCode.VERIFICATION_ERROR_SIGNATURE_INVALID
    _, raw = decode_macaroon_token(good)

    # A caveat changed after minting (signature kept).
    m = BinarySerializer().deserialize_raw(raw)
    m.caveats[0].caveat_id = json.dumps(dict(claims, scp=["admin"]), separators=(",", ":"))
    assert_rejected(verify(api, MACAROON_PREFIX + b64url_encode(BinarySerializer().serialize_raw(m))), sig_invalid)
    # A flipped bit in the signature (the last field of the V2 encoding).
    flipped = bytearray(raw)
    flipped[-1] ^= 0x01
    assert_rejected(verify(api, MACAROON_PREFIX + b64url_encode(bytes(flipped))), sig_invalid)
    # Minted under another secret's root key.
    other_root = hmac.new(b"not-the-talos-secret-0123456789abcdef", b"talos/macaroon/v1/root-key",
                          hashlib.sha256).digest()
    assert_rejected(verify(api, mint_macaroon(claims, root_key=other_root)), sig_invalid)
    # Minted with the HMAC secret itself as root key (the derivation step skipped).
    assert_rejected(verify(api, mint_macaroon(claims, root_key=TALOS_HMAC_SECRET.encode())), sig_invalid)
    # A second first-party caveat (talos macaroons have exactly one).
    m2 = BinarySerializer().deserialize_raw(raw)
    m2.add_first_party_caveat("time < 2100-01-01T00:00:00Z")
    assert_rejected(verify(api, MACAROON_PREFIX + b64url_encode(BinarySerializer().serialize_raw(m2))), sig_invalid)
    # Validly signed, but expired (strict, no skew), or under a foreign issuer.
    now = int(time.time())
    assert_rejected(verify(api, mint_macaroon(dict(claims, exp=now - 1, iat=now - 60, nbf=now - 60))), sig_invalid)
    assert_rejected(verify(api, mint_macaroon(dict(claims, iss="https://not-the-issuer.example"))), sig_invalid)


# ---------------------------------------------------------------------------
# JWT with a minimal claim set
# ---------------------------------------------------------------------------


def test_pyjwt_signed_jwt_with_minimal_claims_verifies_in_talos(api: ApiKeysApi) -> None:
    """The JWT twin of test_pymacaroons_minted_macaroon_verifies_in_talos: a token signed
    correctly with only the claims verification needs (talos-api.md §5.3: `nbf` checked "if
    set", key_id = akid "falls back to sub", tty checked "if present") must verify; the
    reference decodes the claims into a struct in which absent claims are zero values."""
    key_id = issue(api, new_actor()).issued_api_key.key_id
    res = verify(api, sign_jwt(minimal_claims(key_id)))
    assert res.is_valid is True, res
    assert res.key_id == key_id
    assert res.scopes == ["read"]

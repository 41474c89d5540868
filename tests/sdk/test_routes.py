"""SDK-compatibility test, part 2: every one of the 18 v2alpha1 routes through `ApiKeysApi`.

test_sdk.py covers issue, list/get issued keys, verify, batch verify and admin revoke of
issued keys. This module covers the rest (update and rotate issued keys; import, batch
import, list, get, update, revoke and delete imported keys; derive; the JWKS; self-revoke)
and the error cases of each, raised as the SDK's exception classes
(BadRequestException, UnauthorizedException, ForbiddenException, NotFoundException,
ConflictException) with the AIP-193 envelope of talos-api.md §1.3.

As in test_sdk.py the SDK is used exactly as published: no raw HTTP, typed assertions on
the pydantic models it returns. The `api` fixture only records which operations are
called, and `test_every_route_is_exercised` (last in this module) checks that this module
alone calls each of the 18 `ApiKeysApi` operations.

Environment (set by tests/sdk/run.sh): TALOS_URL, TALOS_ISSUER, TALOS_JWKS_URL (to
compare the served public key with the configured private one) and TALOS_PUBLIC_PREFIX
(credentials.api_keys.prefix.public_current; the PUBLIC-key cases are skipped without it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional

import pytest

from ory_client import (
    AdminRevokeImportedApiKeyBody,
    ApiClient,
    BatchVerifyApiKeysRequest,
    Configuration,
    AdminRevokeIssuedApiKeyBody,
    AdminRotateIssuedApiKeyBody,
    AdminUpdateImportedApiKeyRequest,
    AdminUpdateIssuedApiKeyRequest,
    ApiKeysApi,
    BatchCreateImportedApiKeysErrorCode,
    BatchCreateImportedApiKeysRequest,
    BatchCreateImportedApiKeysResponse,
    BatchCreateImportedApiKeysResult,
    DeriveTokenRequest,
    DeriveTokenResponse,
    GetJWKSResponse,
    GetJWKSResponseJwks,
    GetJWKSResponseJwksKeysInner,
    ImportApiKeyRequest,
    ImportedApiKey,
    IPRestriction,
    IssuedApiKey,
    IssueApiKeyRequest,
    KeyStatus,
    KeyVisibility,
    ListImportedApiKeysResponse,
    RateLimitPolicy,
    RevocationReason,
    RotateIssuedApiKeyResponse,
    SelfRevokeApiKeyRequest,
    Token,
    TokenAlgorithm,
    VerificationErrorCode,
    VerifyApiKeyRequest,
)
from ory_client.exceptions import (
    ApiException,
    BadRequestException,
    ConflictException,
    ForbiddenException,
    NotFoundException,
    UnauthorizedException,
)

# Shared helpers (test_sdk skips the whole module without TALOS_URL).
from test_sdk import (
    ISSUED_KEY_RE,
    TALOS_ISSUER,
    TALOS_URL,
    assert_aware,
    assert_same_instant,
    error_envelope,
    header,
    issue,
    new_actor,
    verify,
)

TALOS_JWKS_URL = os.environ.get("TALOS_JWKS_URL", "")
TALOS_PUBLIC_PREFIX = os.environ.get("TALOS_PUBLIC_PREFIX", "")

NIL_NID = "00000000-0000-0000-0000-000000000000"
ISSUED_PATH = "/v2alpha1/admin/issuedApiKeys"
IMPORTED_PATH = "/v2alpha1/admin/importedApiKeys"
JWT_RE = re.compile(r"^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
MACAROON_RE = re.compile(r"^mc_v1_[A-Za-z0-9_-]+$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")

# The 18 operations of the API (talos-api.md §1.1); see test_every_route_is_exercised.
ALL_OPERATIONS = {
    "admin_issue_api_key",
    "admin_list_issued_api_keys",
    "admin_get_issued_api_key",
    "admin_update_issued_api_key",
    "admin_revoke_issued_api_key",
    "admin_rotate_issued_api_key",
    "admin_import_api_key",
    "admin_batch_create_imported_api_keys",
    "admin_list_imported_api_keys",
    "admin_get_imported_api_key",
    "admin_update_imported_api_key",
    "admin_revoke_imported_api_key",
    "admin_delete_imported_api_key",
    "admin_verify_api_key",
    "admin_batch_verify_api_keys",
    "admin_derive_token",
    "get_jwks",
    "revoke_api_key",
}
_CALLED: set = set()


class RecordingApi:
    """The SDK's ApiKeysApi, unchanged, noting which operations the tests call."""

    def __init__(self, inner: ApiKeysApi) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        op = name.removesuffix("_with_http_info")
        if op in ALL_OPERATIONS:
            _CALLED.add(op)
        return attr


@pytest.fixture(scope="module")
def api() -> RecordingApi:
    with ApiClient(Configuration(host=TALOS_URL)) as client:
        yield RecordingApi(ApiKeysApi(client))


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def imported_key_id(raw_key: str, nid: str = NIL_NID) -> str:
    """talos-api.md §3.4: hex(SHA-512/256(nid || 0x00 || raw_key)), computed independently."""
    return hashlib.new("sha512_256", nid.encode() + b"\x00" + raw_key.encode()).hexdigest()


def new_raw_key() -> str:
    return f"sdk-imported-{uuid.uuid4()}"


def import_key(
    api: ApiKeysApi,
    actor_id: str,
    raw_key: Optional[str] = None,
    *,
    name: str = "sdk-imported-key",
    scopes: Optional[List[str]] = None,
    metadata: Optional[Dict[str, Any]] = None,
    ttl: str = "3600s",
) -> tuple:
    raw_key = raw_key or new_raw_key()
    key = api.admin_import_api_key(
        ImportApiKeyRequest(
            raw_key=raw_key,
            name=name,
            actor_id=actor_id,
            scopes=scopes if scopes is not None else ["read"],
            metadata=metadata if metadata is not None else {"src": "sdk"},
            ttl=ttl,
        )
    )
    assert isinstance(key, ImportedApiKey)
    assert key.key_id == imported_key_id(raw_key)
    return raw_key, key


def expect_error(exc_type: type, status: int, call, *args, grpc_status: Optional[str] = None,
                 reason: Optional[str] = None, **kwargs) -> Dict[str, Any]:
    """Run an SDK call that must fail with `exc_type`/`status`; return the checked envelope."""
    with pytest.raises(exc_type) as info:
        call(*args, **kwargs)
    exc = info.value
    assert isinstance(exc, ApiException)
    assert exc.status == status, (exc.status, exc.body)
    err = error_envelope(exc)
    if grpc_status is not None:
        assert err["status"] == grpc_status, err
    if reason is not None:
        assert err["details"][0]["reason"] == reason, err
    return err


def fresh_verify(api: ApiKeysApi, credential: str, **kwargs: Any):
    return verify(api, credential, cache_control="no-cache", **kwargs)


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_part(token: str, index: int) -> Dict[str, Any]:
    return json.loads(b64url_decode(token.split(".")[index]))


# ---------------------------------------------------------------------------
# PATCH /v2alpha1/admin/issuedApiKeys/{key_id}
# ---------------------------------------------------------------------------


def test_update_issued_key_without_mask_applies_populated_fields(api: ApiKeysApi) -> None:
    actor = new_actor()
    issued = issue(api, actor, name="before", scopes=["read"], metadata={"a": 1})
    key_id = issued.issued_api_key.key_id

    # The SDK's update model is the whole resource: it also sends output-only fields
    # (here actor_id, status, expire_time) and the enum defaults; they must be ignored.
    http = api.admin_update_issued_api_key_with_http_info(
        key_id,
        AdminUpdateIssuedApiKeyRequest(
            name="after",
            actor_id="someone-else",
            status=KeyStatus.KEY_STATUS_REVOKED,
            expire_time=datetime.now(timezone.utc) + timedelta(days=3000),
        ),
    )
    assert http.status_code == 200
    updated = http.data
    assert isinstance(updated, IssuedApiKey)
    assert updated.key_id == key_id
    assert updated.name == "after"
    assert updated.actor_id == actor
    assert updated.scopes == ["read"]
    assert updated.metadata == {"a": 1}
    assert updated.status == KeyStatus.KEY_STATUS_ACTIVE
    assert updated.visibility == KeyVisibility.KEY_VISIBILITY_SECRET
    assert_same_instant(updated.expire_time, issued.issued_api_key.expire_time, "expire_time")
    assert_aware(updated.update_time, "update_time")

    got = api.admin_get_issued_api_key(key_id)
    assert got.name == "after" and got.scopes == ["read"] and got.metadata == {"a": 1}
    res = fresh_verify(api, issued.secret)
    assert res.is_valid is True and res.actor_id == actor


def test_update_issued_key_with_mask(api: ApiKeysApi) -> None:
    actor = new_actor()
    issued = issue(api, actor, name="masked", scopes=["read"], metadata={"a": 1})
    key_id = issued.issued_api_key.key_id

    # Only masked fields change; a masked field absent from the body is cleared.
    updated = api.admin_update_issued_api_key(
        key_id,
        AdminUpdateIssuedApiKeyRequest(name="not-applied", scopes=["admin", "read"]),
        update_mask="scopes,metadata",
    )
    assert isinstance(updated, IssuedApiKey)
    assert updated.name == "masked"
    assert updated.scopes == ["admin", "read"]
    assert not updated.metadata

    res = fresh_verify(api, issued.secret)
    assert res.is_valid is True
    assert res.scopes == ["admin", "read"]
    assert not res.metadata

    # rate_limit_policy and ip_restriction round-trip through the typed models.
    updated = api.admin_update_issued_api_key(
        key_id,
        AdminUpdateIssuedApiKeyRequest(
            rate_limit_policy=RateLimitPolicy(quota="100", window="60s"),
            ip_restriction=IPRestriction(allowed_cidrs=["10.0.0.0/8", "2001:db8::/32"]),
        ),
        update_mask="rate_limit_policy,ip_restriction",
    )
    assert isinstance(updated.rate_limit_policy, RateLimitPolicy)
    assert updated.rate_limit_policy.quota == "100"  # int64 as a JSON string
    assert updated.rate_limit_policy.window == "60s"
    assert isinstance(updated.ip_restriction, IPRestriction)
    assert updated.ip_restriction.allowed_cidrs == ["10.0.0.0/8", "2001:db8::/32"]

    # Masked and absent: cleared again.
    updated = api.admin_update_issued_api_key(
        key_id, AdminUpdateIssuedApiKeyRequest(), update_mask="rate_limit_policy,ip_restriction,name"
    )
    assert updated.rate_limit_policy is None
    assert updated.ip_restriction is None or not updated.ip_restriction.allowed_cidrs
    assert not updated.name
    assert updated.scopes == ["admin", "read"]


def test_update_issued_key_errors(api: ApiKeysApi) -> None:
    issued = issue(api, new_actor())
    key_id = issued.issued_api_key.key_id
    for mask in ("key_id", "actor_id", "bogus", "name,expire_time"):
        expect_error(
            BadRequestException, 400, api.admin_update_issued_api_key,
            key_id, AdminUpdateIssuedApiKeyRequest(name="x"), update_mask=mask,
            grpc_status="INVALID_ARGUMENT",
        )
    assert api.admin_get_issued_api_key(key_id).name == issued.issued_api_key.name

    expect_error(
        NotFoundException, 404, api.admin_update_issued_api_key,
        str(uuid.uuid4()), AdminUpdateIssuedApiKeyRequest(name="x"),
        grpc_status="NOT_FOUND",
    )
    # A wrongly typed known field: the IP restriction must hold valid CIDRs.
    expect_error(
        BadRequestException, 400, api.admin_update_issued_api_key,
        key_id, AdminUpdateIssuedApiKeyRequest(ip_restriction=IPRestriction(allowed_cidrs=["not-a-cidr"])),
        update_mask="ip_restriction",
    )


# ---------------------------------------------------------------------------
# POST /v2alpha1/admin/issuedApiKeys/{key_id}:rotate
# ---------------------------------------------------------------------------


def test_rotate_issued_key(api: ApiKeysApi) -> None:
    actor = new_actor()
    old = issue(api, actor, name="to-rotate", scopes=["read", "write"], metadata={"gen": 1})
    old_id = old.issued_api_key.key_id

    http = api.admin_rotate_issued_api_key_with_http_info(
        old_id, AdminRotateIssuedApiKeyBody(name="rotated", scopes=["read"])
    )
    assert http.status_code == 201
    resp = http.data
    assert isinstance(resp, RotateIssuedApiKeyResponse)

    assert isinstance(resp.secret, str) and ISSUED_KEY_RE.fullmatch(resp.secret), resp.secret
    assert resp.secret != old.secret
    new = resp.issued_api_key
    assert isinstance(new, IssuedApiKey)
    assert new.key_id != old_id
    assert uuid.UUID(new.key_id).version == 4
    assert new.actor_id == actor  # inherited
    assert new.name == "rotated"  # overridden
    assert new.scopes == ["read"]  # overridden
    assert new.metadata == {"gen": 1}  # absent: inherited
    assert new.status == KeyStatus.KEY_STATUS_ACTIVE
    assert new.visibility == KeyVisibility.KEY_VISIBILITY_SECRET
    assert_same_instant(new.expire_time, old.issued_api_key.expire_time, "expire_time (inherited)")

    prev = resp.old_issued_api_key
    assert isinstance(prev, IssuedApiKey)
    assert prev.key_id == old_id
    assert prev.status == KeyStatus.KEY_STATUS_REVOKED
    assert prev.revocation_reason == RevocationReason.REVOCATION_REASON_SUPERSEDED

    location = header(http.headers, "Location")
    assert location is not None and location.endswith(f"{ISSUED_PATH}/{new.key_id}"), location

    # The new secret works; the old one is revoked at once (no grace period requested).
    res = fresh_verify(api, resp.secret)
    assert res.is_valid is True
    assert res.key_id == new.key_id and res.scopes == ["read"] and res.actor_id == actor
    res = fresh_verify(api, old.secret)
    assert res.is_valid is False
    assert res.error_code == VerificationErrorCode.VERIFICATION_ERROR_REVOKED

    got = api.admin_get_issued_api_key(old_id)
    assert got.status == KeyStatus.KEY_STATUS_REVOKED
    assert got.revocation_reason == RevocationReason.REVOCATION_REASON_SUPERSEDED
    assert api.admin_get_issued_api_key(new.key_id).name == "rotated"

    # Both keys belong to the actor; only the new one is active.
    listed = api.admin_list_issued_api_keys(filter=f'actor_id="{actor}"')
    assert {k.key_id: k.status for k in listed.issued_api_keys or []} == {
        old_id: KeyStatus.KEY_STATUS_REVOKED,
        new.key_id: KeyStatus.KEY_STATUS_ACTIVE,
    }
    active = api.admin_list_issued_api_keys(filter=f'actor_id="{actor}" AND status=KEY_STATUS_ACTIVE')
    assert [k.key_id for k in active.issued_api_keys or []] == [new.key_id]

    # Rotating the (now revoked) old key again: 409 FAILED_PRECONDITION.
    expect_error(
        ConflictException, 409, api.admin_rotate_issued_api_key,
        old_id, AdminRotateIssuedApiKeyBody(), grpc_status="FAILED_PRECONDITION",
    )
    expect_error(
        NotFoundException, 404, api.admin_rotate_issued_api_key,
        str(uuid.uuid4()), AdminRotateIssuedApiKeyBody(), grpc_status="NOT_FOUND",
    )


def test_rotate_with_empty_body_inherits_and_empty_list_overrides(api: ApiKeysApi) -> None:
    actor = new_actor()
    old = issue(api, actor, name="inherit-me", scopes=["a", "b"], metadata={"k": "v"})

    resp = api.admin_rotate_issued_api_key(old.issued_api_key.key_id, AdminRotateIssuedApiKeyBody())
    assert isinstance(resp, RotateIssuedApiKeyResponse)
    new = resp.issued_api_key
    assert (new.name, new.scopes, new.metadata, new.actor_id) == ("inherit-me", ["a", "b"], {"k": "v"}, actor)

    # Present-but-empty overrides: scopes=[] and metadata={} are sent by the SDK.
    resp2 = api.admin_rotate_issued_api_key(new.key_id, AdminRotateIssuedApiKeyBody(scopes=[], metadata={}))
    assert not resp2.issued_api_key.scopes
    assert not resp2.issued_api_key.metadata
    assert resp2.issued_api_key.name == "inherit-me"
    res = fresh_verify(api, resp2.secret)
    assert res.is_valid is True and not res.scopes


# ---------------------------------------------------------------------------
# POST /v2alpha1/admin/importedApiKeys
# ---------------------------------------------------------------------------


def test_import_key(api: ApiKeysApi) -> None:
    actor = new_actor()
    raw = new_raw_key()
    metadata = {"source": "legacy", "n": 2}
    before = datetime.now(timezone.utc)

    http = api.admin_import_api_key_with_http_info(
        ImportApiKeyRequest(
            raw_key=raw, name="legacy key", actor_id=actor, scopes=["read", "write"],
            metadata=metadata, ttl="3600s",
        )
    )
    assert http.status_code == 201
    key = http.data
    assert isinstance(key, ImportedApiKey)
    assert HEX64_RE.fullmatch(key.key_id), key.key_id
    assert key.key_id == imported_key_id(raw), "key_id must be SHA-512/256(nid || 0x00 || raw_key)"
    assert key.name == "legacy key"
    assert key.actor_id == actor
    assert key.scopes == ["read", "write"]
    assert key.metadata == metadata
    assert key.status == KeyStatus.KEY_STATUS_ACTIVE
    assert key.visibility == KeyVisibility.KEY_VISIBILITY_SECRET
    create_time = assert_aware(key.create_time, "create_time")
    assert abs((create_time - before).total_seconds()) < 60
    expire_time = assert_aware(key.expire_time, "expire_time")
    assert abs((expire_time - create_time - timedelta(seconds=3600)).total_seconds()) <= 5
    assert raw not in json.dumps(key.to_dict(), default=str), "the raw key is never returned"

    location = header(http.headers, "Location")
    assert location is not None and location.endswith(f"{IMPORTED_PATH}/{key.key_id}"), location

    res = verify(api, raw)
    assert res.is_valid is True
    assert res.key_id == key.key_id
    assert res.actor_id == actor
    assert res.scopes == ["read", "write"]
    assert res.metadata == metadata
    assert res.visibility == KeyVisibility.KEY_VISIBILITY_SECRET
    if TALOS_ISSUER:
        assert res.issuer == TALOS_ISSUER


def test_import_is_idempotent_on_request_id(api: ApiKeysApi) -> None:
    actor = new_actor()
    raw = new_raw_key()
    req = ImportApiKeyRequest(raw_key=raw, name="idem", actor_id=actor, ttl="3600s", request_id=str(uuid.uuid4()))
    first = api.admin_import_api_key_with_http_info(req)
    second = api.admin_import_api_key_with_http_info(req)
    assert first.status_code == 201 and second.status_code == 201
    assert isinstance(second.data, ImportedApiKey)
    assert second.data.key_id == first.data.key_id == imported_key_id(raw)
    listed = api.admin_list_imported_api_keys(filter=f'actor_id="{actor}"')
    assert [k.key_id for k in listed.imported_api_keys or []] == [first.data.key_id]


def test_import_errors(api: ApiKeysApi) -> None:
    actor = new_actor()
    raw, _ = import_key(api, actor)

    # The same raw key again: 409 api_key_exists.
    expect_error(
        ConflictException, 409, api.admin_import_api_key,
        ImportApiKeyRequest(raw_key=raw, name="dup", actor_id=actor, ttl="3600s"),
        grpc_status="ALREADY_EXISTS", reason="API_KEY_EXISTS",
    )

    # Required fields.
    for missing in ("raw_key", "name", "actor_id"):
        fields = dict(raw_key=new_raw_key(), name="n", actor_id=actor, ttl="3600s")
        del fields[missing]
        expect_error(
            BadRequestException, 400, api.admin_import_api_key, ImportApiKeyRequest(**fields),
            grpc_status="INVALID_ARGUMENT",
        )

    # A raw key that would route as an issued key: 409 Conflict.
    issued = issue(api, new_actor())
    expect_error(
        ConflictException, 409, api.admin_import_api_key,
        ImportApiKeyRequest(raw_key=issued.secret, name="n", actor_id=actor, ttl="3600s"),
    )
    # Raw keys that would route as derived tokens (JWT, macaroon): 409 FAILED_PRECONDITION.
    for derived_shaped in ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln", "mc_v1_AgEWaHR0cA"):
        expect_error(
            ConflictException, 409, api.admin_import_api_key,
            ImportApiKeyRequest(raw_key=derived_shaped, name="n", actor_id=actor, ttl="3600s"),
            grpc_status="FAILED_PRECONDITION",
        )
    # ttl "0s" means "no expiry", which is refused.
    expect_error(
        BadRequestException, 400, api.admin_import_api_key,
        ImportApiKeyRequest(raw_key=new_raw_key(), name="n", actor_id=actor, ttl="0s"),
    )


# ---------------------------------------------------------------------------
# POST /v2alpha1/admin/importedApiKeys:batchCreate
# ---------------------------------------------------------------------------


def test_batch_create_imported_keys_partial_success(api: ApiKeysApi) -> None:
    actor = new_actor()
    existing_raw, _ = import_key(api, actor)
    raw_a, raw_b = new_raw_key(), new_raw_key()
    issued = issue(api, new_actor())

    def item(raw: Optional[str], name: Optional[str] = "batch") -> ImportApiKeyRequest:
        return ImportApiKeyRequest(raw_key=raw, name=name, actor_id=actor, scopes=["batch"], ttl="3600s")

    http = api.admin_batch_create_imported_api_keys_with_http_info(
        BatchCreateImportedApiKeysRequest(
            requests=[
                item(raw_a),                # 0 ok
                item(raw_b),                # 1 ok
                item(raw_a),                # 2 duplicate within the batch
                item(existing_raw),         # 3 already in the store
                item(issued.secret),        # 4 issued-key format
                item(new_raw_key(), None),  # 5 no name
            ]
        )
    )
    assert http.status_code == 200
    resp = http.data
    assert isinstance(resp, BatchCreateImportedApiKeysResponse)
    assert resp.success_count == 2
    assert resp.failure_count == 4
    results = resp.results or []
    assert len(results) == 6
    assert all(isinstance(r, BatchCreateImportedApiKeysResult) for r in results)
    by_index = {r.index or 0: r for r in results}  # proto3 JSON may omit index 0
    assert sorted(by_index) == list(range(6))

    for i, raw in ((0, raw_a), (1, raw_b)):
        r = by_index[i]
        assert isinstance(r.imported_api_key, ImportedApiKey)
        assert r.imported_api_key.key_id == imported_key_id(raw)
        assert r.imported_api_key.actor_id == actor
        assert r.imported_api_key.scopes == ["batch"]
        assert r.imported_api_key.status == KeyStatus.KEY_STATUS_ACTIVE
        assert r.error_code in (None, BatchCreateImportedApiKeysErrorCode.BATCH_CREATE_IMPORTED_API_KEYS_ERROR_UNSPECIFIED)

    expected = {
        2: BatchCreateImportedApiKeysErrorCode.BATCH_CREATE_IMPORTED_API_KEYS_ERROR_ALREADY_EXISTS,
        3: BatchCreateImportedApiKeysErrorCode.BATCH_CREATE_IMPORTED_API_KEYS_ERROR_ALREADY_EXISTS,
        4: BatchCreateImportedApiKeysErrorCode.BATCH_CREATE_IMPORTED_API_KEYS_ERROR_FAILED_PRECONDITION,
        5: BatchCreateImportedApiKeysErrorCode.BATCH_CREATE_IMPORTED_API_KEYS_ERROR_INVALID_ARGUMENT,
    }
    for i, code in expected.items():
        r = by_index[i]
        assert r.error_code == code, (i, r)
        assert isinstance(r.error_message, str) and r.error_message, (i, r)
        assert r.imported_api_key is None, (i, r)

    for raw in (raw_a, raw_b):
        res = verify(api, raw)
        assert res.is_valid is True and res.key_id == imported_key_id(raw)
    assert api.admin_get_imported_api_key(imported_key_id(raw_b)).actor_id == actor


def test_batch_create_errors(api: ApiKeysApi) -> None:
    actor = new_actor()
    raw, _ = import_key(api, actor)
    # Every item fails with ALREADY_EXISTS: the whole request is 409 api_key_exists.
    expect_error(
        ConflictException, 409, api.admin_batch_create_imported_api_keys,
        BatchCreateImportedApiKeysRequest(
            requests=[ImportApiKeyRequest(raw_key=raw, name="n", actor_id=actor, ttl="3600s")] * 2
        ),
        grpc_status="ALREADY_EXISTS", reason="API_KEY_EXISTS",
    )
    # Every item fails validation: 400.
    expect_error(
        BadRequestException, 400, api.admin_batch_create_imported_api_keys,
        BatchCreateImportedApiKeysRequest(requests=[ImportApiKeyRequest(raw_key=new_raw_key(), actor_id=actor)]),
        grpc_status="INVALID_ARGUMENT",
    )
    # An empty batch: 400.
    expect_error(
        BadRequestException, 400, api.admin_batch_create_imported_api_keys,
        BatchCreateImportedApiKeysRequest(requests=[]), grpc_status="INVALID_ARGUMENT",
    )


# ---------------------------------------------------------------------------
# GET /v2alpha1/admin/importedApiKeys and /{key_id}
# ---------------------------------------------------------------------------


def test_list_imported_keys(api: ApiKeysApi) -> None:
    actor = new_actor()
    ids = {import_key(api, actor, name=f"list-{i}")[1].key_id for i in range(3)}
    import_key(api, new_actor(), name="someone else")
    flt = f'actor_id="{actor}"'

    page1 = api.admin_list_imported_api_keys(page_size=2, filter=flt)
    assert isinstance(page1, ListImportedApiKeysResponse)
    keys1 = page1.imported_api_keys or []
    assert len(keys1) == 2 and all(isinstance(k, ImportedApiKey) for k in keys1)
    assert isinstance(page1.next_page_token, str) and page1.next_page_token

    page2 = api.admin_list_imported_api_keys(page_size=2, filter=flt, page_token=page1.next_page_token)
    keys2 = page2.imported_api_keys or []
    assert len(keys2) == 1
    assert not page2.next_page_token
    assert sorted(k.key_id for k in keys1 + keys2) == sorted(ids)
    for key in keys1 + keys2:
        assert key.actor_id == actor
        assert HEX64_RE.fullmatch(key.key_id)
        assert key.status == KeyStatus.KEY_STATUS_ACTIVE
    times = [k.create_time for k in keys1 + keys2]
    assert times == sorted(times, reverse=True)

    # Revoke one; the status filter then splits them.
    revoked_id = keys2[0].key_id
    api.admin_revoke_imported_api_key(
        revoked_id, AdminRevokeImportedApiKeyBody(reason=RevocationReason.REVOCATION_REASON_SUPERSEDED)
    )
    active = api.admin_list_imported_api_keys(filter=f"{flt} AND status=KEY_STATUS_ACTIVE")
    assert sorted(k.key_id for k in active.imported_api_keys or []) == sorted(ids - {revoked_id})
    revoked = api.admin_list_imported_api_keys(filter=f"{flt} AND status=KEY_STATUS_REVOKED")
    assert [k.key_id for k in revoked.imported_api_keys or []] == [revoked_id]

    expect_error(
        BadRequestException, 400, api.admin_list_imported_api_keys,
        filter='actor_id="a" OR actor_id="b"', grpc_status="INVALID_ARGUMENT",
    )
    expect_error(
        BadRequestException, 400, api.admin_list_imported_api_keys,
        page_size=1, filter=flt, page_token="not-a-page-token", grpc_status="INVALID_ARGUMENT",
    )


def test_get_imported_key(api: ApiKeysApi) -> None:
    actor = new_actor()
    raw, imported = import_key(api, actor, scopes=["s1"], metadata={"k": [1, 2]})

    http = api.admin_get_imported_api_key_with_http_info(imported.key_id)
    assert http.status_code == 200
    got = http.data
    assert isinstance(got, ImportedApiKey)
    assert got.key_id == imported.key_id == imported_key_id(raw)
    assert got.actor_id == actor
    assert got.scopes == ["s1"]
    assert got.metadata == {"k": [1, 2]}
    assert got.status == KeyStatus.KEY_STATUS_ACTIVE
    assert_same_instant(got.expire_time, imported.expire_time, "expire_time")
    assert_same_instant(got.create_time, imported.create_time, "create_time")

    expect_error(
        NotFoundException, 404, api.admin_get_imported_api_key, imported_key_id(new_raw_key()),
        grpc_status="NOT_FOUND", reason="API_KEY_NOT_FOUND",
    )
    # An issued key id is not an imported key.
    expect_error(NotFoundException, 404, api.admin_get_imported_api_key, str(uuid.uuid4()))


# ---------------------------------------------------------------------------
# PATCH /v2alpha1/admin/importedApiKeys/{key_id}
# ---------------------------------------------------------------------------


def test_update_imported_key(api: ApiKeysApi) -> None:
    actor = new_actor()
    raw, imported = import_key(api, actor, name="imp-before", scopes=["read"], metadata={"a": 1})

    http = api.admin_update_imported_api_key_with_http_info(
        imported.key_id, AdminUpdateImportedApiKeyRequest(name="imp-after", actor_id="not-applied")
    )
    assert http.status_code == 200
    updated = http.data
    assert isinstance(updated, ImportedApiKey)
    assert updated.key_id == imported.key_id
    assert updated.name == "imp-after"
    assert updated.actor_id == actor
    assert updated.scopes == ["read"]
    assert updated.metadata == {"a": 1}

    updated = api.admin_update_imported_api_key(
        imported.key_id,
        AdminUpdateImportedApiKeyRequest(name="not-applied", scopes=["write"], metadata={"b": True}),
        update_mask="scopes,metadata",
    )
    assert updated.name == "imp-after"
    assert updated.scopes == ["write"]
    assert updated.metadata == {"b": True}
    res = fresh_verify(api, raw)
    assert res.is_valid is True and res.scopes == ["write"] and res.metadata == {"b": True}

    expect_error(
        BadRequestException, 400, api.admin_update_imported_api_key,
        imported.key_id, AdminUpdateImportedApiKeyRequest(name="x"), update_mask="status",
        grpc_status="INVALID_ARGUMENT",
    )
    expect_error(
        NotFoundException, 404, api.admin_update_imported_api_key,
        imported_key_id(new_raw_key()), AdminUpdateImportedApiKeyRequest(name="x"),
        grpc_status="NOT_FOUND",
    )


# ---------------------------------------------------------------------------
# POST /v2alpha1/admin/importedApiKeys/{key_id}:revoke  (and issued-key revoke bodies)
# ---------------------------------------------------------------------------


def test_revoke_imported_key(api: ApiKeysApi) -> None:
    actor = new_actor()
    raw, imported = import_key(api, actor)
    assert verify(api, raw).is_valid is True

    body = AdminRevokeImportedApiKeyBody(reason=RevocationReason.REVOCATION_REASON_KEY_COMPROMISE)
    http = api.admin_revoke_imported_api_key_with_http_info(imported.key_id, body)
    assert http.status_code == 204
    assert http.data is None

    res = fresh_verify(api, raw)
    assert res.is_valid is False
    assert res.error_code == VerificationErrorCode.VERIFICATION_ERROR_REVOKED
    got = api.admin_get_imported_api_key(imported.key_id)
    assert got.status == KeyStatus.KEY_STATUS_REVOKED
    assert got.revocation_reason == RevocationReason.REVOCATION_REASON_KEY_COMPROMISE
    # Revocation keeps the row for at least 30 days.
    assert got.expire_time >= datetime.now(timezone.utc) + timedelta(days=29)

    expect_error(ConflictException, 409, api.admin_revoke_imported_api_key, imported.key_id, body)
    expect_error(
        NotFoundException, 404, api.admin_revoke_imported_api_key, imported_key_id(new_raw_key()), body,
        grpc_status="NOT_FOUND",
    )


@pytest.mark.parametrize("kind", ["issued", "imported"])
def test_revoke_reason_and_description_rules(api: ApiKeysApi, kind: str) -> None:
    actor = new_actor()
    if kind == "issued":
        key_id = issue(api, actor).issued_api_key.key_id
        body_type, revoke, get = (
            AdminRevokeIssuedApiKeyBody, api.admin_revoke_issued_api_key, api.admin_get_issued_api_key,
        )
    else:
        key_id = import_key(api, actor)[1].key_id
        body_type, revoke, get = (
            AdminRevokeImportedApiKeyBody, api.admin_revoke_imported_api_key, api.admin_get_imported_api_key,
        )

    # UNSPECIFIED (the SDK's default) is rejected.
    expect_error(BadRequestException, 400, revoke, key_id, body_type(), grpc_status="INVALID_ARGUMENT")
    # A description needs PRIVILEGE_WITHDRAWN.
    expect_error(
        BadRequestException, 400, revoke, key_id,
        body_type(reason=RevocationReason.REVOCATION_REASON_KEY_COMPROMISE, description="why"),
        grpc_status="INVALID_ARGUMENT",
    )
    assert get(key_id).status == KeyStatus.KEY_STATUS_ACTIVE

    assert revoke(
        key_id, body_type(reason=RevocationReason.REVOCATION_REASON_PRIVILEGE_WITHDRAWN, description="left the team")
    ) is None
    got = get(key_id)
    assert got.status == KeyStatus.KEY_STATUS_REVOKED
    assert got.revocation_reason == RevocationReason.REVOCATION_REASON_PRIVILEGE_WITHDRAWN
    assert got.revocation_description == "left the team"


# ---------------------------------------------------------------------------
# DELETE /v2alpha1/admin/importedApiKeys/{key_id}
# ---------------------------------------------------------------------------


def test_delete_imported_key(api: ApiKeysApi) -> None:
    actor = new_actor()
    raw, imported = import_key(api, actor)

    http = api.admin_delete_imported_api_key_with_http_info(imported.key_id)
    assert http.status_code == 204
    assert http.data is None

    expect_error(NotFoundException, 404, api.admin_get_imported_api_key, imported.key_id, grpc_status="NOT_FOUND")
    res = fresh_verify(api, raw)
    assert res.is_valid is False
    assert res.error_code == VerificationErrorCode.VERIFICATION_ERROR_NOT_FOUND
    assert api.admin_list_imported_api_keys(filter=f'actor_id="{actor}"').imported_api_keys in (None, [])

    expect_error(
        NotFoundException, 404, api.admin_delete_imported_api_key, imported.key_id, grpc_status="NOT_FOUND",
    )
    # A hard delete: the same raw key can be imported again.
    again = api.admin_import_api_key(ImportApiKeyRequest(raw_key=raw, name="again", actor_id=actor, ttl="3600s"))
    assert again.key_id == imported.key_id
    assert api.admin_delete_imported_api_key(again.key_id) is None


# ---------------------------------------------------------------------------
# POST /v2alpha1/admin/apiKeys:derive
# ---------------------------------------------------------------------------


def test_derive_jwt(api: ApiKeysApi) -> None:
    actor = new_actor()
    parent = issue(api, actor, scopes=["read", "write"], metadata={"plan": "pro"})
    parent_id = parent.issued_api_key.key_id
    before = datetime.now(timezone.utc)

    http = api.admin_derive_token_with_http_info(
        DeriveTokenRequest(
            credential=parent.secret,
            algorithm=TokenAlgorithm.TOKEN_ALGORITHM_JWT,
            scopes=["read"],
            ttl="600s",
            custom_claims={"tenant": "acme", "sub": "evil", "exp": 1, "scp": ["admin"]},
        )
    )
    assert http.status_code == 200
    resp = http.data
    assert isinstance(resp, DeriveTokenResponse)
    token = resp.token
    assert isinstance(token, Token)
    assert isinstance(token.token, str) and JWT_RE.fullmatch(token.token), token.token
    assert token.scopes == ["read"]
    expire_time = assert_aware(token.expire_time, "expire_time")
    assert abs((expire_time - before - timedelta(seconds=600)).total_seconds()) < 30
    assert not token.audiences
    # Reserved names are dropped from the custom claims; the rest is merged with the metadata.
    assert isinstance(token.claims, dict)
    assert token.claims.get("tenant") == "acme"
    assert token.claims.get("plan") == "pro"
    assert "sub" not in token.claims and "scp" not in token.claims

    hdr = jwt_part(token.token, 0)
    assert hdr["alg"] == "EdDSA" and hdr["kid"] == "sdk-ed25519", hdr
    payload = jwt_part(token.token, 1)
    assert payload["sub"] == parent_id and payload["scp"] == ["read"] and payload["tenant"] == "acme"
    assert payload["exp"] == int(expire_time.timestamp())

    res = verify(api, token.token)
    assert res.is_valid is True
    assert res.key_id == parent_id
    assert res.actor_id == actor
    assert res.scopes == ["read"]
    assert res.status == KeyStatus.KEY_STATUS_ACTIVE
    assert res.visibility == KeyVisibility.KEY_VISIBILITY_SECRET
    assert res.metadata.get("plan") == "pro" and res.metadata.get("tenant") == "acme"
    assert_same_instant(res.expire_time, expire_time, "expire_time")
    if TALOS_ISSUER:
        assert res.issuer == TALOS_ISSUER

    # UNSPECIFIED algorithm (the SDK default) means JWT; no scopes means the parent's.
    default = api.admin_derive_token(DeriveTokenRequest(credential=parent.secret, ttl="60s")).token
    assert JWT_RE.fullmatch(default.token)
    assert default.scopes == ["read", "write"]

    # Batch verify takes derived tokens too, in request order.
    batch = api.admin_batch_verify_api_keys(
        BatchVerifyApiKeysRequest(
            requests=[
                VerifyApiKeyRequest(credential=default.token),
                VerifyApiKeyRequest(credential=token.token[:-4] + "AAAA"),
                VerifyApiKeyRequest(credential=parent.secret),
            ]
        )
    )
    results = batch.results or []
    assert [r.is_valid for r in results] == [True, False, True]
    assert results[0].key_id == parent_id and results[0].scopes == ["read", "write"]
    assert results[1].error_code == VerificationErrorCode.VERIFICATION_ERROR_SIGNATURE_INVALID
    assert results[2].key_id == parent_id


def test_derive_jwt_with_audiences(api: ApiKeysApi) -> None:
    parent = issue(api, new_actor())
    token = api.admin_derive_token(
        DeriveTokenRequest(credential=parent.secret, audiences=["svc-a", "svc-b"], ttl="60s")
    ).token
    assert token.audiences == ["svc-a", "svc-b"]

    res = api.admin_verify_api_key(VerifyApiKeyRequest(credential=token.token, expected_audiences=["svc-b"]))
    assert res.is_valid is True
    assert res.audiences == ["svc-a", "svc-b"]
    for expected in ([], ["svc-c"]):
        res = api.admin_verify_api_key(VerifyApiKeyRequest(credential=token.token, expected_audiences=expected))
        assert res.is_valid is False
        assert res.error_code == VerificationErrorCode.VERIFICATION_ERROR_AUDIENCE_MISMATCH
    # An API key names no audience: any expectation fails it (decisions.md §5.12).
    res = api.admin_verify_api_key(VerifyApiKeyRequest(credential=parent.secret, expected_audiences=["svc-a"]))
    assert res.is_valid is False
    assert res.error_code == VerificationErrorCode.VERIFICATION_ERROR_AUDIENCE_MISMATCH


def test_derive_macaroon(api: ApiKeysApi) -> None:
    actor = new_actor()
    raw, imported = import_key(api, actor, scopes=["read", "write"], metadata={"m": 1})

    resp = api.admin_derive_token(
        DeriveTokenRequest(credential=raw, algorithm=TokenAlgorithm.TOKEN_ALGORITHM_MACAROON, ttl="300s")
    )
    assert isinstance(resp, DeriveTokenResponse)
    token = resp.token
    assert isinstance(token.token, str) and MACAROON_RE.fullmatch(token.token), token.token
    assert token.scopes == ["read", "write"]
    assert_aware(token.expire_time, "expire_time")

    res = verify(api, token.token)
    assert res.is_valid is True
    assert res.key_id == imported.key_id
    assert res.actor_id == actor
    assert res.scopes == ["read", "write"]
    assert res.metadata == {"m": 1}
    assert_same_instant(res.expire_time, token.expire_time, "expire_time")

    # A flipped byte in the macaroon breaks its HMAC chain.
    body = bytearray(b64url_decode(token.token[len("mc_v1_"):]))
    body[-1] ^= 0x01
    tampered = "mc_v1_" + base64.urlsafe_b64encode(bytes(body)).decode().rstrip("=")
    res = verify(api, tampered)
    assert res.is_valid is False
    assert res.error_code == VerificationErrorCode.VERIFICATION_ERROR_SIGNATURE_INVALID


def test_derived_tokens_outlive_a_revoked_parent(api: ApiKeysApi) -> None:
    parent = issue(api, new_actor())
    jwt_token = api.admin_derive_token(DeriveTokenRequest(credential=parent.secret, ttl="60s")).token.token
    mac_token = api.admin_derive_token(
        DeriveTokenRequest(credential=parent.secret, algorithm=TokenAlgorithm.TOKEN_ALGORITHM_MACAROON, ttl="60s")
    ).token.token
    api.admin_revoke_issued_api_key(
        parent.issued_api_key.key_id,
        AdminRevokeIssuedApiKeyBody(reason=RevocationReason.REVOCATION_REASON_KEY_COMPROMISE),
    )
    assert fresh_verify(api, parent.secret).error_code == VerificationErrorCode.VERIFICATION_ERROR_REVOKED
    # Documented trade-off (talos-api.md §5.3): stateless tokens live until exp.
    assert fresh_verify(api, jwt_token).is_valid is True
    assert fresh_verify(api, mac_token).is_valid is True

    # ...but a revoked parent cannot mint new ones: 403.
    expect_error(
        ForbiddenException, 403, api.admin_derive_token,
        DeriveTokenRequest(credential=parent.secret, ttl="60s"), grpc_status="PERMISSION_DENIED",
    )


def test_derive_errors(api: ApiKeysApi) -> None:
    parent = issue(api, new_actor(), scopes=["read"], ttl="3600s")

    # A scope the parent does not have: 403.
    expect_error(
        ForbiddenException, 403, api.admin_derive_token,
        DeriveTokenRequest(credential=parent.secret, scopes=["read", "admin"], ttl="60s"),
        grpc_status="PERMISSION_DENIED",
    )
    # An unknown or forged parent: 401.
    expect_error(
        UnauthorizedException, 401, api.admin_derive_token,
        DeriveTokenRequest(credential=f"garbage-{uuid.uuid4()}", ttl="60s"), grpc_status="UNAUTHENTICATED",
    )
    forged = parent.secret[:-1] + ("2" if parent.secret[-1] != "2" else "3")
    expect_error(
        UnauthorizedException, 401, api.admin_derive_token, DeriveTokenRequest(credential=forged, ttl="60s"),
    )
    # A derived token cannot mint successors: 400 invalid_token_type (decisions.md §5.11).
    for algorithm in (TokenAlgorithm.TOKEN_ALGORITHM_JWT, TokenAlgorithm.TOKEN_ALGORITHM_MACAROON):
        derived = api.admin_derive_token(
            DeriveTokenRequest(credential=parent.secret, algorithm=algorithm, ttl="60s")
        ).token.token
        expect_error(
            BadRequestException, 400, api.admin_derive_token,
            DeriveTokenRequest(credential=derived, ttl="30s"),
            grpc_status="INVALID_ARGUMENT", reason="INVALID_TOKEN_TYPE",
        )
    # A ttl beyond the parent's remaining lifetime: 400.
    expect_error(
        BadRequestException, 400, api.admin_derive_token,
        DeriveTokenRequest(credential=parent.secret, ttl="7200s"), grpc_status="INVALID_ARGUMENT",
    )
    # An empty credential: 400 (not an authentication failure).
    expect_error(BadRequestException, 400, api.admin_derive_token, DeriveTokenRequest(credential="", ttl="60s"))


# ---------------------------------------------------------------------------
# GET /v2alpha1/derivedKeys/jwks.json
# ---------------------------------------------------------------------------


def test_get_jwks(api: ApiKeysApi) -> None:
    http = api.get_jwks_with_http_info()
    assert http.status_code == 200
    resp = http.data
    assert isinstance(resp, GetJWKSResponse)
    assert isinstance(resp.jwks, GetJWKSResponseJwks)
    keys = resp.jwks.keys
    assert keys and all(isinstance(k, GetJWKSResponseJwksKeysInner) for k in keys)
    by_kid = {k.kid: k for k in keys}
    assert "sdk-ed25519" in by_kid, [k.kid for k in keys]
    key = by_kid["sdk-ed25519"]
    assert key.kty == "OKP"
    assert key.crv == "Ed25519"
    assert key.alg == "EdDSA"
    assert key.use in (None, "sig")
    assert len(b64url_decode(key.x)) == 32
    for k in keys:
        # Public parts only: no private or symmetric material (it would land here).
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(k.additional_properties), k

    if TALOS_JWKS_URL:
        configured = json.loads(base64.b64decode(TALOS_JWKS_URL[len("base64://"):]))
        private = {k["kid"]: k for k in configured["keys"]}["sdk-ed25519"]
        assert key.x == private["x"], "the served public key must be the configured key's"

    # A derived JWT names this key in its header.
    parent = issue(api, new_actor())
    token = api.admin_derive_token(DeriveTokenRequest(credential=parent.secret, ttl="60s")).token.token
    assert jwt_part(token, 0)["kid"] in by_kid


# ---------------------------------------------------------------------------
# POST /v2alpha1/apiKeys:selfRevoke
# ---------------------------------------------------------------------------


def test_self_revoke_issued_key(api: ApiKeysApi) -> None:
    issued = issue(api, new_actor())
    key_id = issued.issued_api_key.key_id

    http = api.revoke_api_key_with_http_info(
        SelfRevokeApiKeyRequest(credential=issued.secret, reason=RevocationReason.REVOCATION_REASON_KEY_COMPROMISE)
    )
    assert http.status_code == 200
    assert http.data == {}

    res = fresh_verify(api, issued.secret)
    assert res.is_valid is False
    assert res.error_code == VerificationErrorCode.VERIFICATION_ERROR_REVOKED
    got = api.admin_get_issued_api_key(key_id)
    assert got.status == KeyStatus.KEY_STATUS_REVOKED
    assert got.revocation_reason == RevocationReason.REVOCATION_REASON_KEY_COMPROMISE

    # Idempotent: revoking an already revoked key succeeds again.
    again = api.revoke_api_key(
        SelfRevokeApiKeyRequest(credential=issued.secret, reason=RevocationReason.REVOCATION_REASON_SUPERSEDED)
    )
    assert again == {}


def test_self_revoke_imported_key(api: ApiKeysApi) -> None:
    raw, imported = import_key(api, new_actor())
    assert api.revoke_api_key(
        SelfRevokeApiKeyRequest(credential=raw, reason=RevocationReason.REVOCATION_REASON_AFFILIATION_CHANGED)
    ) == {}
    got = api.admin_get_imported_api_key(imported.key_id)
    assert got.status == KeyStatus.KEY_STATUS_REVOKED
    assert got.revocation_reason == RevocationReason.REVOCATION_REASON_AFFILIATION_CHANGED
    assert fresh_verify(api, raw).error_code == VerificationErrorCode.VERIFICATION_ERROR_REVOKED


def test_self_revoke_errors(api: ApiKeysApi) -> None:
    issued = issue(api, new_actor())
    reason = RevocationReason.REVOCATION_REASON_KEY_COMPROMISE

    # Not found / bad checksum: 404.
    expect_error(
        NotFoundException, 404, api.revoke_api_key,
        SelfRevokeApiKeyRequest(credential=f"garbage-{uuid.uuid4()}", reason=reason), grpc_status="NOT_FOUND",
    )
    forged = issued.secret[:-1] + ("2" if issued.secret[-1] != "2" else "3")
    expect_error(NotFoundException, 404, api.revoke_api_key, SelfRevokeApiKeyRequest(credential=forged, reason=reason))
    # Reasons: PRIVILEGE_WITHDRAWN is admin-only; UNSPECIFIED (the SDK default) is rejected.
    expect_error(
        BadRequestException, 400, api.revoke_api_key,
        SelfRevokeApiKeyRequest(credential=issued.secret, reason=RevocationReason.REVOCATION_REASON_PRIVILEGE_WITHDRAWN),
        grpc_status="INVALID_ARGUMENT",
    )
    expect_error(
        BadRequestException, 400, api.revoke_api_key, SelfRevokeApiKeyRequest(credential=issued.secret),
        grpc_status="INVALID_ARGUMENT",
    )
    # An empty credential: 400 credential_required.
    expect_error(
        BadRequestException, 400, api.revoke_api_key, SelfRevokeApiKeyRequest(credential="", reason=reason),
        reason="CREDENTIAL_REQUIRED",
    )
    # Derived tokens cannot be revoked: 400 derived_token_not_revocable.
    for algorithm in (TokenAlgorithm.TOKEN_ALGORITHM_JWT, TokenAlgorithm.TOKEN_ALGORITHM_MACAROON):
        derived = api.admin_derive_token(
            DeriveTokenRequest(credential=issued.secret, algorithm=algorithm, ttl="60s")
        ).token.token
        expect_error(
            BadRequestException, 400, api.revoke_api_key, SelfRevokeApiKeyRequest(credential=derived, reason=reason),
            reason="DERIVED_TOKEN_NOT_REVOCABLE",
        )
    # None of the failures revoked the key.
    assert fresh_verify(api, issued.secret).is_valid is True


def test_expired_keys(api: ApiKeysApi) -> None:
    issued = issue(api, new_actor(), ttl="1s")
    raw, _ = import_key(api, new_actor(), ttl="1s")
    time.sleep(2.1)

    for credential in (issued.secret, raw):
        res = fresh_verify(api, credential)
        assert res.is_valid is False
        assert res.error_code == VerificationErrorCode.VERIFICATION_ERROR_EXPIRED
        # Self-revoking an expired key: 401 api_key_expired.
        expect_error(
            UnauthorizedException, 401, api.revoke_api_key,
            SelfRevokeApiKeyRequest(credential=credential, reason=RevocationReason.REVOCATION_REASON_KEY_COMPROMISE),
            grpc_status="UNAUTHENTICATED", reason="API_KEY_EXPIRED",
        )
    assert api.admin_get_issued_api_key(issued.issued_api_key.key_id).status == KeyStatus.KEY_STATUS_EXPIRED


@pytest.mark.skipif(not TALOS_PUBLIC_PREFIX, reason="TALOS_PUBLIC_PREFIX is not set")
def test_public_keys_cannot_self_revoke(api: ApiKeysApi) -> None:
    actor = new_actor()
    resp = api.admin_issue_api_key(
        IssueApiKeyRequest(
            name="public", actor_id=actor, scopes=["read"], ttl="3600s",
            visibility=KeyVisibility.KEY_VISIBILITY_PUBLIC,
        )
    )
    assert resp.secret.startswith(f"{TALOS_PUBLIC_PREFIX}_v1_"), resp.secret
    assert ISSUED_KEY_RE.fullmatch(resp.secret)
    assert resp.issued_api_key.visibility == KeyVisibility.KEY_VISIBILITY_PUBLIC
    res = verify(api, resp.secret)
    assert res.is_valid is True and res.visibility == KeyVisibility.KEY_VISIBILITY_PUBLIC

    # Derived tokens carry the visibility.
    derived = api.admin_derive_token(DeriveTokenRequest(credential=resp.secret, ttl="60s")).token.token
    assert jwt_part(derived, 1)["vis"] == "public"
    assert verify(api, derived).visibility == KeyVisibility.KEY_VISIBILITY_PUBLIC

    # An active PUBLIC key must be revoked by an admin: self-revoke is 403.
    expect_error(
        ForbiddenException, 403, api.revoke_api_key,
        SelfRevokeApiKeyRequest(credential=resp.secret, reason=RevocationReason.REVOCATION_REASON_KEY_COMPROMISE),
        grpc_status="PERMISSION_DENIED",
    )
    assert fresh_verify(api, resp.secret).is_valid is True
    api.admin_revoke_issued_api_key(
        resp.issued_api_key.key_id,
        AdminRevokeIssuedApiKeyBody(reason=RevocationReason.REVOCATION_REASON_KEY_COMPROMISE),
    )
    assert fresh_verify(api, resp.secret).error_code == VerificationErrorCode.VERIFICATION_ERROR_REVOKED


# ---------------------------------------------------------------------------
# coverage of the route table
# ---------------------------------------------------------------------------


def test_every_route_is_exercised(request: pytest.FixtureRequest) -> None:
    """Runs last in this module; meaningful when the whole tests/sdk suite runs."""
    if request.config.getoption("keyword") or request.config.getoption("markexpr"):
        pytest.skip("only meaningful for a full run")
    api_ops = {
        name for name in dir(ApiKeysApi)
        if not name.startswith("_") and not name.endswith(("_with_http_info", "_without_preload_content"))
    }
    assert api_ops == ALL_OPERATIONS, "the SDK's operation set changed"
    missing = ALL_OPERATIONS - _CALLED
    assert not missing, f"routes never exercised: {sorted(missing)}"

"""SDK-compatibility test: talos driven by the official Ory Python SDK.

The SDK (`ory-client`, pinned in requirements.txt) is used exactly as published:
no monkeypatching, no raw HTTP. Every assertion is made on the typed objects the
SDK's pydantic models produce, so a response that the SDK cannot deserialise
(wrong enum spelling, an int64 sent as a JSON number, a bad timestamp, a wrong
content type, ...) fails here the way it would fail for a real user.

The server's base URL comes from the environment variable TALOS_URL
(e.g. http://127.0.0.1:4420). `tests/sdk/run.sh` starts a talos and sets it.
Each test uses its own actor id, so the tests are independent of each other and
of any keys already in the store.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Optional

import pytest

import ory_client
from ory_client import (
    AdminRevokeIssuedApiKeyBody,
    ApiClient,
    ApiKeysApi,
    BatchVerifyApiKeysRequest,
    BatchVerifyApiKeysResponse,
    Configuration,
    IssueApiKeyRequest,
    IssueApiKeyResponse,
    IssuedApiKey,
    KeyStatus,
    KeyVisibility,
    ListIssuedApiKeysResponse,
    RevocationReason,
    VerificationErrorCode,
    VerifyApiKeyRequest,
    VerifyApiKeyResponse,
)
from ory_client.exceptions import (
    ApiException,
    BadRequestException,
    ConflictException,
    NotFoundException,
)

TALOS_URL = os.environ.get("TALOS_URL", "").rstrip("/")
# Optional: the configured credentials.issuer, checked against verify's `issuer`.
TALOS_ISSUER = os.environ.get("TALOS_ISSUER", "")

if not TALOS_URL:
    pytest.skip(
        "TALOS_URL is not set; run tests/sdk/run.sh path/to/talos",
        allow_module_level=True,
    )

ERROR_DOMAIN = "www.ory.com/talos"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
ISSUED_PATH = "/v2alpha1/admin/issuedApiKeys"

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# talos-api.md §3.1, the exact parse regex of an issued key.
ISSUED_KEY_RE = re.compile(
    r"^([a-zA-Z0-9_]{1,16})_v1_([1-9A-HJ-NP-Za-km-z]{20,})_([1-9A-HJ-NP-Za-km-z]{10,})$"
)


# ---------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api() -> ApiKeysApi:
    config = Configuration(host=TALOS_URL)
    with ApiClient(config) as client:
        yield ApiKeysApi(client)


def new_actor() -> str:
    return f"sdk-actor-{uuid.uuid4()}"


def header(headers: Optional[Dict[str, str]], name: str) -> Optional[str]:
    """Case-insensitive lookup: ApiResponse.headers is a plain dict."""
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def error_envelope(exc: ApiException) -> Dict[str, Any]:
    """Parse and check the AIP-193 envelope of an SDK exception (talos-api.md §1.3)."""
    content_type = header(dict(exc.headers or {}), "Content-Type") or ""
    assert content_type.lower().startswith("application/json"), content_type
    assert exc.body, "error response without a body"
    body = json.loads(exc.body)
    assert set(body) == {"error"}, body
    err = body["error"]
    assert err["code"] == exc.status, body
    assert isinstance(err.get("message"), str) and err["message"], body
    assert isinstance(err.get("status"), str) and re.fullmatch(r"[A-Z_]+", err["status"]), body
    details = err.get("details")
    assert isinstance(details, list) and len(details) == 1, body
    info = details[0]
    assert info.get("@type") == ERROR_INFO_TYPE, body
    assert info.get("domain") == ERROR_DOMAIN, body
    assert isinstance(info.get("reason"), str) and re.fullmatch(r"[A-Z][A-Z0-9_]*", info["reason"]), body
    if "metadata" in info:
        assert isinstance(info["metadata"], dict), body
        assert all(isinstance(v, str) for v in info["metadata"].values()), body
    return err


def b58decode(text: str) -> bytes:
    num = 0
    for ch in text:
        num = num * 58 + B58_ALPHABET.index(ch)
    raw = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    leading = len(text) - len(text.lstrip("1"))
    return b"\x00" * leading + raw


def issue(
    api: ApiKeysApi,
    actor_id: str,
    *,
    name: str = "sdk-test-key",
    scopes: Optional[list] = None,
    metadata: Optional[dict] = None,
    ttl: str = "3600s",
    request_id: Optional[str] = None,
) -> IssueApiKeyResponse:
    req = IssueApiKeyRequest(
        name=name,
        actor_id=actor_id,
        scopes=scopes if scopes is not None else ["read", "write"],
        metadata=metadata if metadata is not None else {"env": "sdk-test"},
        ttl=ttl,
        request_id=request_id,
    )
    resp = api.admin_issue_api_key(req)
    assert isinstance(resp, IssueApiKeyResponse)
    return resp


def verify(api: ApiKeysApi, credential: str, **kwargs: Any) -> VerifyApiKeyResponse:
    resp = api.admin_verify_api_key(VerifyApiKeyRequest(credential=credential), **kwargs)
    assert isinstance(resp, VerifyApiKeyResponse)
    return resp


def assert_same_instant(a: Any, b: Any, label: str) -> None:
    """Equal up to storage precision (a store may keep microseconds, not nanoseconds)."""
    assert_aware(a, label)
    assert_aware(b, label)
    assert abs((a - b).total_seconds()) <= 0.001, f"{label}: {a!r} != {b!r}"


def assert_aware(ts: Any, label: str) -> datetime:
    assert isinstance(ts, datetime), f"{label}: {ts!r} is not a datetime"
    assert ts.tzinfo is not None and ts.utcoffset() is not None, f"{label}: {ts!r} has no UTC offset"
    return ts


# ---------------------------------------------------------------------------
# issue
# ---------------------------------------------------------------------------


def test_issue_returns_typed_key_and_201_with_location(api: ApiKeysApi) -> None:
    actor = new_actor()
    scopes = ["read", "write", "admin:keys"]
    metadata = {"env": "sdk-test", "team": "platform", "n": 3, "nested": {"a": [1, True, None], "b": "x"}}
    before = datetime.now(timezone.utc)

    http = api.admin_issue_api_key_with_http_info(
        IssueApiKeyRequest(
            name="sdk issue test",
            actor_id=actor,
            scopes=scopes,
            metadata=metadata,
            ttl="3600s",
        )
    )
    after = datetime.now(timezone.utc)

    assert http.status_code == 201
    resp = http.data
    assert isinstance(resp, IssueApiKeyResponse)

    # The secret: returned once, in the v1 wire format, embedding the key id.
    assert isinstance(resp.secret, str)
    assert resp.secret.startswith("ory_ak_v1_"), resp.secret
    match = ISSUED_KEY_RE.fullmatch(resp.secret)
    assert match, resp.secret
    assert match.group(1) == "ory_ak"
    assert len(b58decode(match.group(3))) == 32, "checksum must be the full HMAC-SHA256 digest"

    key = resp.issued_api_key
    assert isinstance(key, IssuedApiKey)
    assert isinstance(key.key_id, str)
    assert str(uuid.UUID(key.key_id)) == key.key_id, "key_id must be a canonical lowercase UUID"
    assert uuid.UUID(key.key_id).version == 4

    ts_text, _, id_text = b58decode(match.group(2)).decode("ascii").partition(":")
    assert id_text == key.key_id, "the identifier must carry the key id"
    assert abs(int(ts_text) - before.timestamp()) < 120

    assert key.name == "sdk issue test"
    assert key.actor_id == actor
    assert key.scopes == scopes
    assert key.metadata == metadata
    assert key.status == KeyStatus.KEY_STATUS_ACTIVE
    # The SDK always sends visibility=KEY_VISIBILITY_UNSPECIFIED; the server stores SECRET.
    assert key.visibility == KeyVisibility.KEY_VISIBILITY_SECRET
    assert key.revocation_reason in (None, RevocationReason.REVOCATION_REASON_UNSPECIFIED)

    create_time = assert_aware(key.create_time, "create_time")
    expire_time = assert_aware(key.expire_time, "expire_time")
    assert before - timedelta(seconds=5) <= create_time <= after + timedelta(seconds=5)
    expected_expiry = create_time + timedelta(seconds=3600)
    assert abs((expire_time - expected_expiry).total_seconds()) <= 5, (create_time, expire_time)
    if key.update_time is not None:
        assert_aware(key.update_time, "update_time")

    location = header(http.headers, "Location")
    assert location is not None, http.headers
    assert location.endswith(f"{ISSUED_PATH}/{key.key_id}"), location

    # The secret is never part of the stored resource.
    got = api.admin_get_issued_api_key(key.key_id)
    assert resp.secret not in json.dumps(got.to_dict(), default=str)


def test_issue_is_idempotent_on_request_id(api: ApiKeysApi) -> None:
    actor = new_actor()
    request_id = str(uuid.uuid4())  # 36 chars: the documented maximum

    first = api.admin_issue_api_key_with_http_info(
        IssueApiKeyRequest(name="idem", actor_id=actor, scopes=["read"], ttl="3600s", request_id=request_id)
    )
    second = api.admin_issue_api_key_with_http_info(
        IssueApiKeyRequest(name="idem", actor_id=actor, scopes=["read"], ttl="3600s", request_id=request_id)
    )

    assert first.status_code == 201
    assert second.status_code == 201
    assert isinstance(first.data, IssueApiKeyResponse)
    assert isinstance(second.data, IssueApiKeyResponse)
    assert first.data.secret and first.data.secret.startswith("ory_ak_v1_")
    assert not second.data.secret, "a replayed issue must not return the secret again"
    assert second.data.issued_api_key.key_id == first.data.issued_api_key.key_id
    assert second.data.issued_api_key.actor_id == actor
    assert second.data.issued_api_key.status == KeyStatus.KEY_STATUS_ACTIVE

    # Only one key exists for the actor, and the original secret still works.
    listed = api.admin_list_issued_api_keys(filter=f'actor_id="{actor}"')
    assert [k.key_id for k in listed.issued_api_keys or []] == [first.data.issued_api_key.key_id]
    assert verify(api, first.data.secret).is_valid is True


# ---------------------------------------------------------------------------
# get
# ---------------------------------------------------------------------------


def test_get_issued_key(api: ApiKeysApi) -> None:
    actor = new_actor()
    issued = issue(api, actor, scopes=["read"], metadata={"k": "v"})
    key_id = issued.issued_api_key.key_id

    http = api.admin_get_issued_api_key_with_http_info(key_id)
    assert http.status_code == 200
    got = http.data
    assert isinstance(got, IssuedApiKey)
    assert got.key_id == key_id
    assert got.actor_id == actor
    assert got.name == issued.issued_api_key.name
    assert got.scopes == ["read"]
    assert got.metadata == {"k": "v"}
    assert got.status == KeyStatus.KEY_STATUS_ACTIVE
    assert got.visibility == KeyVisibility.KEY_VISIBILITY_SECRET
    assert_same_instant(got.expire_time, issued.issued_api_key.expire_time, "expire_time")
    assert_same_instant(got.create_time, issued.issued_api_key.create_time, "create_time")


def test_get_unknown_key_is_404_envelope(api: ApiKeysApi) -> None:
    with pytest.raises(NotFoundException) as info:
        api.admin_get_issued_api_key(str(uuid.uuid4()))
    exc = info.value
    assert exc.status == 404
    err = error_envelope(exc)
    assert err["code"] == 404
    assert err["status"] == "NOT_FOUND"
    assert err["details"][0]["reason"] == "API_KEY_NOT_FOUND"
    assert err["details"][0]["domain"] == ERROR_DOMAIN


# ---------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------


def test_list_pages_through_an_actors_keys(api: ApiKeysApi) -> None:
    actor = new_actor()
    other = new_actor()
    issued_ids = {issue(api, actor, name=f"page-{i}").issued_api_key.key_id for i in range(3)}
    issue(api, other, name="someone else")  # must not show up under the filter
    assert len(issued_ids) == 3

    flt = f'actor_id="{actor}"'
    page1 = api.admin_list_issued_api_keys(page_size=2, filter=flt)
    assert isinstance(page1, ListIssuedApiKeysResponse)
    keys1 = page1.issued_api_keys or []
    assert len(keys1) == 2
    assert all(isinstance(k, IssuedApiKey) for k in keys1)
    assert isinstance(page1.next_page_token, str) and page1.next_page_token

    page2 = api.admin_list_issued_api_keys(page_size=2, filter=flt, page_token=page1.next_page_token)
    assert isinstance(page2, ListIssuedApiKeysResponse)
    keys2 = page2.issued_api_keys or []
    assert len(keys2) == 1
    # Proto3 JSON may omit the empty string; the SDK then reads None.
    assert not page2.next_page_token

    seen = [k.key_id for k in keys1 + keys2]
    assert sorted(seen) == sorted(issued_ids), "every key exactly once across the pages"
    for key in keys1 + keys2:
        assert key.actor_id == actor
        assert key.status == KeyStatus.KEY_STATUS_ACTIVE
        assert_aware(key.create_time, "create_time")
        assert_aware(key.expire_time, "expire_time")
    # Newest first (created_at DESC, key_id DESC).
    times = [k.create_time for k in keys1 + keys2]
    assert times == sorted(times, reverse=True)

    # One page holding everything: no next page.
    whole = api.admin_list_issued_api_keys(page_size=10, filter=flt)
    assert sorted(k.key_id for k in whole.issued_api_keys or []) == sorted(issued_ids)
    assert not whole.next_page_token

    # Status filter combined with actor_id.
    active = api.admin_list_issued_api_keys(filter=f"{flt} AND status=KEY_STATUS_ACTIVE")
    assert sorted(k.key_id for k in active.issued_api_keys or []) == sorted(issued_ids)


def test_list_rejects_a_tampered_page_token(api: ApiKeysApi) -> None:
    actor = new_actor()
    for i in range(2):
        issue(api, actor, name=f"tamper-{i}")
    flt = f'actor_id="{actor}"'
    page1 = api.admin_list_issued_api_keys(page_size=1, filter=flt)
    token = page1.next_page_token
    assert token

    # Change a character in the middle (the last base64url character may only
    # carry padding bits, so tampering with it need not change the bytes).
    mid = len(token) // 2
    replacement = "A" if token[mid] != "A" else "B"
    tampered = token[:mid] + replacement + token[mid + 1:]
    assert tampered != token

    with pytest.raises(BadRequestException) as info:
        api.admin_list_issued_api_keys(page_size=1, filter=flt, page_token=tampered)
    assert info.value.status == 400
    err = error_envelope(info.value)
    assert err["status"] == "INVALID_ARGUMENT"

    with pytest.raises(BadRequestException):
        api.admin_list_issued_api_keys(page_size=1, filter=flt, page_token="not-a-page-token")


def test_list_rejects_a_bad_filter(api: ApiKeysApi) -> None:
    with pytest.raises(BadRequestException) as info:
        api.admin_list_issued_api_keys(filter='actor_id="a" OR actor_id="b"')
    err = error_envelope(info.value)
    assert err["code"] == 400
    assert err["status"] == "INVALID_ARGUMENT"


# ---------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------


def test_verify_valid_key(api: ApiKeysApi) -> None:
    actor = new_actor()
    scopes = ["read", "billing:view"]
    metadata = {"plan": "pro", "seats": 5}
    issued = issue(api, actor, scopes=scopes, metadata=metadata)

    http = api.admin_verify_api_key_with_http_info(VerifyApiKeyRequest(credential=issued.secret))
    assert http.status_code == 200
    res = http.data
    assert isinstance(res, VerifyApiKeyResponse)
    assert res.is_valid is True
    assert res.key_id == issued.issued_api_key.key_id
    assert res.actor_id == actor
    assert res.scopes == scopes
    assert res.metadata == metadata
    assert res.status == KeyStatus.KEY_STATUS_ACTIVE
    assert res.visibility == KeyVisibility.KEY_VISIBILITY_SECRET
    assert res.error_code in (None, VerificationErrorCode.VERIFICATION_ERROR_UNSPECIFIED)
    assert not res.error_message
    assert_same_instant(res.expire_time, issued.issued_api_key.expire_time, "expire_time")
    assert isinstance(res.issuer, str) and res.issuer
    if TALOS_ISSUER:
        assert res.issuer == TALOS_ISSUER
    assert not res.audiences

    # Cache directives are accepted and do not change the answer.
    fresh = verify(api, issued.secret, cache_control="no-cache")
    assert fresh.is_valid is True and fresh.key_id == res.key_id
    fresh = verify(api, issued.secret, pragma="no-cache")
    assert fresh.is_valid is True and fresh.key_id == res.key_id


def test_verify_garbage_and_forged_keys(api: ApiKeysApi) -> None:
    res = verify(api, f"garbage-{uuid.uuid4()}")
    assert res.is_valid is False
    assert res.error_code == VerificationErrorCode.VERIFICATION_ERROR_NOT_FOUND
    assert not res.key_id

    # A well-formed v1 key with a wrong checksum reads as NOT_FOUND too (§8).
    issued = issue(api, new_actor())
    secret = issued.secret
    last = secret[-1]
    forged = secret[:-1] + ("2" if last != "2" else "3")
    res = verify(api, forged)
    assert res.is_valid is False
    assert res.error_code == VerificationErrorCode.VERIFICATION_ERROR_NOT_FOUND

    # An empty credential is a format error, still HTTP 200.
    http = api.admin_verify_api_key_with_http_info(VerifyApiKeyRequest(credential=""))
    assert http.status_code == 200
    assert http.data.is_valid is False
    assert http.data.error_code == VerificationErrorCode.VERIFICATION_ERROR_INVALID_FORMAT


def test_batch_verify_keeps_request_order(api: ApiKeysApi) -> None:
    actor = new_actor()
    first = issue(api, actor, scopes=["a"])
    second = issue(api, actor, scopes=["b"])

    http = api.admin_batch_verify_api_keys_with_http_info(
        BatchVerifyApiKeysRequest(
            requests=[
                VerifyApiKeyRequest(credential=first.secret),
                VerifyApiKeyRequest(credential=f"garbage-{uuid.uuid4()}"),
                VerifyApiKeyRequest(credential=second.secret),
            ]
        )
    )
    assert http.status_code == 200
    resp = http.data
    assert isinstance(resp, BatchVerifyApiKeysResponse)
    results = resp.results or []
    assert len(results) == 3
    assert all(isinstance(r, VerifyApiKeyResponse) for r in results)

    assert results[0].is_valid is True
    assert results[0].key_id == first.issued_api_key.key_id
    assert results[0].actor_id == actor
    assert results[0].scopes == ["a"]

    assert results[1].is_valid is False
    assert results[1].error_code == VerificationErrorCode.VERIFICATION_ERROR_NOT_FOUND

    assert results[2].is_valid is True
    assert results[2].key_id == second.issued_api_key.key_id
    assert results[2].scopes == ["b"]


# ---------------------------------------------------------------------------
# revoke
# ---------------------------------------------------------------------------


def test_revoke_then_verify_get_and_revoke_again(api: ApiKeysApi) -> None:
    actor = new_actor()
    issued = issue(api, actor)
    key_id = issued.issued_api_key.key_id
    assert verify(api, issued.secret).is_valid is True

    body = AdminRevokeIssuedApiKeyBody(reason=RevocationReason.REVOCATION_REASON_KEY_COMPROMISE)
    http = api.admin_revoke_issued_api_key_with_http_info(key_id, body)
    assert http.status_code == 204
    assert http.data is None

    # A fresh lookup sees the revocation at once.
    res = verify(api, issued.secret, cache_control="no-cache")
    assert res.is_valid is False
    assert res.error_code == VerificationErrorCode.VERIFICATION_ERROR_REVOKED

    # The default path (snapshot) must see it within a short bound.
    deadline = time.monotonic() + 2.0
    while True:
        res = verify(api, issued.secret)
        if res.is_valid is False or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert res.is_valid is False
    assert res.error_code == VerificationErrorCode.VERIFICATION_ERROR_REVOKED

    got = api.admin_get_issued_api_key(key_id)
    assert isinstance(got, IssuedApiKey)
    assert got.status == KeyStatus.KEY_STATUS_REVOKED
    assert got.revocation_reason == RevocationReason.REVOCATION_REASON_KEY_COMPROMISE
    assert not got.revocation_description

    with pytest.raises(ApiException) as info:
        api.admin_revoke_issued_api_key(key_id, body)
    assert info.value.status == 409
    assert isinstance(info.value, ConflictException)
    err = error_envelope(info.value)
    assert err["code"] == 409


def test_revoke_plain_call_returns_none(api: ApiKeysApi) -> None:
    issued = issue(api, new_actor())
    result = api.admin_revoke_issued_api_key(
        issued.issued_api_key.key_id,
        AdminRevokeIssuedApiKeyBody(reason=RevocationReason.REVOCATION_REASON_SUPERSEDED),
    )
    assert result is None
    got = api.admin_get_issued_api_key(issued.issued_api_key.key_id)
    assert got.status == KeyStatus.KEY_STATUS_REVOKED
    assert got.revocation_reason == RevocationReason.REVOCATION_REASON_SUPERSEDED


def test_revoke_unknown_key_is_404(api: ApiKeysApi) -> None:
    with pytest.raises(NotFoundException) as info:
        api.admin_revoke_issued_api_key(
            str(uuid.uuid4()),
            AdminRevokeIssuedApiKeyBody(reason=RevocationReason.REVOCATION_REASON_KEY_COMPROMISE),
        )
    err = error_envelope(info.value)
    assert err["status"] == "NOT_FOUND"


def test_sdk_version_is_the_pinned_one() -> None:
    # Guards against a stale venv silently testing another SDK.
    assert ory_client.__version__.lstrip("v") == "1.22.87"

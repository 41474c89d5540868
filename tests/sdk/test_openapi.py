"""docs/openapi.yaml against the running servers.

1. The document is valid OpenAPI 3.1 (openapi-spec-validator) and agrees with Ory's
   `ory-client` (the pinned SDK): the same paths, methods, operation ids, success statuses,
   schema names, field names and enum values, apart from fields marked `x-talos-extension`.
2. Every operation, on every plane that the document says serves it (`x-talos-planes`), answers
   a status the document declares, with a body valid against that status's schema.
3. The route table is exact: on each plane, every documented path and method is routed, a
   documented path with another method is 405, and every other path is the 404 of an unknown
   route (`reason: NOT_FOUND`), including the paths of Ory's commercial and older editions.
4. A walk-through of the whole API (issue, get, list, update, verify, batch verify, derive,
   rotate, revoke, self-revoke, import, batch import, delete, health, version, JWKS, errors)
   validates every request body against its documented schema and every response against the
   schema of its status, with `additionalProperties: false` added to every response object, so a
   field the document does not name fails the test.

Environment (set by tests/sdk/run.sh): TALOS_URL (`talos serve`), TALOS_ADMIN_URL
(`talos serve admin`) and TALOS_CHECK_URL (`talos serve check`), each with its own in-memory
store and the same config.
"""

from __future__ import annotations

import copy
import http.client
import inspect
import json
import os
import re
import typing
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import ory_client
from ory_client import ApiKeysApi

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
SPEC_URI = "urn:talos:openapi"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PLANES = ("all", "admin", "check")

# Paths no plane routes: Ory's commercial and older routes, near misses of real ones, and
# spellings an edge filter must not be bypassable with.
UNROUTED_PATHS = (
    "/",
    "/metrics",
    "/revisions/talos",
    "/health",
    "/health/alive/",
    "//health/alive",
    "/v2alpha1",
    "/v2alpha1/admin",
    "/v2alpha1/admin/apiKeys",
    "/v2alpha1/admin/apiKeys:revoke",
    "/v2alpha1/admin/apiKeys/probe:revoke",
    "/v2alpha1/admin/apiKeys:batchImport",
    "/v2alpha1/admin/issuedApiKeys:batchCreate",
    "/v2alpha1/admin/issuedApiKeys/",
    "/v2alpha1/admin/issuedApiKeys/probe:delete",
    "/v2alpha1/admin/issuedApiKeys/probe/extra",
    "/v2alpha1/admin/importedApiKeys/probe:rotate",
    "/v2alpha1/admin//issuedApiKeys",
    "/V2ALPHA1/admin/issuedApiKeys",
    "/v2alpha1/derivedKeys/jwks",
    "/v2alpha1/self/issuedApiKeys",
    "/v2alpha1/self/usageHistory",
    "/gateway/verify",
    "/.well-known/jwks.json",
)


def _env(name: str) -> str:
    value = os.environ.get(name, "").rstrip("/")
    if not value:
        pytest.fail(f"{name} is not set; run tests/sdk/run.sh path/to/talos")
    return value


@pytest.fixture(scope="module")
def urls() -> Dict[str, str]:
    return {"all": _env("TALOS_URL"), "admin": _env("TALOS_ADMIN_URL"), "check": _env("TALOS_CHECK_URL")}


# ---------------------------------------------------------------------------
# the document
# ---------------------------------------------------------------------------


def load_spec() -> Dict[str, Any]:
    with open(SPEC_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


SPEC = load_spec()


def deref(node: Dict[str, Any]) -> Dict[str, Any]:
    """Follows OpenAPI `$ref`s to components (responses, parameters, headers)."""
    while "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def operations() -> Iterable[Tuple[str, str, Dict[str, Any]]]:
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            if method.upper() in METHODS:
                yield path, method.upper(), op


OPS_BY_ID = {op["operationId"]: (path, method, op) for path, method, op in operations()}


def schema_refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            yield ref.rsplit("/", 1)[1]
        for value in node.values():
            yield from schema_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from schema_refs(value)


def response_schema_names() -> set:
    """Every component schema a response body can contain, directly or nested."""
    todo = [name for _, _, op in operations() for r in op["responses"].values() for name in schema_refs(deref(r))]
    seen: set = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(schema_refs(SPEC["components"]["schemas"][name]))
    return seen


def closed(schema: Any) -> Any:
    """The schema with `additionalProperties: false` on every object that names its properties
    and says nothing about others."""
    if isinstance(schema, dict):
        out = {k: closed(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    return schema


def _registry(spec: Dict[str, Any]) -> Registry:
    return Registry().with_resource(SPEC_URI, Resource(contents=spec, specification=DRAFT202012))


LENIENT = _registry(SPEC)
_strict_spec = copy.deepcopy(SPEC)
for _name in response_schema_names():
    _strict_spec["components"]["schemas"][_name] = closed(_strict_spec["components"]["schemas"][_name])
STRICT = _registry(_strict_spec)
FORMATS = FormatChecker()


def check_schema(instance: Any, schema: Dict[str, Any], registry: Registry, what: str) -> None:
    """Validates `instance` against `schema` (a `$ref` into the document, or inline)."""
    if "$ref" in schema:
        schema = {"$ref": SPEC_URI + schema["$ref"]}
    validator = Draft202012Validator(schema, registry=registry, format_checker=FORMATS)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, f"{what}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:5]
    ) + f"\n{json.dumps(instance)[:2000]}"


def test_format_checks_are_active() -> None:
    # Without rfc3339-validator, jsonschema silently skips date-time; the pin makes it check.
    assert "date-time" in FORMATS.checkers
    with pytest.raises(AssertionError):
        check_schema("2026-01-01 00:00", {"$ref": "#/components/schemas/Timestamp"}, STRICT, "bad time")
    check_schema("2026-12-03T19:22:05.12345728Z", {"$ref": "#/components/schemas/Timestamp"}, STRICT, "time")


def test_document_is_valid_openapi() -> None:
    validate_openapi(load_spec())
    ids = [op["operationId"] for _, _, op in operations()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    for path, method, op in operations():
        planes = op.get("x-talos-planes")
        assert planes and set(planes) <= set(PLANES), (path, method, planes)
        assert "all" in planes, f"{method} {path}: `talos serve` serves every route"
        assert op["responses"], (path, method)
        for status, response in op["responses"].items():
            assert re.fullmatch(r"[1-5][0-9][0-9]", status), (path, method, status)
            response = deref(response)
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, (path, method, status)
    # The documented version is the server's (checked against /version in the walk-through).
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", SPEC["info"]["version"])


# ---------------------------------------------------------------------------
# agreement with ory-client
# ---------------------------------------------------------------------------


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def ory_operations() -> Dict[str, Tuple[str, str, str, Optional[str]]]:
    """python method → (HTTP method, path, success status, success model) from the SDK source."""
    out = {}
    for name in dir(ApiKeysApi):
        if name.startswith("_") or name.endswith(("_with_http_info", "_without_preload_content")):
            continue
        serialize = inspect.getsource(getattr(ApiKeysApi, f"_{name}_serialize"))
        method = re.search(r"method='([A-Z]+)'", serialize).group(1)
        path = re.search(r"resource_path='([^']+)'", serialize).group(1)
        status, model = re.search(r"'(2\d\d)': (?:\"(\w+)\"|None)", inspect.getsource(getattr(ApiKeysApi, name))).groups()
        out[name] = (method, path, status, model)
    return out


def test_operations_match_ory_client() -> None:
    ory = ory_operations()
    assert len(ory) == 18, sorted(ory)
    documented = {snake(op["operationId"]): (path, method, op) for path, method, op in operations()
                  if "apiKeys" in op.get("tags", [])}
    assert set(documented) == set(ory), (sorted(set(documented) ^ set(ory)))
    for name, (method, path, status, model) in ory.items():
        doc_path, doc_method, op = documented[name]
        assert (doc_method, doc_path) == (method, path), name
        successes = [s for s in op["responses"] if s.startswith("2")]
        assert successes == [status], (name, successes, status)
        content = deref(op["responses"][status]).get("content")
        if model is None:
            assert content is None, f"{name}: {status} has no body"
        elif model == "object":  # selfRevoke: an empty object
            assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/SelfRevokeApiKeyResponse"}
        else:
            assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}, name
        params = inspect.signature(getattr(ApiKeysApi, name)).parameters
        sdk_body = [p for p in params.values() if p.name.endswith(("_request", "_body"))]
        if sdk_body:
            annotation = sdk_body[0].annotation
            model = typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{model.__name__}"}, name
        else:
            assert "requestBody" not in op, name
        header_params = {"cache_control": "Cache-Control", "pragma": "Pragma"}
        sdk_params = {
            header_params.get(p, p) for p in params
            if not p.startswith("_") and p not in ("self", "key_id") and not p.endswith(("_request", "_body"))
        }
        op_params = op.get("parameters", []) + SPEC["paths"][doc_path].get("parameters", [])
        assert {deref(p)["name"] for p in op_params} - {"key_id"} == sdk_params, name


def ory_model_properties(model: type) -> set:
    return set(getattr(model, f"_{model.__name__}__properties"))


def test_schemas_match_ory_client() -> None:
    compared = 0
    for name, schema in SPEC["components"]["schemas"].items():
        model = getattr(ory_client, name, None)
        if model is None:
            continue
        compared += 1
        if "enum" in schema:
            assert schema["enum"] == [e.value for e in model], name
            continue
        props = schema.get("properties", {})
        ours = {p for p, s in props.items() if not s.get("x-talos-extension")}
        assert ours == ory_model_properties(model), (name, sorted(ours ^ ory_model_properties(model)))
    assert compared >= 30, compared


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------


class Answer:
    def __init__(self, status: int, headers: Dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = body
        self.json: Any = json.loads(body) if body else None

    def reason(self) -> Optional[str]:
        try:
            return self.json["error"]["details"][0]["reason"]
        except (TypeError, KeyError, IndexError):
            return None


def send(base: str, method: str, path: str, body: Optional[bytes] = None,
         headers: Optional[Dict[str, str]] = None) -> Answer:
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        hdrs = {"content-type": "application/json", **(headers or {})}
        try:
            conn.request(method, path, body=body, headers=hdrs)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (413) before reading the whole body
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def fill(path: str, key_id: str) -> str:
    return path.replace("{key_id}", urllib.parse.quote(key_id, safe=""))


def check_answer(op: Dict[str, Any], answer: Answer, what: str) -> None:
    """The status is declared, the body valid against its schema, required headers present."""
    declared = op["responses"]
    assert str(answer.status) in declared, f"{what}: undeclared status {answer.status}: {answer.raw[:500]!r}"
    response = deref(declared[str(answer.status)])
    content = response.get("content")
    if content is None:
        assert answer.raw == b"", f"{what}: {answer.status} must have no body"
    else:
        assert answer.headers.get("content-type") == "application/json", f"{what}: {answer.headers}"
        check_schema(answer.json, content["application/json"]["schema"], STRICT, f"{what} -> {answer.status}")
    for name, header in response.get("headers", {}).items():
        header = deref(header)
        value = answer.headers.get(name.lower())
        if header.get("required"):
            assert value is not None, f"{what}: header {name} missing"
        if value is not None:
            check_schema(value, header["schema"], STRICT, f"{what}: header {name}")


# ---------------------------------------------------------------------------
# every operation, on every plane that serves it
# ---------------------------------------------------------------------------


def test_every_operation_answers_a_declared_status(urls: Dict[str, str]) -> None:
    probed = 0
    for path, method, op in operations():
        for plane in op["x-talos-planes"]:
            body = b"{}" if "requestBody" in op else None
            answer = send(urls[plane], method, fill(path, f"probe-{uuid.uuid4()}"), body)
            check_answer(op, answer, f"{plane}: {method} {path}")
            probed += 1
    assert probed >= 40, probed


def test_route_table_is_exact(urls: Dict[str, str]) -> None:
    for plane, base in urls.items():
        served: Dict[str, set] = {}
        for path, method, op in operations():
            methods = served.setdefault(path, set())
            if plane in op["x-talos-planes"]:
                methods.add(method)
        paths = [(fill(p, "probe-id"), m) for p, m in served.items()] + [(p, set()) for p in UNROUTED_PATHS]
        for path, methods in paths:
            for method in METHODS:
                answer = send(base, method, path, b"{}" if method != "GET" else None)
                what = f"{plane}: {method} {path} -> {answer.status} {answer.reason()}"
                if method in methods:
                    assert (answer.status, answer.reason()) != (404, "NOT_FOUND"), what
                    assert answer.status != 405, what
                elif methods:
                    assert (answer.status, answer.reason()) == (405, "METHOD_NOT_ALLOWED"), what
                    allow = {m.strip() for m in answer.headers.get("allow", "").split(",")}
                    assert methods <= allow, f"{what}: Allow {answer.headers.get('allow')!r}"
                else:
                    assert (answer.status, answer.reason()) == (404, "NOT_FOUND"), what
                if answer.status >= 400:
                    check_schema(answer.json, {"$ref": "#/components/schemas/ErrorEnvelope"}, STRICT, what)


# ---------------------------------------------------------------------------
# the walk-through
# ---------------------------------------------------------------------------


class Walk:
    """Calls operations by id on one server, checking each exchange against the document."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.succeeded: set = set()

    def call(self, operation_id: str, expect: int, body: Any = None, *, key_id: str = "",
             query: Optional[Dict[str, str]] = None, headers: Optional[Dict[str, str]] = None,
             raw: Optional[bytes] = None, reason: Optional[str] = None) -> Answer:
        path, method, op = OPS_BY_ID[operation_id]
        if body is not None:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            check_schema(body, schema, LENIENT, f"request of {operation_id}")
            raw = json.dumps(body).encode()
        target = fill(path, key_id)
        if query:
            target += "?" + urllib.parse.urlencode(query)
        answer = send(self.base, method, target, raw, headers)
        what = f"{method} {target}"
        check_answer(op, answer, what)
        assert answer.status == expect, f"{what}: {answer.status} (expected {expect}): {answer.raw[:500]!r}"
        if reason is not None:
            assert answer.reason() == reason, f"{what}: {answer.json}"
        if answer.status < 300:
            self.succeeded.add(operation_id)
        return answer


def test_walkthrough(urls: Dict[str, str]) -> None:
    w = Walk(urls["all"])
    actor = f"openapi-{uuid.uuid4()}"

    # Health, version, JWKS.
    w.call("isAlive", 200)
    w.call("isReady", 200)
    assert w.call("getVersion", 200).json["version"] == SPEC["info"]["version"]
    assert w.call("getJwks", 200).json["jwks"]["keys"]

    # Issue two keys; get and list them.
    issued = w.call("adminIssueApiKey", 201, {
        "name": "walk", "actor_id": actor, "scopes": ["read", "write"], "metadata": {"env": "test"},
        "ttl": "3600s", "rate_limit_policy": {"quota": "100", "window": "60s"}, "request_id": str(uuid.uuid4()),
    })
    key_a, secret_a = issued.json["issued_api_key"]["key_id"], issued.json["secret"]
    assert issued.headers["location"] == f"/v2alpha1/admin/issuedApiKeys/{key_a}"
    secret_b = w.call("adminIssueApiKey", 201, {"actor_id": actor, "ttl": "24h"}).json["secret"]
    key_b = w.call("adminVerifyApiKey", 200, {"credential": secret_b}).json["key_id"]
    assert w.call("adminGetIssuedApiKey", 200, key_id=key_a).json["name"] == "walk"
    page = w.call("adminListIssuedApiKeys", 200, query={"filter": f'actor_id="{actor}"', "page_size": "1"}).json
    assert len(page["issued_api_keys"]) == 1 and page["next_page_token"]
    rest = w.call("adminListIssuedApiKeys", 200, query={"filter": f'actor_id="{actor}"', "page_token": page["next_page_token"]}).json
    assert {k["key_id"] for k in page["issued_api_keys"] + rest["issued_api_keys"]} == {key_a, key_b}
    assert rest["next_page_token"] == ""

    # Update, then verify alone and in a batch.
    updated = w.call("adminUpdateIssuedApiKey", 200, {"name": "walked", "scopes": ["read"]},
                     key_id=key_a, query={"update_mask": "name,scopes"}).json
    assert (updated["name"], updated["scopes"], updated["metadata"]) == ("walked", ["read"], {"env": "test"})
    verified = w.call("adminVerifyApiKey", 200, {"credential": secret_a})
    assert verified.json["is_valid"] is True and verified.json["scopes"] == ["read"]
    assert verified.headers["ory-talos-cache"] == "HIT"
    assert verified.headers["ratelimit-policy"] == '"default";q=100;w=60'
    fresh = w.call("adminVerifyApiKey", 200, {"credential": secret_a}, headers={"Cache-Control": "no-cache"})
    assert fresh.headers["ory-talos-cache"] == "SKIP"
    batch = w.call("adminBatchVerifyApiKeys", 200, {"requests": [
        {"credential": secret_a}, {"credential": f"ory_ak_v1_{uuid.uuid4().hex}_x"}, {"credential": ""},
        {"credential": secret_a, "expected_audiences": ["svc"]},
    ]}).json["results"]
    assert [r["is_valid"] for r in batch] == [True, False, False, False]
    assert [r.get("error_code") for r in batch[1:]] == [
        "VERIFICATION_ERROR_NOT_FOUND", "VERIFICATION_ERROR_INVALID_FORMAT", "VERIFICATION_ERROR_AUDIENCE_MISMATCH"]

    # Derive a JWT and a macaroon, and verify them.
    jwt = w.call("adminDeriveToken", 200, {"credential": secret_a, "ttl": "300s", "audiences": ["svc"],
                                          "custom_claims": {"team": "a"}}).json["token"]
    assert jwt["token"].startswith("eyJ") and jwt["audiences"] == ["svc"] and jwt["claims"]["team"] == "a"
    res = w.call("adminVerifyApiKey", 200, {"credential": jwt["token"], "expected_audiences": ["svc"]}).json
    assert res["is_valid"] is True and res["key_id"] == key_a and res["audiences"] == ["svc"]
    macaroon = w.call("adminDeriveToken", 200, {"credential": secret_a, "algorithm": "TOKEN_ALGORITHM_MACAROON"}).json
    assert w.call("adminVerifyApiKey", 200, {"credential": macaroon["token"]["token"]}).json["is_valid"] is True
    w.call("adminDeriveToken", 400, {"credential": jwt["token"]}, reason="INVALID_TOKEN_TYPE")
    w.call("adminDeriveToken", 403, {"credential": secret_a, "scopes": ["admin"]})
    w.call("adminDeriveToken", 401, {"credential": f"unknown-{uuid.uuid4()}"})

    # Rotate with a grace period: the old key verifies until it ends; rotating it again is a 409.
    rotated = w.call("adminRotateIssuedApiKey", 201, {"name": "rotated", "grace_period": "5m"}, key_id=key_a)
    new_a = rotated.json["issued_api_key"]["key_id"]
    assert rotated.headers["location"] == f"/v2alpha1/admin/issuedApiKeys/{new_a}"
    old = rotated.json["old_issued_api_key"]
    assert (old["status"], old["revocation_reason"]) == ("KEY_STATUS_REVOKED", "REVOCATION_REASON_SUPERSEDED")
    assert w.call("adminVerifyApiKey", 200, {"credential": secret_a}).json["is_valid"] is True
    assert w.call("adminVerifyApiKey", 200, {"credential": rotated.json["secret"]}).json["key_id"] == new_a
    w.call("adminRotateIssuedApiKey", 409, {}, key_id=key_a, reason="FAILED_PRECONDITION")

    # Revoke; revoking again is a 409.
    w.call("adminRevokeIssuedApiKey", 204, {"reason": "REVOCATION_REASON_PRIVILEGE_WITHDRAWN", "description": "left"},
           key_id=key_b)
    res = w.call("adminVerifyApiKey", 200, {"credential": secret_b}).json
    assert (res["is_valid"], res["error_code"]) == (False, "VERIFICATION_ERROR_REVOKED")
    w.call("adminRevokeIssuedApiKey", 409, {"reason": "REVOCATION_REASON_KEY_COMPROMISE"}, key_id=key_b, reason="CONFLICT")
    assert w.call("adminGetIssuedApiKey", 200, key_id=key_b).json["revocation_description"] == "left"

    # Self-revoke an issued key.
    secret_c = w.call("adminIssueApiKey", 201, {"actor_id": actor}).json["secret"]
    assert w.call("revokeApiKey", 200, {"credential": secret_c, "reason": "REVOCATION_REASON_KEY_COMPROMISE"}).json == {}
    w.call("revokeApiKey", 404, {"credential": f"unknown-{uuid.uuid4()}", "reason": "REVOCATION_REASON_KEY_COMPROMISE"})
    w.call("revokeApiKey", 400, {"credential": jwt["token"], "reason": "REVOCATION_REASON_KEY_COMPROMISE"},
           reason="DERIVED_TOKEN_NOT_REVOCABLE")

    # Import, get, list, update, verify, self-revoke; batch import; revoke; delete.
    raw = f"walk-imported-{uuid.uuid4()}"
    imported = w.call("adminImportApiKey", 201, {"raw_key": raw, "name": "imp", "actor_id": actor,
                                                "scopes": ["read"], "ip_restriction": {"allowed_cidrs": ["127.0.0.1"]}})
    key_i = imported.json["key_id"]
    assert imported.headers["location"] == f"/v2alpha1/admin/importedApiKeys/{key_i}"
    assert imported.json["ip_restriction"] == {"allowed_cidrs": ["127.0.0.1/32"]}
    w.call("adminImportApiKey", 409, {"raw_key": raw, "name": "imp", "actor_id": actor}, reason="API_KEY_EXISTS")
    w.call("adminImportApiKey", 409, {"raw_key": secret_a, "name": "imp", "actor_id": actor}, reason="CONFLICT")
    assert w.call("adminGetImportedApiKey", 200, key_id=key_i).json["name"] == "imp"
    listed = w.call("adminListImportedApiKeys", 200, query={"filter": f'actor_id="{actor}" AND status=KEY_STATUS_ACTIVE'})
    assert [k["key_id"] for k in listed.json["imported_api_keys"]] == [key_i]
    w.call("adminUpdateImportedApiKey", 200, {"metadata": {"v": 2}}, key_id=key_i)
    res = w.call("adminVerifyApiKey", 200, {"credential": raw})
    assert res.json["is_valid"] is True and res.json["metadata"] == {"v": 2}
    assert res.headers.get("cache-control") == "no-store"  # an IP allowlist: the answer depends on the caller
    assert w.call("revokeApiKey", 200, {"credential": raw, "reason": "REVOCATION_REASON_AFFILIATION_CHANGED"}).json == {}
    raws = [f"walk-batch-{uuid.uuid4()}" for _ in range(2)]
    batch = w.call("adminBatchCreateImportedApiKeys", 200, {"requests": [
        {"raw_key": raws[0], "name": "b0", "actor_id": actor}, {"raw_key": raws[1], "name": "b1", "actor_id": actor},
        {"raw_key": raws[0], "name": "dup", "actor_id": actor},
    ]}).json
    assert (batch["success_count"], batch["failure_count"]) == (2, 1)
    assert batch["results"][2]["error_code"] == "BATCH_CREATE_IMPORTED_API_KEYS_ERROR_ALREADY_EXISTS"
    key_b0, key_b1 = (r["imported_api_key"]["key_id"] for r in batch["results"][:2])
    w.call("adminBatchCreateImportedApiKeys", 409, {"requests": [{"raw_key": raws[0], "name": "x", "actor_id": actor}]},
           reason="API_KEY_EXISTS")
    w.call("adminRevokeImportedApiKey", 204, {"reason": "REVOCATION_REASON_SUPERSEDED"}, key_id=key_b0)
    w.call("adminDeleteImportedApiKey", 204, key_id=key_b1)
    w.call("adminGetImportedApiKey", 404, key_id=key_b1, reason="API_KEY_NOT_FOUND")
    w.call("adminDeleteImportedApiKey", 404, key_id=key_b1)

    # Errors.
    w.call("adminGetIssuedApiKey", 404, key_id=str(uuid.uuid4()), reason="API_KEY_NOT_FOUND")
    w.call("adminIssueApiKey", 400, raw=b'{"name": ', reason="BAD_REQUEST")
    w.call("adminIssueApiKey", 400, raw=b'{"scopes": "read"}', reason="BAD_REQUEST")
    w.call("adminIssueApiKey", 400, {"ttl": "0s"})
    w.call("adminIssueApiKey", 413, raw=b'{"name": "' + b"x" * (1024 * 1024) + b'"}', reason="PAYLOAD_TOO_LARGE")
    w.call("adminListIssuedApiKeys", 400, query={"filter": "name=x"})
    w.call("adminListIssuedApiKeys", 400, query={"page_token": "tampered"})
    w.call("adminUpdateIssuedApiKey", 400, {"name": "x"}, key_id=new_a, query={"update_mask": "actor_id"})
    # Bodies the document itself rules out (sent raw, past the request check).
    w.call("adminRevokeImportedApiKey", 400, raw=b"{}", key_id=key_i)
    w.call("adminBatchVerifyApiKeys", 400, raw=json.dumps({"requests": [{"credential": "x"}] * 101}).encode())
    w.call("adminBatchCreateImportedApiKeys", 400, raw=b'{"requests": []}')

    assert w.succeeded >= set(OPS_BY_ID), f"never answered 2xx: {sorted(set(OPS_BY_ID) - w.succeeded)}"


def test_check_plane_answers_from_its_snapshot(urls: Dict[str, str]) -> None:
    w = Walk(urls["check"])
    ready = w.call("isReady", 200).json
    assert set(ready["snapshot"]) == {"revision", "keys", "age_ms"}
    res = w.call("adminVerifyApiKey", 200, {"credential": f"unknown-{uuid.uuid4()}"})
    assert res.json["error_code"] == "VERIFICATION_ERROR_NOT_FOUND" and res.headers["ory-talos-cache"] == "HIT"
    w.call("revokeApiKey", 404, {"credential": f"unknown-{uuid.uuid4()}", "reason": "REVOCATION_REASON_KEY_COMPROMISE"})
    assert w.call("getVersion", 200).json["version"] == SPEC["info"]["version"]

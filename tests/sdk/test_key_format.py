"""docs/key-format.md against the running server: the independent Python check the document
gives accepts its own test vectors and a key talos issues now (under TALOS_HMAC_SECRET), rejects
it under another secret or with one character changed, and the imported-key hash it states is
the `key_id` talos answers."""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.request
import uuid
from pathlib import Path

import pytest

DOC = (Path(__file__).resolve().parents[2] / "docs" / "key-format.md").read_text(encoding="utf-8")
VECTOR_SECRET = "test-secret-0123456789abcdef0123456789"


def post(path: str, body: dict) -> dict:
    url = os.environ.get("TALOS_URL", "").rstrip("/")
    if not url:
        pytest.fail("TALOS_URL is not set; run tests/sdk/run.sh path/to/talos")
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def check():
    blocks = re.findall(r"```python\n(.*?)```", DOC, re.S)
    assert len(blocks) == 1, "docs/key-format.md should hold one Python block"
    namespace: dict = {}
    exec(compile(blocks[0], "docs/key-format.md", "exec"), namespace)  # the document's own code
    return namespace["check"]


def test_the_documented_vectors_check(check) -> None:
    vectors = re.findall(r"^(ory_ak_v1_[1-9A-HJ-NP-Za-km-z]+_[1-9A-HJ-NP-Za-km-z]+)$", DOC, re.M)
    assert len(set(vectors)) == 2, vectors
    ids = re.findall(r"key id `([0-9a-f-]{36})`", DOC)
    assert [check(v, [VECTOR_SECRET]) for v in dict.fromkeys(vectors)] == [(1767225600, i) for i in ids]
    assert check(vectors[0], ["another-secret-0123456789abcdef0123"]) is None


def test_a_key_issued_now_checks(check) -> None:
    secret = os.environ.get("TALOS_HMAC_SECRET", "")
    assert secret, "TALOS_HMAC_SECRET is not set"
    issued = post("/v2alpha1/admin/issuedApiKeys", {"ttl": "60s"})
    key, key_id = issued["secret"], issued["issued_api_key"]["key_id"]
    found = check(key, ["x" * 32, secret])
    assert found is not None and found[1] == key_id, found
    assert check(key, ["x" * 32]) is None
    tampered = key[:-1] + ("2" if key[-1] != "2" else "3")
    assert check(tampered, [secret]) is None


def test_the_imported_key_hash() -> None:
    formula = re.search(r"key_id = hex\(SHA-512/256\(nid ‖ 0x00 ‖ raw_key\)\)\s+nid = \"([0-9-]{36})\"", DOC)
    assert formula, "the imported-key formula moved"
    raw = f"doc-imported-{uuid.uuid4()}"
    imported = post("/v2alpha1/admin/importedApiKeys", {"raw_key": raw, "name": "doc", "actor_id": "doc"})
    expected = hashlib.new("sha512_256", formula.group(1).encode() + b"\0" + raw.encode()).hexdigest()
    assert imported["key_id"] == expected

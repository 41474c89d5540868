//! `talos serve` end to end: issue → get → list → verify → batch verify → revoke → verify, and the
//! ways a request can go wrong.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[test]
fn issue_get_list_verify_revoke() {
    let server = Server::start();
    let actor = format!("actor-{}", uuid::Uuid::new_v4());
    let issue = server.post(
        "/v2alpha1/admin/issuedApiKeys",
        &json!({"name": "ci", "actor_id": actor, "scopes": ["read", "write"], "metadata": {"env": "prod"},
                "ttl": "3600s", "rate_limit_policy": {"quota": "100", "window": "60s"},
                "ip_restriction": {"allowed_cidrs": ["127.0.0.0/8"]}}),
    );
    assert_eq!(issue.status, 201, "{}", issue.text);
    let body = issue.json();
    let key_id = body["issued_api_key"]["key_id"].as_str().unwrap().to_owned();
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert_eq!(issue.header("location").unwrap(), format!("/v2alpha1/admin/issuedApiKeys/{key_id}"));
    assert!(secret.starts_with("ory_ak_v1_"));
    let key = &body["issued_api_key"];
    assert_eq!(key["status"], "KEY_STATUS_ACTIVE");
    assert_eq!(key["visibility"], "KEY_VISIBILITY_SECRET");
    assert_eq!(key["scopes"], json!(["read", "write"]));
    assert_eq!(key["metadata"], json!({"env": "prod"}));
    assert_eq!(key["rate_limit_policy"], json!({"quota": "100", "window": "60s"}));
    assert_eq!(key["ip_restriction"], json!({"allowed_cidrs": ["127.0.0.0/8"]}));
    for header in ["x-request-id", "strict-transport-security", "x-content-type-options", "content-security-policy"] {
        assert!(issue.header(header).is_some(), "missing {header}");
    }

    // Get returns the same resource, without the secret.
    let got = server.get(&format!("/v2alpha1/admin/issuedApiKeys/{key_id}"));
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), body["issued_api_key"]);
    assert!(!got.text.contains(&secret));

    // Two more keys, then list in pages of two.
    let (second, _) = server.issue(&json!({"actor_id": actor}));
    let (third, _) = server.issue(&json!({"actor_id": actor}));
    let filter = format!("actor_id%3D%22{actor}%22");
    let page1 = server.get(&format!("/v2alpha1/admin/issuedApiKeys?page_size=2&filter={filter}")).json();
    let ids1: Vec<_> = page1["issued_api_keys"].as_array().unwrap().iter().map(|k| k["key_id"].clone()).collect();
    assert_eq!(ids1, [json!(third), json!(second)]);
    let token = page1["next_page_token"].as_str().unwrap();
    assert!(!token.is_empty());
    let page2 =
        server.get(&format!("/v2alpha1/admin/issuedApiKeys?page_size=2&filter={filter}&page_token={token}")).json();
    let ids2: Vec<_> = page2["issued_api_keys"].as_array().unwrap().iter().map(|k| k["key_id"].clone()).collect();
    assert_eq!(ids2, [json!(key_id)]);
    assert_eq!(page2["next_page_token"], "");

    // Verify: valid, with the key's data; the data plane answers from the snapshot.
    let verify = server.post("/v2alpha1/admin/apiKeys:verify", &json!({"credential": secret}));
    assert_eq!(verify.header("ory-talos-cache"), Some("HIT"));
    // Restricted keys are not cacheable; the rate-limit policy is advertised (talos-api.md §1.4).
    assert_eq!(verify.header("cache-control"), Some("no-store"));
    assert_eq!(verify.header("ratelimit-policy"), Some("\"default\";q=100;w=60"));
    let v = verify.json();
    assert_eq!(v["is_valid"], true, "{v}");
    assert_eq!(v["key_id"], key_id);
    assert_eq!(v["actor_id"], actor);
    assert_eq!(v["scopes"], json!(["read", "write"]));
    assert_eq!(v["issuer"], "http://talos.test");
    assert_eq!(v["status"], "KEY_STATUS_ACTIVE");
    assert!(v.get("error_code").is_none());

    // Batch verify answers in request order.
    let batch = server.post(
        "/v2alpha1/admin/apiKeys:batchVerify",
        &json!({"requests": [{"credential": secret}, {"credential": "nope"}, null, {"credential": ""}]}),
    );
    assert_eq!(batch.status, 200, "{}", batch.text);
    let results = batch.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["is_valid"], true);
    assert_eq!(results[1]["error_code"], "VERIFICATION_ERROR_NOT_FOUND");
    assert_eq!(results[2]["error_code"], "VERIFICATION_ERROR_INVALID_FORMAT");
    assert_eq!(results[3]["error_code"], "VERIFICATION_ERROR_INVALID_FORMAT");

    // Revoke: 204, then the key reads REVOKED everywhere, at once.
    let revoke = server.post(
        &format!("/v2alpha1/admin/issuedApiKeys/{key_id}:revoke"),
        &json!({"reason": "REVOCATION_REASON_KEY_COMPROMISE"}),
    );
    assert_eq!(revoke.status, 204, "{}", revoke.text);
    assert!(revoke.text.is_empty());
    let v = server.verify(&secret);
    assert_eq!(
        v,
        json!({"is_valid": false, "error_code": "VERIFICATION_ERROR_REVOKED", "error_message": "The API key has been revoked."})
    );
    let got = server.get(&format!("/v2alpha1/admin/issuedApiKeys/{key_id}")).json();
    assert_eq!(got["status"], "KEY_STATUS_REVOKED");
    assert_eq!(got["revocation_reason"], "REVOCATION_REASON_KEY_COMPROMISE");
    server
        .post(
            &format!("/v2alpha1/admin/issuedApiKeys/{key_id}:revoke"),
            &json!({"reason": "REVOCATION_REASON_KEY_COMPROMISE"}),
        )
        .assert_error(409, "CONFLICT");
    // The other keys are unaffected.
    let listed = server
        .get(&format!("/v2alpha1/admin/issuedApiKeys?filter={filter}%20AND%20status%3DKEY_STATUS_REVOKED"))
        .json();
    assert_eq!(listed["issued_api_keys"].as_array().unwrap().len(), 1);
}

#[test]
fn cache_control_no_cache_reads_the_store() {
    let server = Server::start();
    let (_, secret) = server.issue(&json!({}));
    let resp = request(
        server.addr,
        "POST",
        "/v2alpha1/admin/apiKeys:verify",
        &[("cache-control", "no-cache")],
        &json!({"credential": secret}).to_string(),
    );
    assert_eq!(resp.header("ory-talos-cache"), Some("SKIP"));
    let snapshot_answer = server.post("/v2alpha1/admin/apiKeys:verify", &json!({"credential": secret}));
    assert_eq!(resp.text, snapshot_answer.text, "store and snapshot answers must be byte-identical");
    let pragma = request(
        server.addr,
        "POST",
        "/v2alpha1/admin/apiKeys:batchVerify",
        &[("pragma", "no-cache")],
        &json!({"requests": [{"credential": secret}]}).to_string(),
    );
    assert_eq!(pragma.header("ory-talos-cache"), Some("SKIP"));
    assert_eq!(pragma.json()["results"][0]["is_valid"], true);
}

#[test]
fn idempotent_issue_by_request_id() {
    let server = Server::start();
    let first = server.post("/v2alpha1/admin/issuedApiKeys", &json!({"request_id": "req-42", "name": "a"}));
    assert_eq!(first.status, 201);
    let replay = server.post("/v2alpha1/admin/issuedApiKeys", &json!({"request_id": "req-42", "name": "a"}));
    assert_eq!(replay.status, 201);
    assert_eq!(replay.json()["issued_api_key"]["key_id"], first.json()["issued_api_key"]["key_id"]);
    assert!(replay.json().get("secret").is_none());
    server
        .post("/v2alpha1/admin/issuedApiKeys", &json!({"request_id": "x".repeat(37)}))
        .assert_error(400, "BAD_REQUEST");
}

#[test]
fn keys_that_do_not_verify() {
    let server = Server::start();
    let (_, secret) = server.issue(&json!({}));
    let not_found = |credential: &str| {
        let v = server.verify(credential);
        assert_eq!(v["is_valid"], false, "{credential}: {v}");
        assert_eq!(v["error_code"], "VERIFICATION_ERROR_NOT_FOUND", "{credential}: {v}");
    };
    // Unknown key: a well-formed key for an id that was never issued.
    let ring = common::key::Keyring::new(SECRET.as_bytes(), []);
    let now = common::clock::secs(common::clock::now());
    not_found(&common::key::generate("ory_ak", now, uuid::Uuid::new_v4(), &ring));
    // Corrupted checksum: every position of the checksum changed.
    let (head, checksum) = secret.rsplit_once('_').unwrap();
    for i in 0..checksum.len() {
        let mut c = checksum.as_bytes().to_vec();
        c[i] = if c[i] == b'z' { b'y' } else { b'z' };
        not_found(&format!("{head}_{}", String::from_utf8(c).unwrap()));
    }
    // Wrong prefix: correctly signed, but a prefix this deployment does not accept.
    let parsed = common::key::parse_issued(&secret).unwrap();
    not_found(&common::key::generate("sk_live", parsed.timestamp, parsed.key_id, &ring));
    // Signed with another secret.
    let other = common::key::Keyring::new(OTHER_SECRET.as_bytes(), []);
    not_found(&common::key::generate("ory_ak", parsed.timestamp, parsed.key_id, &other));
    // Issue time far in the future or beyond max_ttl.
    not_found(&common::key::generate("ory_ak", now + 86_400, parsed.key_id, &ring));
    not_found(&common::key::generate("ory_ak", now - 2 * 365 * 86_400, parsed.key_id, &ring));
    // Not a key at all (routes as an imported key, which does not exist).
    not_found("hello");
    let v = server.verify("");
    assert_eq!(v["error_code"], "VERIFICATION_ERROR_INVALID_FORMAT");
    // Expected audiences: API keys carry none.
    let v = server
        .post("/v2alpha1/admin/apiKeys:verify", &json!({"credential": secret, "expected_audiences": ["api"]}))
        .json();
    assert_eq!(v["error_code"], "VERIFICATION_ERROR_AUDIENCE_MISMATCH");
    // The real key still verifies.
    assert_eq!(server.verify(&secret)["is_valid"], true);
}

#[test]
fn expired_key() {
    let server = Server::start();
    let (key_id, secret) = server.issue(&json!({"ttl": "1s"}));
    eventually(Duration::from_secs(10), || {
        let v = server.verify(&secret);
        (v["error_code"] == "VERIFICATION_ERROR_EXPIRED").then_some(())
    });
    let got = server.get(&format!("/v2alpha1/admin/issuedApiKeys/{key_id}")).json();
    assert_eq!(got["status"], "KEY_STATUS_EXPIRED");
}

#[test]
fn ttl_rules() {
    let server = Server::start();
    for ttl in ["0s", "87600h", "5", "1x", "soon"] {
        server.post("/v2alpha1/admin/issuedApiKeys", &json!({"ttl": ttl})).assert_error(400, "BAD_REQUEST");
    }
    // A negative ttl falls back to the default (720h).
    let resp = server.post("/v2alpha1/admin/issuedApiKeys", &json!({"ttl": "-5s"}));
    assert_eq!(resp.status, 201, "{}", resp.text);
}

#[test]
fn bad_input_gets_the_envelope() {
    let server = Server::start();
    let addr = server.addr;
    let post = |path: &str, body: &str| request(addr, "POST", path, &[("content-type", "application/json")], body);
    post("/v2alpha1/admin/issuedApiKeys", "{not json").assert_error(400, "BAD_REQUEST");
    post("/v2alpha1/admin/issuedApiKeys", r#"{"name": 5}"#).assert_error(400, "BAD_REQUEST");
    post("/v2alpha1/admin/issuedApiKeys", r#"{"visibility": "KEY_VISIBILITY_PUBLIC"}"#)
        .assert_error(400, "BAD_REQUEST");
    post("/v2alpha1/admin/issuedApiKeys", r#"{"ip_restriction": {"allowed_cidrs": ["300.0.0.0/8"]}}"#)
        .assert_error(400, "BAD_REQUEST");
    post("/v2alpha1/admin/issuedApiKeys", &json!({"metadata": {"big": "x".repeat(70_000)}}).to_string())
        .assert_error(400, "BAD_REQUEST");
    post("/v2alpha1/admin/issuedApiKeys", &json!({"scopes": vec!["s"; 101]}).to_string())
        .assert_error(400, "BAD_REQUEST");
    post("/v2alpha1/admin/apiKeys:verify", "[1,2]").assert_error(400, "BAD_REQUEST");
    post("/v2alpha1/admin/apiKeys:verify", r#"{"credential": 7}"#).assert_error(400, "BAD_REQUEST");
    post("/v2alpha1/admin/apiKeys:verify", &json!({"credential": "k".repeat(8193)}).to_string())
        .assert_error(400, "BAD_REQUEST");
    let too_many: Vec<_> = (0..101).map(|_| json!({"credential": "x"})).collect();
    post("/v2alpha1/admin/apiKeys:batchVerify", &json!({"requests": too_many}).to_string())
        .assert_error(400, "BAD_REQUEST");
    post("/v2alpha1/admin/apiKeys:batchVerify", r#"{"requests": [{"credential": "x"}, 5]}"#)
        .assert_error(400, "BAD_REQUEST");
    post(
        "/v2alpha1/admin/issuedApiKeys/00000000-0000-4000-8000-000000000000:revoke",
        r#"{"reason": "REVOCATION_REASON_KEY_COMPROMISE"}"#,
    )
    .assert_error(404, "API_KEY_NOT_FOUND");
    post("/v2alpha1/admin/issuedApiKeys/x:revoke", r#"{"reason": 1}"#).assert_error(404, "API_KEY_NOT_FOUND");
    server.get("/v2alpha1/admin/issuedApiKeys/not-a-key").assert_error(404, "API_KEY_NOT_FOUND");
    server.get("/v2alpha1/admin/issuedApiKeys?page_token=garbage").assert_error(400, "BAD_REQUEST");
    server.get("/v2alpha1/admin/issuedApiKeys?filter=name%3D%22x%22").assert_error(400, "BAD_REQUEST");
    server.get("/v2alpha1/admin/issuedApiKeys?page_size=ten").assert_error(400, "BAD_REQUEST");
    server.get("/no/such/route").assert_error(404, "NOT_FOUND");
    request(addr, "DELETE", "/v2alpha1/admin/issuedApiKeys", &[], "").assert_error(405, "METHOD_NOT_ALLOWED");
    server.get("/v2alpha1/admin/apiKeys:verify").assert_error(405, "METHOD_NOT_ALLOWED");

    // Oversized body: 413 from the data plane and the admin plane.
    let big = "x".repeat(1024 * 1024 + 1);
    post("/v2alpha1/admin/apiKeys:verify", &big).assert_error(413, "PAYLOAD_TOO_LARGE");
    post("/v2alpha1/admin/issuedApiKeys", &big).assert_error(413, "PAYLOAD_TOO_LARGE");

    // A framing error closes the connection: the request after it is never answered.
    let out = raw(
        addr,
        b"POST /v2alpha1/admin/apiKeys:verify HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab\
GET /health/alive HTTP/1.1\r\nhost: x\r\n\r\n",
    );
    let responses = parse_responses(&out);
    assert_eq!(responses.len(), 1);
    responses[0].assert_error(400, "BAD_REQUEST");
    assert_eq!(responses[0].header("connection"), Some("close"));

    // Nothing was lost: the server still works.
    let (_, secret) = server.issue(&json!({}));
    assert_eq!(server.verify(&secret)["is_valid"], true);
}

#[test]
fn keep_alive_and_pipelining() {
    let server = Server::start();
    let (_, secret) = server.issue(&json!({}));
    let body = json!({"credential": secret}).to_string();
    let one = format!(
        "POST /v2alpha1/admin/apiKeys:verify HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // Three pipelined verifies, an admin request handed to the admin plane, then a last one
    // that closes.
    let mut bytes = one.repeat(3);
    bytes.push_str("GET /health/ready HTTP/1.1\r\nhost: x\r\n\r\n");
    bytes.push_str(&one.replace("host: x\r\n", "host: x\r\nconnection: close\r\n"));
    let responses = parse_responses(&raw(server.addr, bytes.as_bytes()));
    assert_eq!(responses.len(), 5);
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r.status, 200, "{i}: {}", r.text);
    }
    assert_eq!(responses[0].text, responses[4].text);
    assert_eq!(responses[3].json()["status"], "ok");
}

#[test]
fn retired_secret_still_verifies() {
    let dir = TempDir::new();
    let dsn = dir.path("talos.redb");
    let dsn = dsn.to_str().unwrap();
    let config_path = dir.path("talos.yaml");
    let old = Server::start_with(&config_path, &config(dsn, &secrets(SECRET), ""), &[]);
    let (_, secret) = old.issue(&json!({}));
    assert_eq!(old.terminate().code(), Some(0));

    // Rotated: the old secret is retired, keys made under it still verify.
    let rotated = format!("    current: \"{OTHER_SECRET}\"\n    retired:\n      - \"{SECRET}\"");
    let server = Server::start_with(&config_path, &config(dsn, &rotated, ""), &[]);
    assert_eq!(server.verify(&secret)["is_valid"], true);
    let (_, new_secret) = server.issue(&json!({}));
    assert_eq!(server.verify(&new_secret)["is_valid"], true);
    assert_eq!(server.terminate().code(), Some(0));

    // The retired secret expired: its keys read as not found.
    let expired = format!("    current: \"{OTHER_SECRET}\"\n    retired:\n      - value: \"{SECRET}\"\n        expires_at: \"2020-01-01T00:00:00Z\"");
    let server = Server::start_with(&config_path, &config(dsn, &expired, ""), &[]);
    assert_eq!(server.verify(&secret)["error_code"], "VERIFICATION_ERROR_NOT_FOUND");
    assert_eq!(server.verify(&new_secret)["is_valid"], true);
}

#[test]
fn health_version_and_graceful_stop() {
    let server = Server::start();
    assert_eq!(server.get("/health/alive").json()["status"], "ok");
    assert_eq!(server.get("/health/ready").json()["status"], "ok");
    assert_eq!(server.get("/version").json()["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn secrets_never_reach_the_log() {
    let server = Server::start();
    let (_, secret) = server.issue(&json!({"name": "logged?"}));
    server.verify(&secret);
    server.verify(&format!("{secret}x"));
    request(server.addr, "POST", "/v2alpha1/admin/issuedApiKeys", &[], &format!("{{\"name\": \"{secret}\""))
        .assert_error(400, "BAD_REQUEST");
    // The request lines reach the captured log a moment after the answers.
    let log = eventually(Duration::from_secs(10), || {
        let log = server.log();
        (log.matches(" request ").count() >= 2).then_some(log)
    });
    let (_, checksum) = secret.rsplit_once('_').unwrap();
    assert!(!log.contains(checksum), "a key leaked into the log");
    assert!(!log.contains(SECRET), "the HMAC secret leaked into the log");
}

#[test]
fn request_ids_are_echoed_or_made() {
    let server = Server::start();
    for path in ["/v2alpha1/admin/apiKeys:verify", "/v2alpha1/admin/issuedApiKeys"] {
        let resp = request(server.addr, "POST", path, &[("x-request-id", "trace-123")], "{}");
        assert_eq!(resp.header("x-request-id"), Some("trace-123"), "{path}");
        let long = "r".repeat(129);
        let resp = request(server.addr, "POST", path, &[("x-request-id", &long)], "{}");
        let made = resp.header("x-request-id").unwrap();
        assert!(uuid::Uuid::parse_str(made).is_ok(), "{path}: {made}");
    }
}

#[test]
fn public_keys_and_quota() {
    let dir = TempDir::new();
    let extra = "quota:\n  api_keys_max: 2\n";
    let yaml = config("memory", &secrets(SECRET), extra)
        .replace("    default_ttl: 720h\n", "    default_ttl: 720h\n    prefix:\n      public_current: pk_test\n");
    let server = Server::start_with(&dir.path("talos.yaml"), &yaml, &[]);
    let resp = server.post("/v2alpha1/admin/issuedApiKeys", &json!({"visibility": "KEY_VISIBILITY_PUBLIC"}));
    assert_eq!(resp.status, 201, "{}", resp.text);
    let secret = resp.json()["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pk_test_v1_"));
    let v = server.verify(&secret);
    assert_eq!(v["visibility"], "KEY_VISIBILITY_PUBLIC");
    let (key_id, _) = server.issue(&json!({}));
    let over = server.post("/v2alpha1/admin/issuedApiKeys", &json!({}));
    over.assert_error(429, "API_KEY_QUOTA_EXCEEDED");
    let details = &over.json()["error"]["details"][0]["metadata"];
    assert_eq!(details["limit"], "2");
    assert_eq!(details["current_usage"], "2");
    // Revoked keys do not count against the quota.
    let resp = server.post(&format!("/v2alpha1/admin/issuedApiKeys/{key_id}:revoke"), &json!({"reason": 1}));
    assert_eq!(resp.status, 204);
    assert_eq!(server.post("/v2alpha1/admin/issuedApiKeys", &json!({})).status, 201);
}

#[test]
fn page_size_defaults_and_clamps() {
    let server = Server::start();
    for _ in 0..3 {
        server.issue(&json!({"actor_id": "pager"}));
    }
    let all = |q: &str| {
        server.get(&format!("/v2alpha1/admin/issuedApiKeys?{q}")).json()["issued_api_keys"].as_array().unwrap().len()
    };
    assert_eq!(all("page_size=0"), 3);
    assert_eq!(all("page_size=-4"), 3);
    assert_eq!(all("page_size=100000"), 3);
    assert_eq!(all("page_size=1"), 1);
}

#[test]
fn last_used_time_is_recorded_off_the_hot_path() {
    let server = Server::start();
    let (key_id, secret) = server.issue(&json!({}));
    let path = format!("/v2alpha1/admin/issuedApiKeys/{key_id}");
    assert!(server.get(&path).json().get("last_used_time").is_none());
    assert_eq!(server.verify(&secret)["is_valid"], true);
    let recorded = eventually(Duration::from_secs(10), || server.get(&path).json().get("last_used_time").cloned());
    // Once per key per day: more verifications do not move it.
    for _ in 0..5 {
        assert_eq!(server.verify(&secret)["is_valid"], true);
    }
    std::thread::park_timeout(Duration::from_millis(300));
    assert_eq!(server.get(&path).json()["last_used_time"], recorded);
}

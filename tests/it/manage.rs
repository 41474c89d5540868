//! The rest of key management: imported keys, batch import, update, rotate (with grace), delete,
//! and per-key IP restrictions — each checked through the data plane's verify as well.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

fn patch(server: &Server, path: &str, body: &serde_json::Value) -> Resp {
    request(server.addr, "PATCH", path, &[("content-type", "application/json")], &body.to_string())
}

#[test]
fn imported_key_lifecycle() {
    let server = Server::start();
    let raw = format!("legacy-key-{}", uuid::Uuid::new_v4());
    let resp = server.post(
        "/v2alpha1/admin/importedApiKeys",
        &json!({"raw_key": raw, "name": "old system", "actor_id": "svc-legacy", "scopes": ["read"]}),
    );
    assert_eq!(resp.status, 201, "{}", resp.text);
    let key = resp.json();
    let key_id = key["key_id"].as_str().unwrap().to_owned();
    assert_eq!(key_id.len(), 64);
    assert_eq!(resp.header("location").unwrap(), format!("/v2alpha1/admin/importedApiKeys/{key_id}"));
    assert!(!resp.text.contains(&raw), "the raw key is never returned");

    // The raw key verifies on the data plane, from the snapshot.
    let v = server.post("/v2alpha1/admin/apiKeys:verify", &json!({"credential": raw}));
    assert_eq!(v.header("ory-talos-cache"), Some("HIT"));
    assert_eq!(v.json()["is_valid"], true, "{}", v.text);
    assert_eq!(v.json()["key_id"], key_id);

    assert_eq!(server.get(&format!("/v2alpha1/admin/importedApiKeys/{key_id}")).json(), key);
    let listed = server.get("/v2alpha1/admin/importedApiKeys?filter=actor_id%3D%22svc-legacy%22").json();
    assert_eq!(listed["imported_api_keys"][0]["key_id"], key_id);
    assert_eq!(listed["next_page_token"], "");

    // Duplicates and look-alikes are refused, and nothing changes.
    let dup = json!({"raw_key": raw, "name": "again", "actor_id": "x"});
    server.post("/v2alpha1/admin/importedApiKeys", &dup).assert_error(409, "API_KEY_EXISTS");
    let (_, issued) = server.issue(&json!({}));
    server
        .post("/v2alpha1/admin/importedApiKeys", &json!({"raw_key": issued, "name": "n", "actor_id": "a"}))
        .assert_error(409, "CONFLICT");
    server
        .post("/v2alpha1/admin/importedApiKeys", &json!({"raw_key": "eyJh.eyJ4.sig", "name": "n", "actor_id": "a"}))
        .assert_error(409, "FAILED_PRECONDITION");
    server
        .post("/v2alpha1/admin/importedApiKeys", &json!({"raw_key": "mc_v1_abc", "name": "n", "actor_id": "a"}))
        .assert_error(409, "FAILED_PRECONDITION");
    for body in [
        json!({"name": "n", "actor_id": "a"}),
        json!({"raw_key": "k1", "actor_id": "a"}),
        json!({"raw_key": "k1", "name": "n"}),
    ] {
        server.post("/v2alpha1/admin/importedApiKeys", &body).assert_error(400, "BAD_REQUEST");
    }
    assert_eq!(server.get(&format!("/v2alpha1/admin/importedApiKeys/{key_id}")).json()["name"], "old system");

    // Update, then the snapshot answers with the new scopes.
    let updated =
        patch(&server, &format!("/v2alpha1/admin/importedApiKeys/{key_id}"), &json!({"scopes": ["read", "write"]}));
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(server.verify(&raw)["scopes"], json!(["read", "write"]));

    // Revoke, then delete: REVOKED, then NOT_FOUND.
    let resp = server.post(
        &format!("/v2alpha1/admin/importedApiKeys/{key_id}:revoke"),
        &json!({"reason": "REVOCATION_REASON_AFFILIATION_CHANGED"}),
    );
    assert_eq!(resp.status, 204, "{}", resp.text);
    assert_eq!(server.verify(&raw)["error_code"], "VERIFICATION_ERROR_REVOKED");
    let resp = request(server.addr, "DELETE", &format!("/v2alpha1/admin/importedApiKeys/{key_id}"), &[], "");
    assert_eq!(resp.status, 204, "{}", resp.text);
    assert_eq!(server.verify(&raw)["error_code"], "VERIFICATION_ERROR_NOT_FOUND");
    server.get(&format!("/v2alpha1/admin/importedApiKeys/{key_id}")).assert_error(404, "API_KEY_NOT_FOUND");
    request(server.addr, "DELETE", &format!("/v2alpha1/admin/importedApiKeys/{key_id}"), &[], "")
        .assert_error(404, "API_KEY_NOT_FOUND");
    // Issued keys cannot be deleted.
    request(server.addr, "DELETE", "/v2alpha1/admin/issuedApiKeys/x", &[], "").assert_error(405, "METHOD_NOT_ALLOWED");
}

#[test]
fn batch_import_reports_per_item() {
    let server = Server::start();
    let existing = format!("existing-{}", uuid::Uuid::new_v4());
    let item = |raw: &str| json!({"raw_key": raw, "name": "n", "actor_id": "batch"});
    assert_eq!(server.post("/v2alpha1/admin/importedApiKeys", &item(&existing)).status, 201);
    let fresh = format!("fresh-{}", uuid::Uuid::new_v4());
    let resp = server.post(
        "/v2alpha1/admin/importedApiKeys:batchCreate",
        &json!({"requests": [item(&fresh), item(&fresh), item(&existing), {"raw_key": "x", "name": "n"}, null]}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text);
    let body = resp.json();
    assert_eq!(body["success_count"], 1);
    assert_eq!(body["failure_count"], 4);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["index"], 0);
    assert!(results[0]["imported_api_key"]["key_id"].is_string());
    assert_eq!(results[1]["error_code"], "BATCH_CREATE_IMPORTED_API_KEYS_ERROR_ALREADY_EXISTS");
    assert!(results[1]["error_message"].as_str().unwrap().contains("index 0"));
    assert_eq!(results[2]["error_code"], "BATCH_CREATE_IMPORTED_API_KEYS_ERROR_ALREADY_EXISTS");
    assert_eq!(results[3]["error_code"], "BATCH_CREATE_IMPORTED_API_KEYS_ERROR_INVALID_ARGUMENT");
    assert_eq!(results[4]["error_code"], "BATCH_CREATE_IMPORTED_API_KEYS_ERROR_INVALID_ARGUMENT");
    assert_eq!(server.verify(&fresh)["is_valid"], true);

    // All failing: the dominant error answers for the whole batch.
    server
        .post("/v2alpha1/admin/importedApiKeys:batchCreate", &json!({"requests": [item(&existing), item(&fresh)]}))
        .assert_error(409, "API_KEY_EXISTS");
    server
        .post(
            "/v2alpha1/admin/importedApiKeys:batchCreate",
            &json!({"requests": [{"raw_key": "y"}, item(&existing), {"raw_key": "z"}]}),
        )
        .assert_error(400, "BAD_REQUEST");
    server
        .post("/v2alpha1/admin/importedApiKeys:batchCreate", &json!({"requests": []}))
        .assert_error(400, "BAD_REQUEST");
    let too_many: Vec<_> = (0..1001).map(|i| item(&format!("k{i}"))).collect();
    server
        .post("/v2alpha1/admin/importedApiKeys:batchCreate", &json!({"requests": too_many}))
        .assert_error(400, "BAD_REQUEST");
}

#[test]
fn update_mask_semantics() {
    let server = Server::start();
    let (key_id, secret) = server.issue(&json!({"name": "before", "scopes": ["a"], "metadata": {"k": "v"}}));
    let path = format!("/v2alpha1/admin/issuedApiKeys/{key_id}");
    // No mask: present fields apply, absent ones stay. Output-only fields (as the SDK sends them) are ignored.
    let resp = patch(
        &server,
        &path,
        &json!({"name": "after", "status": "KEY_STATUS_UNSPECIFIED", "visibility": "KEY_VISIBILITY_UNSPECIFIED", "revocation_reason": "REVOCATION_REASON_UNSPECIFIED"}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text);
    let key = resp.json();
    assert_eq!(
        (key["name"].clone(), key["scopes"].clone(), key["status"].clone()),
        (json!("after"), json!(["a"]), json!("KEY_STATUS_ACTIVE"))
    );
    // With a mask: masked-but-absent fields are cleared, unmasked ones untouched.
    let key = patch(
        &server,
        &format!("{path}?update_mask=scopes,metadata"),
        &json!({"name": "ignored", "metadata": {"n": 1}}),
    )
    .json();
    assert_eq!(
        (key["name"].clone(), key["scopes"].clone(), key["metadata"].clone()),
        (json!("after"), json!([]), json!({"n": 1}))
    );
    // The wrapped form of the API docs works too.
    let key = patch(
        &server,
        &path,
        &json!({"issued_api_key": {"scopes": ["z"], "ip_restriction": {"allowed_cidrs": ["127.0.0.1"]}}}),
    )
    .json();
    assert_eq!(key["scopes"], json!(["z"]));
    assert_eq!(key["ip_restriction"]["allowed_cidrs"], json!(["127.0.0.1/32"]));
    // The data plane sees the update at once.
    assert_eq!(server.verify(&secret)["scopes"], json!(["z"]));
    // An empty mask is no mask: the present fields apply.
    let key = patch(&server, &format!("{path}?update_mask="), &json!({"name": "renamed"})).json();
    assert_eq!((key["name"].clone(), key["scopes"].clone()), (json!("renamed"), json!(["z"])));
    // Bad input changes nothing.
    patch(&server, &format!("{path}?update_mask=status"), &json!({})).assert_error(400, "BAD_REQUEST");
    patch(&server, &path, &json!({"scopes": "z"})).assert_error(400, "BAD_REQUEST");
    patch(&server, &path, &json!({"ip_restriction": {"allowed_cidrs": ["nope"]}})).assert_error(400, "BAD_REQUEST");
    patch(&server, "/v2alpha1/admin/issuedApiKeys/00000000-0000-4000-8000-000000000000", &json!({"name": "x"}))
        .assert_error(404, "API_KEY_NOT_FOUND");
    assert_eq!(server.get(&path).json()["scopes"], json!(["z"]));
}

#[test]
fn rotate_supersedes_the_old_key() {
    let server = Server::start();
    let (old_id, old_secret) =
        server.issue(&json!({"name": "svc", "actor_id": "rot", "scopes": ["read"], "ttl": "48h"}));
    let resp = server.post(&format!("/v2alpha1/admin/issuedApiKeys/{old_id}:rotate"), &json!({"name": "svc v2"}));
    assert_eq!(resp.status, 201, "{}", resp.text);
    let body = resp.json();
    let new = &body["issued_api_key"];
    let new_secret = body["secret"].as_str().unwrap();
    assert_eq!(
        resp.header("location").unwrap(),
        format!("/v2alpha1/admin/issuedApiKeys/{}", new["key_id"].as_str().unwrap())
    );
    assert_eq!(new["name"], "svc v2");
    assert_eq!(new["actor_id"], "rot");
    assert_eq!(new["scopes"], json!(["read"]));
    assert_eq!(body["old_issued_api_key"]["status"], "KEY_STATUS_REVOKED");
    assert_eq!(body["old_issued_api_key"]["revocation_reason"], "REVOCATION_REASON_SUPERSEDED");
    // The new key inherits the old expiry.
    let old_before: serde_json::Value =
        server.get(&format!("/v2alpha1/admin/issuedApiKeys/{}", new["key_id"].as_str().unwrap())).json();
    assert_eq!(old_before["expire_time"], new["expire_time"]);
    assert_eq!(server.verify(new_secret)["is_valid"], true);
    assert_eq!(server.verify(&old_secret)["error_code"], "VERIFICATION_ERROR_REVOKED");
    server
        .post(&format!("/v2alpha1/admin/issuedApiKeys/{old_id}:rotate"), &json!({}))
        .assert_error(409, "FAILED_PRECONDITION");
    server
        .post("/v2alpha1/admin/issuedApiKeys/00000000-0000-4000-8000-000000000000:rotate", &json!({}))
        .assert_error(404, "API_KEY_NOT_FOUND");
    server.post("/v2alpha1/admin/importedApiKeys/x:rotate", &json!({})).assert_error(404, "NOT_FOUND");
}

#[test]
fn rotate_with_grace_period() {
    let server = Server::start();
    let (old_id, old_secret) = server.issue(&json!({}));
    let resp = server.post(&format!("/v2alpha1/admin/issuedApiKeys/{old_id}:rotate"), &json!({"grace_period": "2s"}));
    assert_eq!(resp.status, 201, "{}", resp.text);
    let new_secret = resp.json()["secret"].as_str().unwrap().to_owned();
    // Both keys verify during the grace period; the old one reads REVOKED to admins already.
    assert_eq!(server.verify(&old_secret)["is_valid"], true);
    assert_eq!(server.verify(&new_secret)["is_valid"], true);
    assert_eq!(server.get(&format!("/v2alpha1/admin/issuedApiKeys/{old_id}")).json()["status"], "KEY_STATUS_REVOKED");
    eventually(Duration::from_secs(10), || {
        (server.verify(&old_secret)["error_code"] == "VERIFICATION_ERROR_REVOKED").then_some(())
    });
    assert_eq!(server.verify(&new_secret)["is_valid"], true);
    server
        .post(&format!("/v2alpha1/admin/issuedApiKeys/{old_id}:rotate"), &json!({"grace_period": "-1s"}))
        .assert_error(400, "BAD_REQUEST");

    // An admin revoke during the grace period cuts the old key off at once, with its reason;
    // once it is revoked for good, a second revoke is the reference's 409.
    let (old_id, old_secret) = server.issue(&json!({}));
    let rotate = server.post(&format!("/v2alpha1/admin/issuedApiKeys/{old_id}:rotate"), &json!({"grace_period": "1h"}));
    assert_eq!(rotate.status, 201, "{}", rotate.text);
    assert_eq!(server.verify(&old_secret)["is_valid"], true);
    let revoke = |id: &str| {
        server.post(
            &format!("/v2alpha1/admin/issuedApiKeys/{id}:revoke"),
            &json!({"reason": "REVOCATION_REASON_KEY_COMPROMISE"}),
        )
    };
    assert_eq!(revoke(&old_id).status, 204);
    assert_eq!(server.verify(&old_secret)["error_code"], "VERIFICATION_ERROR_REVOKED");
    let old = server.get(&format!("/v2alpha1/admin/issuedApiKeys/{old_id}")).json();
    assert_eq!(old["revocation_reason"], "REVOCATION_REASON_KEY_COMPROMISE", "{old}");
    revoke(&old_id).assert_error(409, "CONFLICT");
}

#[test]
fn ip_allowlist_uses_the_configured_client_ip_source() {
    let dir = TempDir::new();
    let yaml = config("memory", &secrets(SECRET), "").replacen(
        "    port: 0\n",
        "    port: 0\n    client_ip_source: X_FORWARDED_FOR\n",
        1,
    );
    let server = Server::start_with(&dir.path("talos.yaml"), &yaml, &[]);
    let (_, secret) = server.issue(&json!({"ip_restriction": {"allowed_cidrs": ["10.0.0.0/8"]}}));
    let verify = |xff: Option<&str>| {
        let headers: Vec<(&str, &str)> = xff.map(|v| vec![("x-forwarded-for", v)]).unwrap_or_default();
        request(
            server.addr,
            "POST",
            "/v2alpha1/admin/apiKeys:verify",
            &headers,
            &json!({"credential": secret}).to_string(),
        )
        .json()
    };
    assert_eq!(verify(Some("10.1.2.3, 192.0.2.1"))["is_valid"], true);
    assert_eq!(verify(Some("192.0.2.1"))["error_code"], "VERIFICATION_ERROR_IP_NOT_ALLOWED");
    assert_eq!(verify(Some("garbage"))["error_code"], "VERIFICATION_ERROR_IP_NOT_ALLOWED");
    assert_eq!(verify(None)["error_code"], "VERIFICATION_ERROR_IP_NOT_ALLOWED");
}

#[test]
fn self_revocation() {
    let dir = TempDir::new();
    let yaml = config("memory", &secrets(SECRET), "")
        .replace("    default_ttl: 720h\n", "    default_ttl: 720h\n    prefix:\n      public_current: pk_test\n");
    let server = Server::start_with(&dir.path("talos.yaml"), &yaml, &[]);
    let self_revoke = |credential: &str, reason: serde_json::Value| {
        server.post("/v2alpha1/apiKeys:selfRevoke", &json!({"credential": credential, "reason": reason}))
    };
    let (key_id, secret) = server.issue(&json!({}));
    self_revoke(&secret, json!("REVOCATION_REASON_PRIVILEGE_WITHDRAWN")).assert_error(400, "BAD_REQUEST");
    self_revoke(&secret, json!("REVOCATION_REASON_UNSPECIFIED")).assert_error(400, "BAD_REQUEST");
    self_revoke("", json!(1)).assert_error(400, "CREDENTIAL_REQUIRED");
    self_revoke("eyJh.eyJ4.c2ln", json!(1)).assert_error(400, "DERIVED_TOKEN_NOT_REVOCABLE");
    self_revoke("ory_ak_v1_x_y", json!(1)).assert_error(404, "API_KEY_NOT_FOUND");
    assert_eq!(server.verify(&secret)["is_valid"], true, "refused requests change nothing");

    let resp = self_revoke(&secret, json!("REVOCATION_REASON_KEY_COMPROMISE"));
    assert_eq!((resp.status, resp.text.as_str()), (200, "{}"));
    assert_eq!(server.verify(&secret)["error_code"], "VERIFICATION_ERROR_REVOKED");
    let got = server.get(&format!("/v2alpha1/admin/issuedApiKeys/{key_id}")).json();
    assert_eq!(got["revocation_reason"], "REVOCATION_REASON_KEY_COMPROMISE");
    // Idempotent.
    assert_eq!(self_revoke(&secret, json!(1)).status, 200);

    // Public keys must be revoked by an admin.
    let public = server.post("/v2alpha1/admin/issuedApiKeys", &json!({"visibility": "KEY_VISIBILITY_PUBLIC"}));
    let public = public.json()["secret"].as_str().unwrap().to_owned();
    self_revoke(&public, json!(1)).assert_error(403, "FORBIDDEN");
    assert_eq!(server.verify(&public)["is_valid"], true);

    // A key in a rotation grace period is revoked at once when its holder says so.
    let (old_id, old_secret) = server.issue(&json!({}));
    let rotated =
        server.post(&format!("/v2alpha1/admin/issuedApiKeys/{old_id}:rotate"), &json!({"grace_period": "1h"}));
    assert_eq!(rotated.status, 201);
    assert_eq!(server.verify(&old_secret)["is_valid"], true);
    assert_eq!(self_revoke(&old_secret, json!(1)).status, 200);
    assert_eq!(server.verify(&old_secret)["error_code"], "VERIFICATION_ERROR_REVOKED");
}

#[test]
fn prefix_and_secret_rotation_keep_old_credentials_working() {
    let dir = TempDir::new();
    let dsn = dir.path("talos.redb");
    let dsn = dsn.to_str().unwrap();
    let config_path = dir.path("talos.yaml");
    let with_prefix = |yaml: String, prefix: &str| {
        yaml.replace("    default_ttl: 720h\n", &format!("    default_ttl: 720h\n    prefix:\n{prefix}"))
    };
    let first = with_prefix(config(dsn, &secrets(SECRET), ""), "      current: old_ak\n");
    let server = Server::start_with(&config_path, &first, &[]);
    let (_, key) = server.issue(&json!({"scopes": ["read"]}));
    assert!(key.starts_with("old_ak_v1_"));
    let macaroon = server
        .post("/v2alpha1/admin/apiKeys:derive", &json!({"credential": key, "algorithm": "TOKEN_ALGORITHM_MACAROON"}))
        .json()["token"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(server.terminate().code(), Some(0));

    // New prefix and secret; the old ones retired: everything made before still verifies.
    let rotated_secrets = format!("    current: \"{OTHER_SECRET}\"\n    retired:\n      - \"{SECRET}\"");
    let second = with_prefix(config(dsn, &rotated_secrets, ""), "      current: new_ak\n      retired: [old_ak]\n");
    let server = Server::start_with(&config_path, &second, &[]);
    assert_eq!(server.verify(&key)["is_valid"], true);
    assert_eq!(server.verify(&macaroon)["is_valid"], true);
    let (_, new_key) = server.issue(&json!({}));
    assert!(new_key.starts_with("new_ak_v1_"));
    assert_eq!(server.terminate().code(), Some(0));

    // Without the retired prefix, the old key reads as not found (same secret list).
    let third = with_prefix(config(dsn, &rotated_secrets, ""), "      current: new_ak\n");
    let server = Server::start_with(&config_path, &third, &[]);
    assert_eq!(server.verify(&key)["error_code"], "VERIFICATION_ERROR_NOT_FOUND");
    assert_eq!(server.verify(&new_key)["is_valid"], true);
    // Without the retired secret, the macaroon no longer verifies.
    let fourth = with_prefix(config(dsn, &secrets(OTHER_SECRET), ""), "      current: new_ak\n");
    drop(server);
    let server = Server::start_with(&config_path, &fourth, &[]);
    assert_eq!(server.verify(&macaroon)["error_code"], "VERIFICATION_ERROR_SIGNATURE_INVALID");
}

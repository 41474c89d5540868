//! `talos serve admin` and `talos serve check` as separate processes over one redb file, and bad
//! configuration refused at startup.

use std::process::Command;

use serde_json::json;

use crate::harness::*;

#[test]
fn check_plane_serves_only_the_data_plane() {
    let dir = TempDir::new();
    let dsn = dir.path("talos.redb");
    let dsn = dsn.to_str().unwrap();
    let config_path = dir.path("talos.yaml");
    let yaml = config(dsn, &secrets(SECRET), "");

    // Keys are issued through the admin plane.
    let admin = Server::start_with(&config_path, &yaml, &["admin"]);
    let (key_id, secret) = admin.issue(&json!({"name": "edge"}));
    let (revoked_id, revoked) = admin.issue(&json!({}));
    let resp = admin.post(
        &format!("/v2alpha1/admin/issuedApiKeys/{revoked_id}:revoke"),
        &json!({"reason": "REVOCATION_REASON_SUPERSEDED"}),
    );
    assert_eq!(resp.status, 204);
    // Self-revocation belongs to the data plane.
    admin
        .post("/v2alpha1/apiKeys:selfRevoke", &json!({"credential": secret, "reason": 1}))
        .assert_error(404, "NOT_FOUND");
    // The admin plane verifies too, reading the store.
    let admin_answer = admin.post("/v2alpha1/admin/apiKeys:verify", &json!({"credential": secret}));
    assert_eq!(admin_answer.header("ory-talos-cache"), Some("SKIP"));
    assert_eq!(admin.terminate().code(), Some(0));

    // The check plane answers from its snapshot of the same store, byte for byte like the admin.
    let check = Server::start_with(&config_path, &yaml, &["check"]);
    let check_answer = check.post("/v2alpha1/admin/apiKeys:verify", &json!({"credential": secret}));
    assert_eq!(check_answer.header("ory-talos-cache"), Some("HIT"));
    assert_eq!(check_answer.text, admin_answer.text);
    assert_eq!(check_answer.json()["key_id"], key_id);
    assert_eq!(check.verify(&revoked)["error_code"], "VERIFICATION_ERROR_REVOKED");
    assert_eq!(check.get("/health/ready").json()["status"], "ok");
    // JWKS is public (here: no signing keys configured).
    check.get("/v2alpha1/derivedKeys/jwks.json").assert_error(500, "INTERNAL_SERVER_ERROR");
    // Self-revocation writes through the store and the check plane rejects the key at once.
    let resp = check.post("/v2alpha1/apiKeys:selfRevoke", &json!({"credential": secret, "reason": 1}));
    assert_eq!((resp.status, resp.text.as_str()), (200, "{}"));
    assert_eq!(check.verify(&secret)["error_code"], "VERIFICATION_ERROR_REVOKED");
    // Admin routes do not exist here.
    check.post("/v2alpha1/admin/issuedApiKeys", &json!({})).assert_error(404, "NOT_FOUND");
    check.get(&format!("/v2alpha1/admin/issuedApiKeys/{key_id}")).assert_error(404, "NOT_FOUND");
    check.get("/v2alpha1/admin/issuedApiKeys").assert_error(404, "NOT_FOUND");
    assert_eq!(check.terminate().code(), Some(0));
}

#[test]
fn bad_config_lists_every_problem() {
    let dir = TempDir::new();
    let path = dir.path("bad.yaml");
    std::fs::write(
        &path,
        "serve:\n  http:\n    port: 99999\n  bogus: 1\ncredentials:\n  clock_skew: 5\nsecrets:\n  hmac:\n    current: short\n",
    )
    .unwrap();
    let out = Command::new(binary()).args(["serve", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in
        ["serve.http.port", "serve.bogus", "credentials.issuer", "credentials.clock_skew", "secrets.hmac.current"]
    {
        assert!(err.contains(key), "{key} not named in:\n{err}");
    }
    assert!(!err.contains("short"), "the secret value leaked:\n{err}");
}

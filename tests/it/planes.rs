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
    let ready = check.get("/health/ready").json();
    assert_eq!(ready["status"], "ok");
    assert!(ready["snapshot"]["revision"].as_u64().unwrap() >= 3, "{ready}");
    assert_eq!(ready["snapshot"]["keys"], 2);
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

/// The admin plane refuses a declared body over 1 MiB with a 413 envelope at once, without
/// waiting for bytes the client may never send.
#[test]
fn admin_plane_refuses_an_oversized_body_at_once() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let dir = TempDir::new();
    let admin = Server::start_with(&dir.path("admin.yaml"), &config("memory", &secrets(SECRET), ""), &["admin"]);
    let mut stream = std::net::TcpStream::connect(admin.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    stream
        .write_all(b"POST /v2alpha1/admin/issuedApiKeys HTTP/1.1\r\nhost: t\r\ncontent-length: 2000000\r\n\r\n{")
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let n = stream.read(&mut buf).expect("an answer before the body arrives");
    assert!(started.elapsed() < Duration::from_secs(5));
    parse_response(&buf[..n]).assert_error(413, "PAYLOAD_TOO_LARGE");
}

/// The admin plane refuses an HTTP/1.1 request without Host, as the data plane does: in the
/// envelope, answering nothing after it.
#[test]
fn admin_plane_refuses_a_request_without_host() {
    let dir = TempDir::new();
    let admin = Server::start_with(&dir.path("admin.yaml"), &config("memory", &secrets(SECRET), ""), &["admin"]);
    let follow_up = "GET /health/alive HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n";
    let no_host = "POST /v2alpha1/admin/apiKeys:verify HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}";
    let responses = parse_responses(&raw(admin.addr, format!("{no_host}{follow_up}").as_bytes()));
    assert_eq!(responses.len(), 1, "nothing after the refusal is answered");
    responses[0].assert_error(400, "BAD_REQUEST");
    assert_eq!(responses[0].header("connection"), Some("close"));
    // HTTP/1.0 has no Host requirement.
    let old = "POST /v2alpha1/admin/apiKeys:verify HTTP/1.0\r\ncontent-length: 2\r\n\r\n{}";
    assert_eq!(parse_response(&raw(admin.addr, old.as_bytes())).status, 200);
    let ok = parse_responses(&raw(admin.addr, follow_up.as_bytes()));
    assert_eq!(ok[0].status, 200);
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

/// The seed deployment on one host: one admin and two check processes sharing one redb file.
#[test]
fn split_planes_share_one_redb_file() {
    let dir = TempDir::new();
    let dsn = dir.path("talos.redb");
    split_planes(&dir, &config(dsn.to_str().unwrap(), &secrets(SECRET), ""));
}

/// One admin and two check processes over one store (`yaml`'s `db.dsn`): issue → both verify,
/// revoke → both reject, self-revoke on one → the other rejects, admin down → checks keep
/// verifying, a new admin → checks catch up.
pub fn split_planes(dir: &TempDir, yaml: &str) {
    use std::time::Duration;
    let yaml = yaml.to_owned();
    let admin = Server::start_with(&dir.path("admin.yaml"), &yaml, &["admin"]);
    let check_a = Server::start_with(&dir.path("check-a.yaml"), &yaml, &["check"]);
    let check_b = Server::start_with(&dir.path("check-b.yaml"), &yaml, &["check"]);
    let within = Duration::from_secs(5);
    let verdict = |server: &Server, key: &str| server.verify(key)["error_code"].as_str().unwrap_or("VALID").to_owned();

    // Issue on the admin: both check planes verify, once their snapshots caught up.
    let (key_id, key) = admin.issue(&json!({"name": "edge"}));
    for check in [&check_a, &check_b] {
        eventually(within, || (verdict(check, &key) == "VALID").then_some(()));
    }
    // Revoke on the admin: both reject.
    let resp = admin.post(&format!("/v2alpha1/admin/issuedApiKeys/{key_id}:revoke"), &json!({"reason": 1}));
    assert_eq!(resp.status, 204);
    for check in [&check_a, &check_b] {
        eventually(within, || (verdict(check, &key) == "VERIFICATION_ERROR_REVOKED").then_some(()));
    }
    // Self-revoke on check A: A rejects at once, B and the admin follow.
    let (_, other) = admin.issue(&json!({}));
    eventually(within, || (verdict(&check_a, &other) == "VALID").then_some(()));
    let resp = check_a.post("/v2alpha1/apiKeys:selfRevoke", &json!({"credential": other, "reason": 1}));
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(verdict(&check_a, &other), "VERIFICATION_ERROR_REVOKED");
    eventually(within, || (verdict(&check_b, &other) == "VERIFICATION_ERROR_REVOKED").then_some(()));
    assert_eq!(verdict(&admin, &other), "VERIFICATION_ERROR_REVOKED");
    // A self-revoke of a key the admin has just revoked answers only once this plane rejects it
    // too, though its snapshot had not caught up with the admin's revocation yet.
    let (third_id, third) = admin.issue(&json!({}));
    eventually(within, || (verdict(&check_b, &third) == "VALID").then_some(()));
    let resp = admin.post(&format!("/v2alpha1/admin/issuedApiKeys/{third_id}:revoke"), &json!({"reason": 1}));
    assert_eq!(resp.status, 204);
    let resp = check_b.post("/v2alpha1/apiKeys:selfRevoke", &json!({"credential": third, "reason": 1}));
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(verdict(&check_b, &third), "VERIFICATION_ERROR_REVOKED");

    // Kill the admin: the check planes keep answering from their snapshots.
    let (_, survivor) = admin.issue(&json!({}));
    for check in [&check_a, &check_b] {
        eventually(within, || (verdict(check, &survivor) == "VALID").then_some(()));
    }
    drop(admin);
    assert_eq!(verdict(&check_a, &survivor), "VALID");
    assert_eq!(verdict(&check_b, &survivor), "VALID");
    // A new admin on the same file: writes reach the running check planes.
    let admin = Server::start_with(&dir.path("admin.yaml"), &yaml, &["admin"]);
    let (_, later) = admin.issue(&json!({}));
    for check in [&check_a, &check_b] {
        eventually(within, || (verdict(check, &later) == "VALID").then_some(()));
    }
}

//! The operations listener (`serve.metrics`): after a walk-through, `/metrics` shows counters
//! moved by exactly what was done, on every serve mode; the data plane sheds connections above
//! `serve.max_connections_per_worker` with a 503 and a close.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::harness::{config, eventually, parse_response, request, sample, secrets, Server, TempDir, SECRET};

fn scrape(server: &Server) -> String {
    let resp = request(server.metrics_addr, "GET", "/metrics", &[], "");
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert!(resp.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    assert!(resp.text.ends_with("# EOF\n"));
    resp.text
}

fn verifications(text: &str, plane: &str, outcome: &str) -> f64 {
    sample(text, &format!(r#"talos_verifications_total{{plane="{plane}",outcome="{outcome}"}}"#))
        .unwrap_or_else(|| panic!("no {plane}/{outcome} verification series in\n{text}"))
}

#[test]
fn all_in_one_counts_a_walk_through() {
    let server = Server::start();
    let before = scrape(&server);
    assert_eq!(verifications(&before, "all", "valid"), 0.0);

    let (_, kept) = server.issue(&json!({"name": "kept"}));
    let (revoked_id, revoked) = server.issue(&json!({"name": "revoked"}));
    for _ in 0..3 {
        assert_eq!(server.verify(&kept)["is_valid"], true);
    }
    let resp = server.post(
        &format!("/v2alpha1/admin/issuedApiKeys/{revoked_id}:revoke"),
        &json!({"reason": "REVOCATION_REASON_KEY_COMPROMISE"}),
    );
    assert_eq!(resp.status, 204, "{}", resp.text);
    for _ in 0..2 {
        assert_eq!(server.verify(&revoked)["is_valid"], false);
    }
    assert_eq!(server.verify("ory_ak_nothing_here")["is_valid"], false);
    let batch = server
        .post("/v2alpha1/admin/apiKeys:batchVerify", &json!({"requests": [{"credential": kept}, {"credential": ""}]}));
    assert_eq!(batch.status, 200, "{}", batch.text);
    assert_eq!(server.get("/v2alpha1/admin/issuedApiKeys/missing").status, 404);
    assert_eq!(server.get("/no/such/route").status, 404);

    let after = scrape(&server);
    assert_eq!(verifications(&after, "all", "valid"), 4.0, "{after}");
    assert_eq!(verifications(&after, "all", "revoked"), 2.0);
    assert_eq!(verifications(&after, "all", "not_found"), 1.0);
    assert_eq!(verifications(&after, "all", "invalid_format"), 1.0);
    assert_eq!(sample(&after, r#"talos_verify_request_duration_seconds_count{plane="all"}"#), Some(7.0));
    assert_eq!(
        sample(&after, r#"talos_admin_requests_total{route="/v2alpha1/admin/issuedApiKeys",status="201"}"#),
        Some(2.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            r#"talos_admin_requests_total{route="/v2alpha1/admin/issuedApiKeys/{key_id}:revoke",status="204"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, r#"talos_admin_requests_total{route="/v2alpha1/admin/issuedApiKeys/{key_id}",status="404"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&after, r#"talos_admin_requests_total{route="unmatched",status="404"}"#), Some(1.0));
    assert!(!after.contains("/no/such/route"), "client paths never become label values");
    assert_eq!(sample(&after, "talos_snapshot_keys"), Some(2.0));
    assert!(sample(&after, "talos_snapshot_revision").unwrap() >= 3.0);
    assert!(sample(&after, "talos_snapshot_refresh_duration_seconds_count").unwrap() >= 1.0);
    assert!(sample(&after, r#"talos_store_operation_duration_seconds_count{operation="insert"}"#).unwrap() >= 2.0);
    assert!(sample(&after, r#"talos_store_operation_duration_seconds_count{operation="modify"}"#).unwrap() >= 1.0);
    assert_eq!(sample(&after, r#"talos_store_errors_total{operation="insert"}"#), Some(0.0));
    assert!(sample(&after, r#"talos_engine_connections_accepted_total{plane="all"}"#).unwrap() >= 10.0);
    assert!(sample(&after, "process_resident_memory_bytes").unwrap() > 0.0);
    // No secret or key material on the metrics page.
    for secret in [SECRET, &kept, &revoked] {
        assert!(!after.contains(secret));
    }

    // Health probes answer there too; nothing else does.
    assert_eq!(request(server.metrics_addr, "GET", "/health/alive", &[], "").status, 200);
    assert_eq!(request(server.metrics_addr, "GET", "/health/ready", &[], "").status, 200);
    request(server.metrics_addr, "GET", "/v2alpha1/admin/issuedApiKeys", &[], "").assert_error(404, "NOT_FOUND");
    request(server.metrics_addr, "POST", "/v2alpha1/admin/apiKeys:verify", &[], "{}").assert_error(404, "NOT_FOUND");
    // And the planes' port does not serve metrics.
    assert_eq!(server.get("/metrics").status, 404);
}

#[test]
fn split_planes_count_on_their_own_listener() {
    let dir = TempDir::new();
    let yaml = config(&format!("redb://{}", dir.path("talos.redb").display()), &secrets(SECRET), "");
    let admin = Server::start_with(&dir.path("admin.yaml"), &yaml, &["admin"]);
    let check = Server::start_with(&dir.path("check.yaml"), &yaml, &["check"]);
    assert_ne!(admin.metrics_addr, check.metrics_addr);

    let (_, key) = admin.issue(&json!({}));
    // The admin plane verifies from the store.
    assert_eq!(admin.verify(&key)["is_valid"], true);
    let check_keys = eventually(Duration::from_secs(10), || {
        let text = scrape(&check);
        (sample(&text, "talos_snapshot_keys") == Some(1.0)).then_some(text)
    });
    assert_eq!(verifications(&check_keys, "check", "valid"), 0.0);
    assert_eq!(check.verify(&key)["is_valid"], true);
    assert_eq!(check.verify("nope")["is_valid"], false);

    let admin_text = scrape(&admin);
    assert_eq!(verifications(&admin_text, "admin", "valid"), 1.0, "{admin_text}");
    assert!(admin_text.contains("talos_admin_requests_total"));
    assert!(!admin_text.contains("talos_engine_connections"), "the admin plane runs no engine");
    assert!(sample(&admin_text, "talos_admin_connections_open").is_some());

    let check_text = scrape(&check);
    assert_eq!(verifications(&check_text, "check", "valid"), 1.0, "{check_text}");
    assert_eq!(verifications(&check_text, "check", "not_found"), 1.0);
    assert!(!check_text.contains("talos_admin_requests_total"), "the check plane serves no admin route");
    assert_eq!(request(check.metrics_addr, "GET", "/health/ready", &[], "").status, 200);
}

#[test]
fn connections_above_the_cap_are_shed_with_a_503() {
    let dir = TempDir::new();
    let yaml = config("memory", &secrets(SECRET), "")
        .replace("  workers: 2\n", "  workers: 1\n  max_connections_per_worker: 2\n");
    let server = Server::start_with(&dir.path("talos.yaml"), &yaml, &[]);
    let alive = b"GET /health/alive HTTP/1.1\r\nhost: t\r\n\r\n";

    // Two keep-alive connections, each proven accepted by an answer.
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            stream.write_all(alive).unwrap();
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
            stream
        })
        .collect();

    // The third is answered 503 in the envelope and closed, without being read.
    let mut third = TcpStream::connect(server.addr).unwrap();
    third.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    third.read_to_end(&mut out).unwrap();
    let resp = parse_response(&out);
    resp.assert_error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(resp.header("connection"), Some("close"));

    let text = scrape(&server);
    assert_eq!(sample(&text, r#"talos_engine_connections_shed_total{plane="all"}"#), Some(1.0), "{text}");
    assert_eq!(sample(&text, r#"talos_engine_connections_open{plane="all"}"#), Some(2.0));

    // Room again once a connection goes away.
    drop(held.pop());
    eventually(Duration::from_secs(10), || {
        let text = scrape(&server);
        (sample(&text, r#"talos_engine_connections_open{plane="all"}"#) == Some(1.0)).then_some(())
    });
    let resp = request(server.addr, "GET", "/health/alive", &[], "");
    assert_eq!(resp.status, 200, "{}", resp.text);
}

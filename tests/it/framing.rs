//! The data plane's HTTP layer under awkward but legal input, and inputs that must be refused
//! without echoing anything secret.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[test]
fn chunked_body_arriving_in_small_pieces() {
    let server = Server::start();
    let (_, secret) = server.issue(&json!({}));
    let body = json!({"credential": secret}).to_string();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(b"POST /v2alpha1/admin/apiKeys:verify HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
        .unwrap();
    // One byte per chunk, each chunk in its own write.
    for b in body.bytes() {
        stream.write_all(format!("1;ext=v\r\n{}\r\n", b as char).as_bytes()).unwrap();
    }
    stream.write_all(b"0\r\ntrailer: x\r\n\r\n").unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    let resp = parse_response(&out);
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.json()["is_valid"], true);
}

#[test]
fn paths_match_exactly_and_bodies_must_be_objects() {
    let server = Server::start();
    let (_, secret) = server.issue(&json!({}));
    // Extra slashes do not reach admin routes (an edge filter by prefix must hold).
    server.get("//v2alpha1/admin/issuedApiKeys").assert_error(404, "NOT_FOUND");
    server.get("/v2alpha1//admin/issuedApiKeys").assert_error(404, "NOT_FOUND");
    request(server.addr, "POST", "//v2alpha1/admin/apiKeys:verify", &[], "{}").assert_error(404, "NOT_FOUND");
    // A JSON array is not a request message, on either plane.
    let array = json!([secret]).to_string();
    request(server.addr, "POST", "/v2alpha1/admin/apiKeys:verify", &[], &array).assert_error(400, "BAD_REQUEST");
    request(server.addr, "POST", "/v2alpha1/admin/issuedApiKeys", &[], "[]").assert_error(400, "BAD_REQUEST");
    // Mistyped bodies are refused without quoting the key back.
    for (path, body) in [
        ("/v2alpha1/admin/apiKeys:batchVerify", json!({"requests": [secret]})),
        ("/v2alpha1/admin/apiKeys:verify", json!({"credential": [secret]})),
        ("/v2alpha1/admin/issuedApiKeys", json!({"scopes": secret})),
    ] {
        let resp = request(server.addr, "POST", path, &[], &body.to_string());
        resp.assert_error(400, "BAD_REQUEST");
        assert!(!resp.text.contains(&secret), "{path}: {}", resp.text);
    }
    let log = server.log();
    assert!(!log.contains(secret.rsplit_once('_').unwrap().1), "a key reached the log");
}

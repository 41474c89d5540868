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

#[test]
fn head_answers_like_get_and_405_names_the_allowed_methods() {
    let dir = TempDir::new();
    let yaml = config(&format!("redb://{}", dir.path("talos.redb").display()), &secrets(SECRET), "");
    let all = Server::start_with(&dir.path("all.yaml"), &yaml, &[]);
    let (key_id, _) = all.issue(&json!({}));
    drop(all);
    let admin = Server::start_with(&dir.path("admin.yaml"), &yaml, &["admin"]);
    let check = Server::start_with(&dir.path("check.yaml"), &yaml, &["check"]);
    let all = Server::start_with(&dir.path("all2.yaml"), &yaml.replace("talos.redb", "other.redb"), &[]);
    let get_path = format!("/v2alpha1/admin/issuedApiKeys/{key_id}");
    for (server, path) in
        [(&admin, get_path.as_str()), (&admin, "/health/alive"), (&check, "/health/alive"), (&all, "/version")]
    {
        let get = request(server.addr, "GET", path, &[], "");
        assert_eq!(get.status, 200, "{path}: {}", get.text);
        let out = raw(server.addr, format!("HEAD {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").as_bytes());
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut head = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = head.parse(&out) else { panic!("HEAD {path}: {out:?}") };
        assert_eq!(head.code, Some(200), "HEAD {path}");
        assert_eq!(len, out.len(), "HEAD {path} carried a body");
        let length = head.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length")).map(|h| h.value);
        assert_eq!(length, get.header("content-length").map(str::as_bytes), "HEAD {path}");
    }
    for (server, method, path, allow) in [
        (&check, "GET", "/v2alpha1/admin/apiKeys:verify", "POST"),
        (&all, "GET", "/v2alpha1/admin/apiKeys:batchVerify", "POST"),
        (&check, "POST", "/health/ready", "GET, HEAD"),
        (&admin, "DELETE", "/v2alpha1/admin/issuedApiKeys", "GET, POST, HEAD"),
        (&admin, "PUT", get_path.as_str(), "GET, PATCH, HEAD"),
        (&all, "GET", "/v2alpha1/admin/apiKeys:derive", "POST"),
    ] {
        let resp = request(server.addr, method, path, &[], if method == "GET" { "" } else { "{}" });
        resp.assert_error(405, "METHOD_NOT_ALLOWED");
        assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
    }
}

#[test]
fn http_1_0_keep_alive_is_announced_and_kept() {
    let server = Server::start();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..2 {
        stream.write_all(b"GET /health/alive HTTP/1.0\r\nconnection: keep-alive\r\n\r\n").unwrap();
        let mut buf = [0u8; 2048];
        let n = stream.read(&mut buf).unwrap();
        let resp = parse_response(&buf[..n]);
        assert_eq!(resp.status, 200, "{}", resp.text);
        assert_eq!(resp.header("connection"), Some("keep-alive"));
    }
    // Without keep-alive, HTTP/1.0 closes after the answer.
    let out = raw(server.addr, b"POST /v2alpha1/admin/apiKeys:verify HTTP/1.0\r\ncontent-length: 2\r\n\r\n{}");
    let resp = parse_response(&out);
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.header("connection"), Some("close"));
}

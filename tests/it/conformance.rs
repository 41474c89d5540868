//! The data plane's HTTP/1.1 framing on the wire (RFC 9112), as a table: request bytes → the
//! status of the answer and whether the connection stays open. Each case is sent on its own
//! connection followed, in the same write, by a well-formed `GET /health/alive` that closes:
//! a connection that stays open answers it too; a refused request is the last thing answered —
//! nothing after it is parsed (no guessing where a smuggled request would start).
//!
//! Then the parts a table cannot show: pipelined requests split at every byte boundary, the
//! read-header, read and idle deadlines, and a client that never reads its answers.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use engine::parse::{MAX_BODY, MAX_HEAD, MAX_HEADERS, MAX_REQUEST_LINE};
use serde_json::json;

use crate::harness::*;

const VERIFY: &str = "/v2alpha1/admin/apiKeys:verify";
const FOLLOW_UP: &[u8] = b"GET /health/alive HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n";

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    status: u16,
    open: bool,
}

fn case(name: &'static str, bytes: impl Into<Vec<u8>>, status: u16, open: bool) -> Case {
    Case { name, bytes: bytes.into(), status, open }
}

/// A verify request: the request line, `headers` (each line ending in CRLF), then `body`.
fn post(headers: &str, body: &str) -> String {
    format!("POST {VERIFY} HTTP/1.1\r\nhost: t\r\n{headers}\r\n{body}")
}

fn chunked(body: &str) -> String {
    let (a, b) = body.split_at(body.len() / 2);
    format!("{:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\n\r\n", a.len(), b.len())
}

fn table(secret: &str) -> Vec<Case> {
    let body = json!({ "credential": secret }).to_string();
    let n = body.len();
    let cl = |value: &str| post(&format!("content-length: {value}\r\n"), &body);
    let te = |lines: &str| post(lines, &chunked(&body));
    let with_header = |line: &[u8]| {
        let mut bytes = format!("POST {VERIFY} HTTP/1.1\r\nhost: t\r\ncontent-length: {n}\r\n").into_bytes();
        bytes.extend_from_slice(line);
        bytes.extend_from_slice(b"\r\n\r\n");
        bytes.extend_from_slice(body.as_bytes());
        bytes
    };
    let long_line = format!("POST /{} HTTP/1.1\r\nhost: t\r\n\r\n", "a".repeat(MAX_REQUEST_LINE));
    let big_head = format!("GET /health/alive HTTP/1.1\r\nhost: t\r\nx: {}\r\n\r\n", "p".repeat(MAX_HEAD));
    let many_headers: String = (0..MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
    vec![
        // Well-formed: answered, and the connection stays open unless it asked to close.
        case("content-length", cl(&n.to_string()), 200, true),
        case("chunked, with an extension and a trailer", te("transfer-encoding: chunked\r\n"), 200, true),
        case("transfer-encoding is case-insensitive", te("Transfer-Encoding: Chunked\r\n"), 200, true),
        case("empty body reads as {}", post("content-length: 0\r\n", ""), 200, true),
        case(
            "absolute-form target",
            format!("POST http://t{VERIFY} HTTP/1.1\r\nhost: t\r\ncontent-length: {n}\r\n\r\n{body}"),
            200,
            true,
        ),
        case("obs-text in a value", with_header(b"x-note: caf\xc3\xa9 \xff"), 200, true),
        case("connection: close", post(&format!("content-length: {n}\r\nconnection: close\r\n"), &body), 200, false),
        case(
            "HTTP/1.0 closes by default",
            format!("POST {VERIFY} HTTP/1.0\r\ncontent-length: {n}\r\n\r\n{body}"),
            200,
            false,
        ),
        case(
            "HTTP/1.0 with keep-alive",
            format!("POST {VERIFY} HTTP/1.0\r\nconnection: keep-alive\r\ncontent-length: {n}\r\n\r\n{body}"),
            200,
            true,
        ),
        case(
            "a route's wrong method is 405, framing intact",
            format!("GET {VERIFY} HTTP/1.1\r\nhost: t\r\n\r\n"),
            405,
            true,
        ),
        case("an unknown route is 404, framing intact", "GET /nope HTTP/1.1\r\nhost: t\r\n\r\n", 404, true),
        case("missing host (HTTP/1.1)", format!("POST {VERIFY} HTTP/1.1\r\ncontent-length: 0\r\n\r\n"), 400, false),
        // Content-Length.
        case(
            "duplicate content-length",
            post(&format!("content-length: {n}\r\ncontent-length: {n}\r\n"), &body),
            400,
            false,
        ),
        case(
            "conflicting content-length",
            post(&format!("content-length: {n}\r\ncontent-length: 1\r\n"), &body),
            400,
            false,
        ),
        case("content-length +N", cl(&format!("+{n}")), 400, false),
        case("content-length -1", cl("-1"), 400, false),
        case("content-length hex", cl("0x10"), 400, false),
        case("content-length list", cl(&format!("{n},{n}")), 400, false),
        case("content-length with a space inside", cl("1 0"), 400, false),
        case("content-length past u64", cl("99999999999999999999999"), 400, false),
        case("content-length over the body limit", cl(&(MAX_BODY + 1).to_string()), 413, false),
        // Transfer-Encoding.
        case(
            "transfer-encoding and content-length",
            te(&format!("transfer-encoding: chunked\r\ncontent-length: {n}\r\n")),
            400,
            false,
        ),
        case("last coding not chunked", te("transfer-encoding: chunked, gzip\r\n"), 400, false),
        case(
            "last coding not chunked, across lines",
            te("transfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n"),
            400,
            false,
        ),
        case("chunked twice", te("transfer-encoding: chunked, chunked\r\n"), 400, false),
        case("a coding we do not implement", te("transfer-encoding: gzip, chunked\r\n"), 501, false),
        case(
            "chunked on HTTP/1.0",
            format!("POST {VERIFY} HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n{}", chunked(&body)),
            400,
            false,
        ),
        // Chunk framing.
        case("chunk size not hex", te_raw("zz\r\nhello\r\n0\r\n\r\n"), 400, false),
        case("chunk size overflow", te_raw("fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400, false),
        case("bare LF after a chunk size", te_raw("5\nhello\r\n0\r\n\r\n"), 400, false),
        case("bare LF in a chunk extension", te_raw("5;a=b\nc\r\nhello\r\n0\r\n\r\n"), 400, false),
        case("control byte in a chunk extension", te_raw("5;a\x01\r\nhello\r\n0\r\n\r\n"), 400, false),
        case("chunk data not followed by CRLF", te_raw("5\r\nhelloXX\r\n0\r\n\r\n"), 400, false),
        // Header lines.
        case("obsolete line folding", with_header(b"x-a: b\r\n c"), 400, false),
        case("whitespace before the colon", with_header(b"x-a : b"), 400, false),
        case("bare CR inside a line", with_header(b"x-a: b\rc"), 400, false),
        case("bare LF line ending", format!("POST {VERIFY} HTTP/1.1\nhost: t\ncontent-length: 0\n\n"), 400, false),
        case("NUL in a value", with_header(b"x-a: b\x00c"), 400, false),
        case("NUL in a name", with_header(b"x\x00a: b"), 400, false),
        case("escape byte in a value", with_header(b"x-a: \x1b[31m"), 400, false),
        case("content_length (underscore) is refused", post(&format!("content_length: {n}\r\n"), &body), 400, false),
        // Request line and limits.
        case("double space in the request line", format!("POST  {VERIFY} HTTP/1.1\r\nhost: t\r\n\r\n"), 400, false),
        case("HTTP/2.0", format!("POST {VERIFY} HTTP/2.0\r\nhost: t\r\n\r\n"), 505, false),
        case("not HTTP at all", "hello there\r\n\r\n", 400, false),
        case("request line over the limit", long_line, 414, false),
        case("header section over the limit", big_head, 431, false),
        case(
            "too many header lines",
            format!("GET /health/alive HTTP/1.1\r\nhost: t\r\n{many_headers}\r\n"),
            431,
            false,
        ),
    ]
}

/// A chunked verify whose body framing is `framing`, verbatim.
fn te_raw(framing: &str) -> String {
    post("transfer-encoding: chunked\r\n", framing)
}

/// The answers on one connection to `bytes` then [`FOLLOW_UP`], read until the server closes.
fn answers(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<Resp> {
    let mut both = bytes.to_vec();
    both.extend_from_slice(FOLLOW_UP);
    let mut responses = parse_responses(&raw(addr, &both));
    // Interim answers (100 Continue) are not answers to a request.
    responses.retain(|r| r.status >= 200);
    responses
}

#[test]
fn framing_table() {
    let server = Server::start();
    let (_, secret) = server.issue(&json!({}));
    let mut failures = Vec::new();
    for case in table(&secret) {
        let responses = answers(server.addr, &case.bytes);
        let Some(first) = responses.first() else {
            failures.push(format!("{}: no answer", case.name));
            continue;
        };
        let expected = if case.open { 2 } else { 1 };
        if first.status != case.status || responses.len() != expected {
            failures.push(format!(
                "{}: {} answer(s), first {} — expected {} and the connection {}: {}",
                case.name,
                responses.len(),
                first.status,
                case.status,
                if case.open { "open" } else { "closed" },
                first.text
            ));
            continue;
        }
        if first.status >= 400 {
            let envelope = first.json();
            assert_eq!(envelope["error"]["code"], case.status, "{}: {envelope}", case.name);
            assert!(envelope["error"]["message"].is_string(), "{}: {envelope}", case.name);
        }
        if !case.open {
            assert_eq!(first.header("connection"), Some("close"), "{}: a closing answer says so", case.name);
        } else {
            assert_eq!(responses[1].status, 200, "{}: the follow-up", case.name);
        }
        // A verify that carried the key answers for it.
        if first.status == 200 && case.bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
            assert_eq!(first.json()["is_valid"], true, "{}: {}", case.name, first.text);
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    // Nothing the server refused brought it down.
    assert_eq!(server.verify(&secret)["is_valid"], true);
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let server = Server::start();
    let (_, secret) = server.issue(&json!({}));
    let body = json!({ "credential": secret }).to_string();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head =
        format!("POST {VERIFY} HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert_eq!(parse_response(&rest).json()["is_valid"], true);
}

/// Three pipelined requests — a verify, a chunked batch verify and a verify that closes — sent in
/// two writes split at every byte boundary, get the same answers as when sent at once.
#[test]
fn pipelined_requests_split_at_every_byte_boundary() {
    let server = Server::start();
    let (_, secret) = server.issue(&json!({}));
    let (_, other) = server.issue(&json!({}));
    let one = json!({ "credential": secret }).to_string();
    let batch = json!({ "requests": [{ "credential": secret }, { "credential": "nope" }, { "credential": other }] })
        .to_string();
    let mut bytes = post(&format!("content-length: {}\r\nx-request-id: a\r\n", one.len()), &one);
    bytes += &format!(
        "POST /v2alpha1/admin/apiKeys:batchVerify HTTP/1.1\r\nhost: t\r\nx-request-id: b\r\ntransfer-encoding: chunked\r\n\r\n{}",
        chunked(&batch)
    );
    bytes += &post(&format!("content-length: {}\r\nx-request-id: c\r\nconnection: close\r\n", one.len()), &one);
    let bytes = bytes.into_bytes();

    let summary = |responses: Vec<Resp>| -> Vec<(u16, String, String)> {
        responses.into_iter().map(|r| (r.status, r.header("x-request-id").unwrap_or("").to_owned(), r.text)).collect()
    };
    let whole = summary(parse_responses(&raw(server.addr, &bytes)));
    assert_eq!(whole.len(), 3, "{whole:?}");
    assert_eq!(whole.iter().map(|r| r.0).collect::<Vec<_>>(), [200, 200, 200]);
    assert_eq!(whole.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    let results: serde_json::Value = serde_json::from_str(&whole[1].2).unwrap();
    assert_eq!(
        results["results"].as_array().unwrap().iter().map(|r| r["is_valid"] == true).collect::<Vec<_>>(),
        [true, false, true]
    );

    for at in 1..bytes.len() {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(&bytes[..at]).unwrap();
        // The second part must arrive in a read of its own: wait for the first to be taken.
        std::thread::sleep(Duration::from_micros(300));
        stream.write_all(&bytes[at..]).unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).unwrap();
        assert_eq!(summary(parse_responses(&out)), whole, "split at byte {at}");
    }
}

/// `talos serve` with short deadlines: a head within 400ms, a request within 800ms, answers
/// taken within 1s, idle connections closed after 1s.
fn timeout_server() -> Server {
    let timeouts = "    timeouts:\n      read_header: 400ms\n      read: 800ms\n      write: 1s\n      idle: 1s\n";
    let yaml = config("memory", &secrets(SECRET), "").replacen("  metrics:\n", &format!("{timeouts}  metrics:\n"), 1);
    Server::start_yaml(&yaml)
}

/// Reads until the server closes; returns what arrived and how long it took.
fn until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    (out, started.elapsed())
}

#[test]
fn read_deadlines_answer_408_and_idle_connections_close() {
    let server = timeout_server();

    // Slowloris: a head dripping in a byte at a time never completes within read_header.
    let mut slow = TcpStream::connect(server.addr).unwrap();
    let started = Instant::now();
    let dripper = {
        let mut stream = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for b in
                b"POST /v2alpha1/admin/apiKeys:verify HTTP/1.1\r\nhost: t\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            {
                if stream.write_all(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let (out, _) = until_closed(&mut slow);
    let took = started.elapsed();
    let resp = parse_response(&out);
    resp.assert_error(408, "REQUEST_TIMEOUT");
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(3), "slowloris cut after {took:?}");
    dripper.join().unwrap();

    // A complete head whose body never finishes: cut at `read`, not `read_header`.
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    let started = Instant::now();
    stalled
        .write_all(format!("POST {VERIFY} HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n{{\"cred").as_bytes())
        .unwrap();
    let (out, _) = until_closed(&mut stalled);
    let took = started.elapsed();
    parse_response(&out).assert_error(408, "REQUEST_TIMEOUT");
    assert!(took >= Duration::from_millis(700) && took < Duration::from_secs(3), "stalled body cut after {took:?}");

    // Idle keep-alive: answered, still usable a moment later, closed silently after `idle`.
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ping = b"GET /health/alive HTTP/1.1\r\nhost: t\r\n\r\n";
    for _ in 0..2 {
        idle.write_all(ping).unwrap();
        let mut buf = [0u8; 4096];
        let n = idle.read(&mut buf).unwrap();
        assert_eq!(parse_response(&buf[..n]).status, 200);
        std::thread::sleep(Duration::from_millis(300));
    }
    let (out, took) = until_closed(&mut idle);
    assert!(out.is_empty(), "an idle close says nothing: {:?}", String::from_utf8_lossy(&out));
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(4), "idle close after {took:?}");
    assert_eq!(server.get("/health/alive").status, 200);
}

/// A client that pipelines verifies and never reads the answers is disconnected once the write
/// deadline passes, instead of holding its worker's connection for ever: the engine's open
/// connection count drops to zero while the client still holds its end unread, and what it
/// finally reads is fewer answers than it sent requests.
#[test]
fn a_client_that_never_reads_is_disconnected() {
    let server = timeout_server();
    let (_, secret) = server.issue(&json!({}));
    let body = json!({ "credential": secret }).to_string();
    let one = post(&format!("content-length: {}\r\n", body.len()), &body);
    let burst = one.repeat(1_000);
    let stream = TcpStream::connect(server.addr).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    // Send until our writes stall: the server has stopped reading, because it is blocked writing
    // answers we do not take (its send buffer and our receive buffer are full).
    let started = Instant::now();
    let mut sent = 0usize;
    while let Ok(n) = (&stream).write(burst.as_bytes()) {
        sent += n;
        assert!(started.elapsed() < Duration::from_secs(60), "the buffers never filled");
    }
    // Within the write deadline (1s) the server lets go of the connection, though we still hold
    // it and have read nothing.
    let open = |server: &Server| {
        let text = request(server.metrics_addr, "GET", "/metrics", &[], "").text;
        sample(&text, r#"talos_engine_connections_open{plane="all"}"#)
    };
    eventually(Duration::from_secs(10), || (open(&server) == Some(0.0)).then_some(()));
    // Take everything it wrote before it did.
    let mut reader = &stream;
    reader.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    let answered = received.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
    let requests = sent / one.len();
    assert!(answered < requests, "the server answered all {requests} requests: it never let go");
    assert_eq!(server.verify(&secret)["is_valid"], true, "the worker serves on");
}

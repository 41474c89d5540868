//! Structured requests through the data plane's whole in-memory path: the fuzzer chooses a POST
//! (to either verify route, HTTP/1.0 or 1.1, arbitrary extra headers, any framing, and a verify
//! or batch verify body built from real, revoked, forged, mutated and arbitrary credentials),
//! which is written out as bytes, framed by `engine::parse`, its body decoded, then verified and
//! answered by `engine::verify::respond` against a snapshot — the steps a worker takes between a
//! read and a write, without the socket.
//!
//! Beyond "never panics", the answer must be a well-formed HTTP/1.1 response whose body is
//! JSON of the declared length, and when the request is a well-formed verify of a known key the
//! verdict must be the key's: valid for the live key, `REVOKED` for the revoked one, invalid for
//! a forged checksum or anything arbitrary. A wrong verdict here is a security bug, not a crash.
#![no_main]

use std::borrow::Cow;
use std::sync::OnceLock;

use common::clock::{self, Nanos, NANOS_PER_SEC};
use common::key;
use common::metrics::{Metrics, WorkerMetrics};
use common::model::{KeyKind, KeyRecord, KeyStatus, RevocationReason, Visibility};
use common::snapshot::{self, Snapshot};
use common::store::redb::RedbStore;
use common::verify::Verifier;
use engine::parse::{self, BodyFraming, ChunkedDecoder, MAX_HEADERS};
use engine::respond::Persist;
use engine::verify::{self, Reply, Route, Source};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

mod fixture;

const LIVE: u128 = 0x1111_2222_3333_4444_5555_6666_7777_8888;
const REVOKED: u128 = 0x9999_aaaa_bbbb_cccc_dddd_eeee_ffff_0000;
const ISSUED_AGO: Nanos = 3600 * NANOS_PER_SEC;

struct Fixture {
    verifier: Verifier,
    snapshot: Snapshot,
    store: RedbStore,
    metrics: std::sync::Arc<WorkerMetrics>,
    live: String,
    revoked: String,
    forged: String,
}

fn uuid(bits: u128) -> uuid::Uuid {
    uuid::Builder::from_random_bytes(bits.to_le_bytes()).into_uuid()
}

fn record(bits: u128, now: Nanos, revoked: bool) -> KeyRecord {
    let mut record = KeyRecord {
        key_id: uuid(bits).hyphenated().to_string(),
        name: "fuzz".into(),
        actor_id: "svc-fuzz".into(),
        scopes: vec!["read".into()],
        status: KeyStatus::Active,
        visibility: Visibility::Secret,
        token_prefix: "ory_ak".into(),
        create_time: now - ISSUED_AGO,
        update_time: now - ISSUED_AGO,
        expire_time: now + 86_400 * NANOS_PER_SEC,
        ..KeyRecord::empty(KeyKind::Issued)
    };
    if revoked {
        record.revoke(RevocationReason::KeyCompromise, String::new(), None, now - 60 * NANOS_PER_SEC);
    }
    record
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let verifier = fixture::verifier();
        let now = clock::now();
        let records = [record(LIVE, now, false), record(REVOKED, now, true)];
        let snapshot = snapshot::from_records(&records, &verifier);
        let issue = |bits| key::generate("ory_ak", clock::secs(now - ISSUED_AGO), uuid(bits), &verifier.keyring);
        let live = issue(LIVE);
        let revoked = issue(REVOKED);
        let mut forged = live.clone();
        let last = forged.pop().expect("a key is not empty");
        forged.push(if last == 'z' { 'y' } else { 'z' });
        Fixture {
            verifier,
            snapshot,
            store: RedbStore::in_memory().expect("memory store"),
            metrics: Metrics::new("check").worker(),
            live,
            revoked,
            forged,
        }
    })
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Credential {
    Live,
    Revoked,
    Forged,
    /// The live key with a character changed at some position.
    Mutated(u8, u8),
}

#[derive(Arbitrary, Debug)]
enum Body {
    Verify {
        credential: Credential,
        audiences: Vec<String>,
    },
    Batch(Vec<Credential>),
    /// Arbitrary bytes, framed as declared.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Framing {
    ContentLength,
    /// Chunks of these sizes (the last takes what is left).
    Chunked(Vec<u8>),
    /// A Content-Length off by this much (a short or long body).
    WrongLength(i8),
}

#[derive(Arbitrary, Debug)]
struct Request {
    batch_path: bool,
    http10: bool,
    /// Extra header lines, written as given (names and values may be garbage).
    headers: Vec<(String, Vec<u8>)>,
    framing: Framing,
    body: Body,
}

fn credential_text(f: &Fixture, c: Credential) -> Cow<'_, str> {
    match c {
        Credential::Live => Cow::Borrowed(f.live.as_str()),
        Credential::Revoked => Cow::Borrowed(f.revoked.as_str()),
        Credential::Forged => Cow::Borrowed(f.forged.as_str()),
        Credential::Mutated(at, to) => {
            let mut bytes = f.live.clone().into_bytes();
            let at = usize::from(at) % bytes.len();
            let to = b'!' + to % 94;
            if bytes[at] == to {
                return Cow::Borrowed(f.live.as_str());
            }
            bytes[at] = to;
            Cow::Owned(String::from_utf8(bytes).expect("ASCII stays UTF-8"))
        }
    }
}

/// Whether a credential must verify: only when it is the live key's text (a mutation may
/// restore it).
fn expected_valid(f: &Fixture, c: Credential) -> bool {
    credential_text(f, c) == f.live.as_str()
}

fn body_bytes(f: &Fixture, body: &Body) -> Vec<u8> {
    match body {
        Body::Verify { credential, audiences } => {
            let mut json = serde_json::json!({ "credential": credential_text(f, *credential) });
            if !audiences.is_empty() {
                json["expected_audiences"] = serde_json::json!(audiences);
            }
            serde_json::to_vec(&json).expect("JSON")
        }
        Body::Batch(items) => {
            let requests: Vec<_> =
                items.iter().map(|c| serde_json::json!({ "credential": credential_text(f, *c) })).collect();
            serde_json::to_vec(&serde_json::json!({ "requests": requests })).expect("JSON")
        }
        Body::Raw(bytes) => bytes.clone(),
    }
}

fn write_request(req: &Request, body: &[u8]) -> Vec<u8> {
    let path = if req.batch_path { "/v2alpha1/admin/apiKeys:batchVerify" } else { "/v2alpha1/admin/apiKeys:verify" };
    let version = if req.http10 { "1.0" } else { "1.1" };
    let mut out = format!("POST {path} HTTP/{version}\r\nhost: fuzz\r\n").into_bytes();
    for (name, value) in &req.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    match &req.framing {
        Framing::ContentLength => {
            out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(body);
        }
        Framing::WrongLength(delta) => {
            let declared = (body.len() as i64 + i64::from(*delta)).max(0);
            out.extend_from_slice(format!("content-length: {declared}\r\n\r\n").as_bytes());
            out.extend_from_slice(body);
        }
        Framing::Chunked(sizes) => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            let mut rest = body;
            for size in sizes {
                let n = usize::from(*size).min(rest.len());
                if n == 0 {
                    break;
                }
                out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                out.extend_from_slice(&rest[..n]);
                out.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            if !rest.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", rest.len()).as_bytes());
                out.extend_from_slice(rest);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
    out
}

/// The body as the connection loop would hand it to a route, or `None` when it is incomplete
/// or refused (the loop would wait for more bytes or answer the framing error).
fn framed_body(bytes: &[u8], head_len: usize, framing: BodyFraming) -> Option<Vec<u8>> {
    let rest = &bytes[head_len..];
    match framing {
        BodyFraming::None => Some(Vec::new()),
        BodyFraming::Length(n) => rest.get(..n).map(<[u8]>::to_vec),
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::new();
            let mut out = Vec::new();
            match decoder.decode(rest, &mut out) {
                Ok((_, true)) => Some(out),
                _ => None,
            }
        }
    }
}

fuzz_target!(|req: Request| {
    let f = fixture();
    let body = body_bytes(f, &req.body);
    let bytes = write_request(&req, &body);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Ok(Some(head)) = parse::parse_head(&bytes, &mut headers) else {
        return;
    };
    let Some(decoded) = framed_body(&bytes, head.head_len, head.body) else {
        return;
    };
    let source = Source {
        verifier: &f.verifier,
        snapshot: &f.snapshot,
        store: &f.store,
        bypass: false,
        client_ip: None,
        metrics: &f.metrics.verify,
    };
    let route: Route = if req.batch_path { verify::batch_verify } else { verify::verify };
    let reply = Reply {
        persist: Persist::of(head.keep_alive, head.minor_version),
        head_only: false,
        request_id: head.request_id,
    };
    let mut out = b"left by an earlier pipelined response".to_vec();
    let earlier = out.len();
    verify::respond(route, &source, &decoded, &reply, &mut out);
    assert!(out.starts_with(b"left by an earlier pipelined response"), "an earlier response was overwritten");
    let out = &out[earlier..];

    // The response frames itself: a status line, headers, and a body of the declared length.
    let mut response_headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut response_headers);
    let httparse::Status::Complete(response_head) = parsed.parse(out).expect("the response parses") else {
        panic!("the response head is incomplete");
    };
    let status = parsed.code.expect("a status");
    let declared: usize = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
        .expect("a content-length");
    let response_body = &out[response_head..];
    assert_eq!(response_body.len(), declared, "the body is as long as declared");
    let json: serde_json::Value = serde_json::from_slice(response_body).expect("the body is JSON");

    // The verdict is the key's, when the request is what it says it is.
    if status != 200 {
        assert!((400..500).contains(&status), "a client mistake is a 4xx, not {status}: {json}");
        assert!(json["error"]["code"].is_u64(), "an error is in the Talos envelope: {json}");
        return;
    }
    if decoded != body {
        // A short Content-Length cut the JSON: if it still parsed, it is some other request.
        return;
    }
    match &req.body {
        Body::Verify { credential, audiences } if !req.batch_path => {
            let valid = json["is_valid"].as_bool().expect("is_valid");
            // Expected audiences fail an API key (decisions.md §5.12).
            assert_eq!(valid, expected_valid(f, *credential) && audiences.is_empty(), "{credential:?}: {json}");
            if *credential == Credential::Revoked && audiences.is_empty() {
                assert_eq!(json["error_code"], "VERIFICATION_ERROR_REVOKED");
            }
        }
        Body::Batch(items) if req.batch_path => {
            let results = json["results"].as_array().expect("results");
            assert_eq!(results.len(), items.len());
            for (item, result) in items.iter().zip(results) {
                assert_eq!(result["is_valid"].as_bool(), Some(expected_valid(f, *item)), "{item:?}: {result}");
            }
        }
        // Arbitrary bytes, or a body sent to the other route (its fields are ignored).
        _ => {}
    }
});
